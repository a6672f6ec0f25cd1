"""A fair share of one Prometheus's in-flight queries between namespaces, and between rollouts.

Rollouts that name the same Prometheus (with the same credentials) share one source, and so its
bound on queries in flight. With a plain semaphore, rollouts whose queries hang (a pathological
query, a Prometheus that accepts and never answers) hold every place, and a healthy rollout on
the same Prometheus waits behind them until its reads time out and it halts, blaming Prometheus.

:class:`FairLimiter` is work-conserving (a free place is never left idle while anyone waits, so a
lone namespace still gets all of them) and, when places are contended, gives the next free one to
the waiting namespace that holds the fewest, and within it to the waiting rollout that holds the
fewest; ties go round robin (served longest ago first), then to whoever waited longest. A hanging namespace can then keep only the places it
got while nobody else was waiting, and loses each one to a waiting neighbour as it frees.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TypeVar

K = TypeVar("K")
Caller = tuple[str, str]  # (namespace, rollout name); ("", "") for a caller outside any rollout
_REMEMBERED = 4096  # rollouts whose last turn is remembered for the round robin


@dataclass
class _Waiter:
    caller: Caller
    order: int
    future: asyncio.Future[None] = field(repr=False)


class FairLimiter:
    def __init__(self, places: int) -> None:
        if places < 1:
            raise ValueError("a limiter needs at least one place")
        self.places = places
        self._free = places
        self._held_by_namespace: Counter[str] = Counter()
        self._held_by_caller: Counter[Caller] = Counter()
        self._waiting: deque[_Waiter] = deque()
        self._order = itertools.count()
        self._turns = itertools.count()
        self._served_namespace: dict[str, int] = {}
        self._served_caller: dict[Caller, int] = {}

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def held(self, caller: Caller) -> int:
        return self._held_by_caller[caller]

    @contextlib.asynccontextmanager
    async def place(self, caller: Caller) -> AsyncIterator[None]:
        await self._acquire(caller)
        try:
            yield
        finally:
            self._release(caller)

    async def _acquire(self, caller: Caller) -> None:
        if self._free > 0 and not self._waiting:
            self._take(caller)
            return
        waiter = _Waiter(caller, next(self._order), asyncio.get_running_loop().create_future())
        self._waiting.append(waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self._release(caller)  # granted just as it was cancelled: hand the place on
            else:
                with contextlib.suppress(ValueError):  # _grant may have dropped it already
                    self._waiting.remove(waiter)
            raise

    def _priority(self, waiter: _Waiter) -> tuple[int, int, int, int, int]:
        """Fewest places held (namespace, then rollout); then served longest ago (round robin
        between equals); then waited longest."""
        namespace, caller = waiter.caller[0], waiter.caller
        return (
            self._held_by_namespace[namespace],
            self._served_namespace.get(namespace, -1),
            self._held_by_caller[caller],
            self._served_caller.get(caller, -1),
            waiter.order,
        )

    def _take(self, caller: Caller) -> None:
        turn = next(self._turns)
        self._served_namespace[caller[0]] = turn
        self._served_caller[caller] = turn
        if len(self._served_caller) > _REMEMBERED:  # bounded: forget the longest-unserved half
            for old in sorted(self._served_caller, key=self._served_caller.__getitem__)[: _REMEMBERED // 2]:
                del self._served_caller[old]
            remembered = {kept[0] for kept in self._served_caller}  # once, not per namespace
            for stale in [n for n in self._served_namespace if n not in remembered]:
                del self._served_namespace[stale]
        self._free -= 1
        self._held_by_namespace[caller[0]] += 1
        self._held_by_caller[caller] += 1

    def _release(self, caller: Caller) -> None:
        self._free += 1
        _decrement(self._held_by_namespace, caller[0])
        _decrement(self._held_by_caller, caller)
        self._grant()

    def _grant(self) -> None:
        while self._free > 0 and self._waiting:
            waiter = min(self._waiting, key=self._priority)
            self._waiting.remove(waiter)
            if waiter.future.done():  # cancelled while waiting
                continue
            self._take(waiter.caller)
            waiter.future.set_result(None)


def _decrement(counter: Counter[K], key: K) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]  # no entry kept for a rollout that holds nothing
