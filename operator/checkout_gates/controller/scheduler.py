"""One loop per rollout: reconcile, sleep until something is due, or wake early on a change.

Errors never stop a loop and never reach kopf: a failing pass is logged, counted and retried
with a growing delay (capped), so one broken rollout cannot crash-loop the operator or starve
the others. A semaphore bounds concurrent passes, which bounds load on the API server and
Prometheus however many rollouts there are; a second one per namespace keeps any namespace to a
share of them, so one namespace of rollouts whose Prometheus never answers cannot take every slot.
Every pass has a deadline that starts when it is dispatched (not while it waits for a slot).
No slot is held while a pass waits on Prometheus or a pager: the pass gives it back around that
I/O (:func:`io_wait`) and takes one again after, so rollouts whose Prometheus never answers hold
no slot at all while they wait.

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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar

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


class _Slot:
    """The semaphores one pass holds, which it can give back around slow I/O and take again."""

    def __init__(self, semaphores: list[asyncio.Semaphore]) -> None:
        self._semaphores = semaphores
        self._held: list[asyncio.Semaphore] = []

    async def acquire(self) -> None:
        for semaphore in self._semaphores:
            await semaphore.acquire()
            self._held.append(semaphore)  # one by one: a cancellation mid-way releases only these

    def release(self) -> None:
        while self._held:
            self._held.pop().release()

    @contextlib.asynccontextmanager
    async def released(self) -> AsyncIterator[None]:
        self.release()
        yield  # taken again only on a normal exit: a pass being cancelled must not queue for a slot
        await self.acquire()


_current_slot: ContextVar[_Slot | None] = ContextVar("checkout_gates_slot", default=None)


@contextlib.asynccontextmanager
async def io_wait() -> AsyncIterator[None]:
    """Around a pass's slow I/O (gate queries, page deliveries): its slot is free meanwhile."""
    slot = _current_slot.get()
    if slot is None:
        yield
        return
    async with slot.released():
        yield


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
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that races
            # its own timeout, and a loop that sleeps briefly then never stops (seen as a hung stop()).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await wakeup.wait()

    async def _pass(self, namespace: str, name: str, *, urgent: bool) -> float | None:
        """One pass within its deadline; an ordinary one waits for a slot overall and in its namespace."""
        if urgent:
            async with asyncio.timeout(self.pass_deadline):
                return await self._reconcile(namespace, name)
        limit = self._namespace_limits.setdefault(namespace, asyncio.Semaphore(self._per_namespace))
        slot = _Slot([limit, self._limit])
        try:
            await slot.acquire()
            token = _current_slot.set(slot)  # this task's own context: see io_wait
            try:
                # The deadline starts now, at dispatch: time spent queueing for a slot is not the pass's.
                async with asyncio.timeout(self.pass_deadline):
                    return await self._reconcile(namespace, name)
            finally:
                _current_slot.reset(token)
        finally:
            slot.release()
