"""One loop per rollout: reconcile, sleep until something is due, or wake early on a change.

Errors never stop a loop and never reach kopf: a failing pass is logged, counted and retried
with a growing delay (capped), so one broken rollout cannot crash-loop the operator or starve
the others. A semaphore bounds concurrent passes, which bounds load on the API server and
Prometheus however many rollouts there are.

A standby replica (leader election, controller/leadership.py) runs an inactive scheduler: it
remembers the rollouts it hears of but runs no pass; ``activate`` starts a loop for each,
``deactivate`` cancels every loop at once (a pass in flight stops at its next await).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

from checkout_gates.controller import telemetry

log = structlog.get_logger("checkout_gates.scheduler")

Key = tuple[str, str]
Reconcile = Callable[[str, str], Awaitable[float | None]]
MAX_BACKOFF = 60.0


class Scheduler:
    def __init__(self, reconcile: Reconcile, *, concurrency: int = 16, active: bool = True) -> None:
        self._reconcile = reconcile
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self._wakeups: dict[Key, asyncio.Event] = {}
        self._known: set[Key] = set()
        self._limit = asyncio.Semaphore(concurrency)
        self.active = active

    def poke(self, namespace: str, name: str) -> None:
        """Reconcile this rollout soon: start its loop, or wake it (only remember it when inactive)."""
        key = (namespace, name)
        self._known.add(key)
        if not self.active:
            return
        self._wakeups.setdefault(key, asyncio.Event()).set()
        task = self._tasks.get(key)
        if task is None or task.done():
            self._tasks[key] = asyncio.create_task(self._loop(key), name=f"rollout {namespace}/{name}")
            telemetry.ROLLOUTS.set(len(self._tasks))

    def forget(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self._known.discard(key)
        task = self._tasks.pop(key, None)
        self._wakeups.pop(key, None)
        if task is not None:
            task.cancel()
        telemetry.ROLLOUTS.set(len(self._tasks))

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._wakeups.clear()
        telemetry.ROLLOUTS.set(0)

    def activate(self) -> None:
        """Start acting: a loop for every rollout heard of so far."""
        self.active = True
        for namespace, name in sorted(self._known):
            self.poke(namespace, name)

    async def deactivate(self) -> None:
        """Stop acting at once: cancel every loop, keep the rollouts in mind for a later activate."""
        self.active = False
        await self.stop()

    @property
    def keys(self) -> list[Key]:
        return sorted(self._tasks)

    def knows(self, namespace: str, name: str) -> bool:
        """Whether this rollout has a loop (``keys`` sorts them all: too slow for every watch event)."""
        return (namespace, name) in self._tasks

    async def _loop(self, key: Key) -> None:
        namespace, name = key
        failures = 0
        wakeup = self._wakeups.setdefault(key, asyncio.Event())
        while True:
            wakeup.clear()
            try:
                async with self._limit:
                    delay = await self._reconcile(namespace, name)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                delay = min(MAX_BACKOFF, 2.0 ** min(failures, 6))
                telemetry.ERRORS.labels("reconcile").inc()
                log.exception("reconcile failed; retrying", rollout=f"{namespace}/{name}", retry_in=delay)
            if delay is None:
                self._known.discard(key)
                self._tasks.pop(key, None)
                self._wakeups.pop(key, None)
                telemetry.ROLLOUTS.set(len(self._tasks))
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout=delay)
