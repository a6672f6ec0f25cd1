"""The scheduler under hostile neighbours (hardening issue, finding 1): 16 rollouts whose
Prometheus accepts and never answers once held every reconcile slot, so a healthy rollout made 2
evaluations in 90 s and an on-call abort was not applied after 70 s.

Fake passes stand in for the reconciler: a hanging one awaits forever (like a query that never
returns), a healthy one returns at once. Every wait below has a generous bound only so that a
regression fails instead of hanging; nothing asserts how fast anything ran."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest

from checkout_gates.controller.scheduler import Scheduler, io_wait

BOUND = 30.0  # seconds: a regression fails instead of hanging


class Passes:
    """A reconcile that hangs for rollouts in ``hanging`` namespaces and counts every pass."""

    def __init__(self, hanging: set[str], *, delay: float = 0.01) -> None:
        self.hanging = hanging
        self.delay = delay
        self.started: Counter[tuple[str, str]] = Counter()
        self.finished: Counter[tuple[str, str]] = Counter()
        self.cancelled: Counter[tuple[str, str]] = Counter()
        self.hang_once: set[tuple[str, str]] = set()
        self.changed = asyncio.Event()

    async def __call__(self, namespace: str, name: str) -> float | None:
        key = (namespace, name)
        self.started[key] += 1
        self.changed.set()
        try:
            if namespace in self.hanging or key in self.hang_once:
                self.hang_once.discard(key)
                await asyncio.Event().wait()
            self.finished[key] += 1
            self.changed.set()
            return self.delay
        except asyncio.CancelledError:
            self.cancelled[key] += 1
            self.changed.set()
            raise

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        async def wait() -> None:
            while not condition():
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(wait(), timeout=BOUND)
        except TimeoutError:
            pytest.fail(f"never: {what}")


async def test_a_namespace_of_hanging_rollouts_takes_only_its_share_of_the_slots() -> None:
    passes = Passes(hanging={"hostile"})
    scheduler = Scheduler(passes, concurrency=16)
    try:
        for index in range(4 * 16):
            scheduler.poke("hostile", f"hang-{index}")
        scheduler.poke("shop", "checkout")
        healthy = ("shop", "checkout")
        await passes.until(lambda: passes.finished[healthy] >= 20, "the healthy rollout keeps its passes")
        hanging_now = sum(n for (ns, _), n in passes.started.items() if ns == "hostile") - sum(
            n for (ns, _), n in passes.cancelled.items() if ns == "hostile"
        )
        assert hanging_now <= 16 // 4, "one namespace holds at most its share of the slots"
    finally:
        await scheduler.stop()


async def test_an_urgent_poke_cuts_short_the_pass_in_flight_and_runs_at_once() -> None:
    passes = Passes(hanging=set())
    scheduler = Scheduler(passes, concurrency=1)
    key = ("shop", "checkout")
    passes.hang_once.add(key)
    try:
        scheduler.poke(*key)
        await passes.until(lambda: passes.started[key] == 1, "the first pass started")
        scheduler.poke(*key, urgent=True)  # an on-call abort arrives while Prometheus hangs
        await passes.until(lambda: passes.finished[key] >= 1, "the urgent pass ran")
        assert passes.cancelled[key] == 1, "the hanging pass was cut short"
    finally:
        await scheduler.stop()


async def test_an_urgent_pass_needs_no_slot() -> None:
    passes = Passes(hanging={"hostile"})
    scheduler = Scheduler(passes, concurrency=1, per_namespace=1)
    try:
        scheduler.poke("hostile", "hang")
        scheduler.poke("shop", "waiting")
        await passes.until(lambda: passes.started[("hostile", "hang")] == 1, "the hanging pass holds the slot")
        scheduler.poke("shop", "abort-me", urgent=True)
        await passes.until(lambda: passes.finished[("shop", "abort-me")] >= 1, "the urgent pass went around the slot")
        assert passes.started[("shop", "waiting")] == 0, "ordinary passes still wait for the slot"
    finally:
        await scheduler.stop()


async def test_a_pass_over_its_deadline_is_cancelled_and_retried() -> None:
    passes = Passes(hanging=set())
    scheduler = Scheduler(passes, concurrency=4, pass_deadline=0.05)
    key = ("shop", "checkout")
    passes.hang_once.add(key)
    try:
        scheduler.poke(*key)
        await passes.until(lambda: passes.finished[key] >= 1, "the pass after the timed-out one")
        assert passes.cancelled[key] == 1
    finally:
        await scheduler.stop()


async def test_stop_ends_hanging_passes() -> None:
    passes = Passes(hanging={"hostile"})
    scheduler = Scheduler(passes, concurrency=4)
    for index in range(8):
        scheduler.poke("hostile", f"hang-{index}")
    await passes.until(lambda: sum(passes.started.values()) >= 1, "a pass started")
    await asyncio.wait_for(scheduler.stop(), timeout=BOUND)
    assert scheduler.keys == []
    assert sum(passes.cancelled.values()) == sum(passes.started.values()) - sum(passes.finished.values())


async def test_rollouts_waiting_on_io_hold_no_slot_wherever_they_are() -> None:
    """16 hanging rollouts in 16 namespaces (per-namespace shares cannot help) and one slot."""
    gate = asyncio.Event()
    done: Counter[tuple[str, str]] = Counter()
    enough = asyncio.Event()

    async def reconcile(namespace: str, name: str) -> float | None:
        if namespace.startswith("hostile"):
            async with io_wait():  # the gate queries of a Prometheus that never answers
                await gate.wait()
        done[(namespace, name)] += 1
        if done[("shop", "checkout")] >= 20:
            enough.set()
        return 0.01

    scheduler = Scheduler(reconcile, concurrency=1)
    try:
        for index in range(16):
            scheduler.poke(f"hostile-{index}", "hang")
        scheduler.poke("shop", "checkout")
        await asyncio.wait_for(enough.wait(), timeout=BOUND)
    finally:
        gate.set()
        await scheduler.stop()


async def test_a_pass_cut_short_while_waiting_on_io_does_not_queue_for_a_slot_first() -> None:
    """An urgent abort must not wait for a slot that another (hanging) pass holds."""
    forever = asyncio.Event()
    urgent_ran = asyncio.Event()
    started = {"abort-me": asyncio.Event(), "hog": asyncio.Event()}
    calls: Counter[str] = Counter()

    async def reconcile(namespace: str, name: str) -> float | None:
        calls[name] += 1
        started[name].set()
        if name == "hog":
            await forever.wait()  # holds its slot: no io_wait
        elif calls[name] == 1:
            async with io_wait():  # waits on Prometheus, slot given back
                await forever.wait()
        else:
            urgent_ran.set()
        return 1.0

    scheduler = Scheduler(reconcile, concurrency=1, per_namespace=1)
    try:
        scheduler.poke("shop", "abort-me")
        await asyncio.wait_for(started["abort-me"].wait(), timeout=BOUND)
        scheduler.poke("shop", "hog")  # takes the slot abort-me gave back
        await asyncio.wait_for(started["hog"].wait(), timeout=BOUND)
        scheduler.poke("shop", "abort-me", urgent=True)
        await asyncio.wait_for(urgent_ran.wait(), timeout=BOUND)
    finally:
        forever.set()
        await scheduler.stop()
