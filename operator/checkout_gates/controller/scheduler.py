"""One loop per rollout: reconcile, sleep until something is due, or wake early on a change.

Errors never stop a loop and never reach kopf: a failing pass is logged, counted and retried
with a growing delay (capped), so one broken rollout cannot crash-loop the operator or starve
the others. A semaphore bounds concurrent passes, which bounds load on the API server and
Prometheus however many rollouts there are; a second one per namespace keeps any namespace to a
share of them, so one namespace of rollouts whose Prometheus never answers cannot take every slot.
Every pass has a deadline that starts when it is dispatched (not while it waits for a slot).

An urgent poke (an on-call abort or pause waiting) goes around both semaphores and cuts short the
rollout's own pass in flight: a pass may stop at any await (crash-safe by construction: status is
written before any action and every action is idempotent), and the next one applies the request.

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
# A pass's longest run: a few API calls and one evaluation's queries (each bounded by the spec's
# prometheus.timeout, at most 60 s: api/quantities.py), with room to spare. Past it the pass is
# cancelled (safe at any await) and retried with backoff.
PASS_DEADLINE = 150.0


class Scheduler:
    def __init__(
        self,
        reconcile: Reconcile,
        *,
        concurrency: int = 16,
        active: bool = True,
        per_namespace: int | None = None,
        pass_deadline: float = PASS_DEADLINE,
    ) -> None:
        self._reconcile = reconcile
        self._tasks: dict[Key, asyncio.Task[None]] = {}
        self._passes: dict[Key, asyncio.Task[float | None]] = {}
        self._wakeups: dict[Key, asyncio.Event] = {}
        self._urgent: set[Key] = set()
        self._known: set[Key] = set()
        self._limit = asyncio.Semaphore(concurrency)
        self._per_namespace = per_namespace or max(1, concurrency // 4)
        self._namespace_limits: dict[str, asyncio.Semaphore] = {}
        self.pass_deadline = pass_deadline
        self.active = active

    def poke(self, namespace: str, name: str, *, urgent: bool = False) -> None:
        """Reconcile this rollout soon: start its loop, or wake it (only remember it when inactive).

        ``urgent``: an on-call stop waits; its pass skips the queue and replaces one in flight."""
        key = (namespace, name)
        self._known.add(key)
        if not self.active:
            return
        if urgent:
            self._urgent.add(key)
            running = self._passes.get(key)
            if running is not None and not running.done():
                running.cancel()  # the loop sees a pre-empted pass and starts the urgent one at once
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
            urgent = key in self._urgent
            self._urgent.discard(key)
            running = asyncio.create_task(self._pass(namespace, name, urgent=urgent))
            self._passes[key] = running
            try:
                delay = await running
                failures = 0
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    running.cancel()
                    raise  # the loop itself is stopped (forget, deactivate, shutdown)
                telemetry.PREEMPTED.inc()
                continue  # an urgent request cut this pass short: run the next one now
            except Exception as error:
                failures += 1
                delay = min(MAX_BACKOFF, 2.0 ** min(failures, 6))
                telemetry.ERRORS.labels("reconcile").inc()
                if isinstance(error, TimeoutError):
                    log.warning("pass over its deadline; retrying", rollout=f"{namespace}/{name}", retry_in=delay)
                else:
                    log.exception("reconcile failed; retrying", rollout=f"{namespace}/{name}", retry_in=delay)
            finally:
                if self._passes.get(key) is running:
                    del self._passes[key]
            if delay is None:
                self._known.discard(key)
                self._tasks.pop(key, None)
                self._wakeups.pop(key, None)
                telemetry.ROLLOUTS.set(len(self._tasks))
                return
            if key in self._urgent:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout=delay)

    async def _pass(self, namespace: str, name: str, *, urgent: bool) -> float | None:
        """One pass within its deadline; an ordinary one waits for a slot overall and in its namespace."""
        if urgent:
            return await asyncio.wait_for(self._reconcile(namespace, name), timeout=self.pass_deadline)
        limit = self._namespace_limits.setdefault(namespace, asyncio.Semaphore(self._per_namespace))
        async with limit, self._limit:
            # The deadline starts now, at dispatch: time spent queueing for a slot is not the pass's.
            return await asyncio.wait_for(self._reconcile(namespace, name), timeout=self.pass_deadline)
