"""Single flight: identical queries asked at the same evaluation moment go to Prometheus once.

Many rollouts whose gate templates do not use ``{{name}}``, ``{{namespace}}`` or ``{{service}}``
render the very same PromQL. When they evaluate at about the same time, asking Prometheus once
and sharing the answer saves most of the load, and it is correct as long as the callers really
ask the same question: the same server, the same query text, evaluated at the same instant.

The instant is what :func:`moment` makes explicit. A caller that names no evaluation time gets
the start of the current *bucket* (``bucket_seconds`` of wall-clock time, 1 s by default) as its
evaluation time, and that instant is part of the key: every caller within one bucket asks the
identical question, so the first one's answer (or error) is the answer for all of them, and the
answer is kept until the bucket ends. A caller that names a time (``at``) shares only with calls
for exactly that time that are still in flight. Nothing is kept past its bucket, so the cache
holds one bucket's distinct queries at most.

Errors are shared like answers: a query that failed for one caller within the moment fails for
every caller of that moment (a second try is the next bucket's, or the caller's own retry loop).
A caller that is cancelled does not cancel the flight the others wait for.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class FlightStats:
    """What the single flight saved: ``calls`` asked, ``flights`` actually run."""

    calls: int = 0
    flights: int = 0

    @property
    def shared(self) -> int:
        return self.calls - self.flights


def moment(at: datetime | None, bucket_seconds: float, clock: Callable[[], float] = time.time) -> datetime:
    """The evaluation instant of a query: ``at`` itself, or the start of the current bucket."""
    if at is not None:
        return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    now = clock()
    start = math.floor(now / bucket_seconds) * bucket_seconds if bucket_seconds > 0 else now
    return datetime.fromtimestamp(start, tz=UTC)


class _Flight(Generic[T]):
    __slots__ = ("keep_until", "task", "waiters")

    def __init__(self, task: asyncio.Task[T], keep_until: float | None) -> None:
        self.task = task
        self.keep_until = keep_until
        self.waiters = 0


class SingleFlight(Generic[T]):
    """Shares one run of ``call`` among callers with the same key.

    ``keep_until`` (a wall-clock timestamp, or None) says how long a finished flight's outcome
    stays available to later callers with the same key; None keeps it only while in flight.
    A flight whose callers have all been cancelled is cancelled too, so none outlives its use
    (and none is left running when the operator shuts down); :meth:`close` cancels the rest.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._flights: dict[Hashable, _Flight[T]] = {}
        self.stats = FlightStats()

    def __len__(self) -> int:
        return len(self._flights)

    async def do(self, key: Hashable, call: Callable[[], Awaitable[T]], *, keep_until: float | None = None) -> T:
        self._prune()
        self.stats.calls += 1
        flight = self._flights.get(key)
        if flight is None:
            task = asyncio.ensure_future(call())
            flight = self._flights[key] = _Flight(task, keep_until)
            self.stats.flights += 1
            task.add_done_callback(lambda done: self._landed(key, done))
        flight.waiters += 1
        try:
            # shield: one caller giving up (cancelled) must not cancel the flight the others wait for.
            return await asyncio.shield(flight.task)
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()  # every caller left: nobody wants the answer

    def close(self) -> None:
        """Cancel every flight still running."""
        for flight in self._flights.values():
            flight.task.cancel()
        self._flights.clear()

    def _landed(self, key: Hashable, task: asyncio.Task[T]) -> None:
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" warning when every caller left
        flight = self._flights.get(key)
        if flight is None or flight.task is not task:
            return
        if task.cancelled() or flight.keep_until is None or flight.keep_until <= self._clock():
            del self._flights[key]

    def _prune(self) -> None:
        now = self._clock()
        stale = [
            key
            for key, flight in self._flights.items()
            if flight.task.done() and (flight.keep_until is None or flight.keep_until <= now)
        ]
        for key in stale:
            del self._flights[key]
