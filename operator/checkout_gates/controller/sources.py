"""The Prometheus sources of the rollouts, one per (address, timeout, credentials), closed when idle.

A source holds an HTTP connection pool and a single-flight table. Without eviction every address a
rollout ever named, and every token a rotation replaced, would keep its pool for the process's
life. A source unused for :data:`IDLE_SECONDS` (far beyond any pass's deadline, so no pass still
holds it) is closed on the next lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

from checkout_gates.metrics.port import MetricsSource

IDLE_SECONDS = 600.0


@dataclass
class _Entry:
    source: MetricsSource
    used: float


class SourcePool:
    def __init__(self, clock: Callable[[], float], *, idle_seconds: float = IDLE_SECONDS) -> None:
        self._clock = clock
        self._idle = idle_seconds
        self._entries: dict[Hashable, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: Hashable, make: Callable[[], MetricsSource]) -> MetricsSource:
        """The source for ``key`` (made with ``make`` when there is none); idle ones are closed first."""
        now = self._clock()
        for stale in [k for k, entry in self._entries.items() if now - entry.used > self._idle and k != key]:
            await self._entries.pop(stale).source.aclose()
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(make(), now)
        entry.used = now
        return entry.source

    async def aclose(self) -> None:
        entries, self._entries = self._entries, {}
        for entry in entries.values():
            await entry.source.aclose()
