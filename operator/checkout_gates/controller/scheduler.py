"""One loop per rollout: reconcile, sleep until something is due, or wake early on a change.

Errors never stop a loop and never reach kopf: a failing pass is logged, counted and retried
with a growing delay (capped), so one broken rollout cannot crash-loop the operator or starve
the others. A semaphore bounds concurrent passes, which bounds load on the API server and
Prometheus however many rollouts there are.
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
    def __init__(self, reconcile: Reconcile, *, concurrency: int = 16) -> None:
        self._reconcile = reconcile
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self._wakeups: dict[Key, asyncio.Event] = {}
        self._limit = asyncio.Semaphore(concurrency)
        self.paused = False

    def poke(self, namespace: str, name: str) -> None:
        """Reconcile this rollout soon: start its loop, or wake it."""
        key = (namespace, name)
        self._wakeups.setdefault(key, asyncio.Event()).set()
        task = self._tasks.get(key)
        if task is None or task.done():
            self._tasks[key] = asyncio.create_task(self._loop(key), name=f"rollout {namespace}/{name}")
            telemetry.ROLLOUTS.set(len(self._tasks))

    def forget(self, namespace: str, name: str) -> None:
        key = (namespace, name)
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

    @property
    def keys(self) -> list[Key]:
        return sorted(self._tasks)

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
                self._tasks.pop(key, None)
                self._wakeups.pop(key, None)
                telemetry.ROLLOUTS.set(len(self._tasks))
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout=delay)
