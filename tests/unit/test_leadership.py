"""Leader election (controller/leadership.py) against an in-memory Lease and a hand-driven clock,
and the scheduler's standby mode it drives."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from checkout_gates.controller.leadership import (
    ElectionConfig,
    ElectionThread,
    LeaderElector,
    LeaseConflictError,
    LeaseRecord,
)
from checkout_gates.controller.scheduler import Scheduler

CONFIG = ElectionConfig(namespace="ops", lease_duration=15.0, renew_deadline=10.0, retry_period=2.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class MemoryLease:
    """One Lease with resourceVersion semantics; ``down`` makes every call fail like a gone server."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None
        self.version = 0
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("kube-apiserver is away")

    async def get(self) -> LeaseRecord | None:
        self._check()
        return self.record

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        self._check()
        if self.record is not None:
            raise LeaseConflictError("exists")
        return self._store(record)

    async def replace(self, record: LeaseRecord) -> LeaseRecord:
        self._check()
        if self.record is None or record.resource_version != self.record.resource_version:
            raise LeaseConflictError("changed")
        return self._store(record)

    def _store(self, record: LeaseRecord) -> LeaseRecord:
        self.version += 1
        self.record = replace(record, resource_version=str(self.version))
        return self.record


def elector(store: MemoryLease, clock: Clock, identity: str, events: list[str] | None = None) -> LeaderElector:
    log = events if events is not None else []
    return LeaderElector(
        store,
        replace(CONFIG, identity=identity),
        on_started_leading=lambda: log.append(f"{identity} leads"),
        on_stopped_leading=lambda: log.append(f"{identity} stops"),
        clock=clock,
        wall_clock=lambda: datetime.fromtimestamp(clock.now, UTC),
    )


async def test_first_candidate_leads_and_the_second_stands_by() -> None:
    store, clock, events = MemoryLease(), Clock(), []
    a, b = elector(store, clock, "a", events), elector(store, clock, "b", events)
    assert await a.step() and a.is_leader()
    assert not await b.step() and not b.is_leader()
    assert store.record is not None and store.record.holder == "a"
    for _ in range(20):  # a renews every retry period: b never gets in
        clock.now += CONFIG.retry_period
        assert await a.step()
        assert not await b.step()
    assert events == ["a leads"]
    assert b.holder == "a"


async def test_standby_takes_over_only_after_the_lease_expires_by_its_own_clock() -> None:
    store, clock, events = MemoryLease(), Clock(), []
    a, b = elector(store, clock, "a", events), elector(store, clock, "b", events)
    await a.step()
    await b.step()  # b first sees the record now
    clock.now += 14.0  # a is gone (killed): no renewals from here
    assert not await b.step(), "the lease has not expired yet"
    clock.now += 1.5
    assert await b.step() and b.is_leader()
    assert store.record is not None and store.record.holder == "b" and store.record.transitions == 1
    # a comes back (it was only paused): it reads b's name and stops at once, without waiting
    assert not await a.step()
    assert not a.is_leader()
    assert events == ["a leads", "b leads", "a stops"]


async def test_a_new_candidate_waits_a_full_lease_even_for_an_old_record() -> None:
    store, clock = MemoryLease(), Clock()
    a = elector(store, clock, "a")
    await a.step()
    clock.now += 100.0  # long dead, but b has only just started watching
    b = elector(store, clock, "b")
    assert not await b.step()
    clock.now += 15.1
    assert await b.step()


async def test_leader_stops_acting_when_it_cannot_renew_before_the_deadline() -> None:
    store, clock, events = MemoryLease(), Clock(), []
    a = elector(store, clock, "a", events)
    await a.step()
    store.down = True
    clock.now += 8.0
    assert await a.step(), "still within the renew deadline: keeps leading"
    clock.now += 2.5
    assert not a.is_leader(), "past the deadline is_leader is False even before the next attempt"
    assert not await a.step()
    assert events == ["a leads", "a stops"]
    store.down = False
    clock.now += 2.0
    assert await a.step(), "the lease is still its own: it leads again"
    assert events == ["a leads", "a stops", "a leads"]


async def test_renew_deadline_passes_before_anyone_else_may_take_over() -> None:
    assert CONFIG.renew_deadline < CONFIG.lease_duration
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        ElectionConfig(namespace="ops", lease_duration=10, renew_deadline=10, retry_period=2)


async def test_release_hands_over_at_once() -> None:
    store, clock, events = MemoryLease(), Clock(), []
    a, b = elector(store, clock, "a", events), elector(store, clock, "b", events)
    await a.step()
    await b.step()
    await a.release()
    assert store.record is not None and store.record.holder == ""
    clock.now += 0.1
    assert await b.step()
    assert events == ["a leads", "a stops", "b leads"]


async def test_only_one_of_two_simultaneous_candidates_wins() -> None:
    store, clock = MemoryLease(), Clock()
    a, b = elector(store, clock, "a"), elector(store, clock, "b")
    results = await asyncio.gather(a.step(), b.step())
    assert sorted(results) == [False, True]


async def test_scheduler_runs_no_pass_until_activated_and_stops_at_once() -> None:
    passes: list[str] = []
    started = asyncio.Event()

    async def reconcile(namespace: str, name: str) -> float | None:
        passes.append(name)
        started.set()
        await asyncio.sleep(3600)  # a pass in flight when leadership is lost
        return 1.0

    scheduler = Scheduler(reconcile, active=False)
    scheduler.poke("ns", "one")
    scheduler.poke("ns", "two")
    await asyncio.sleep(0.05)
    assert passes == [] and scheduler.keys == []
    scheduler.activate()
    await asyncio.wait_for(started.wait(), 1)
    await asyncio.sleep(0.05)
    assert sorted(passes) == ["one", "two"]
    await asyncio.wait_for(scheduler.deactivate(), 1)
    assert scheduler.keys == [] and not scheduler.active
    scheduler.forget("ns", "two")
    scheduler.activate()
    await asyncio.sleep(0.05)
    assert scheduler.keys == [("ns", "one")]
    await scheduler.stop()


async def test_release_retries_when_a_cancelled_renewal_lands_between_its_read_and_write() -> None:
    """The Lease store runs calls on a thread: a renewal cancelled at shutdown can still land."""
    store, clock = MemoryLease(), Clock()
    a = elector(store, clock, "a")
    await a.step()
    real_get = store.get
    landed = False

    async def get_then_renewal_lands() -> LeaseRecord | None:
        nonlocal landed
        record = await real_get()
        if not landed and record is not None:
            landed = True
            store._store(replace(record, renew_time=record.renew_time))  # the late renewal bumps the version
        return record

    store.get = get_then_renewal_lands  # type: ignore[method-assign]
    await a.release()
    assert landed
    assert store.record is not None and store.record.holder == ""


async def test_the_election_thread_renews_while_the_operator_loop_is_stalled() -> None:
    """A stalled operator loop (here: blocked outright) delays no renewal: the Lease is renewed on a
    thread of its own, and the start/stop callbacks still run on the operator's loop."""
    store = MemoryLease()
    config = ElectionConfig(namespace="ops", lease_duration=3.0, renew_deadline=2.0, retry_period=0.1)
    operator_thread = threading.get_ident()
    ran_on: list[int] = []
    leading = asyncio.Event()

    def started() -> None:
        ran_on.append(threading.get_ident())
        leading.set()

    elector = LeaderElector(store, config, on_started_leading=started)
    thread = ElectionThread(elector, asyncio.get_running_loop())
    thread.start()
    try:
        await leading.wait()  # the callback hops to this loop, so it runs only while the loop runs
        before = store.version
        deadline = time.monotonic() + 5.0  # a bound on the wait, not a figure asserted
        while store.version == before and time.monotonic() < deadline:
            time.sleep(0.05)  # noqa: ASYNC251 - the point: the operator's loop does not run at all here
        assert store.version > before, "a renewal while the operator's loop was blocked"
        assert ran_on == [operator_thread]
    finally:
        await thread.stop()
    assert store.record is not None and store.record.holder == "", "stopping gives the Lease up"
