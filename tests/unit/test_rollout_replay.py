"""The replay loop (checkout_gates.rollout.replay): the controller's way of applying decisions, no I/O."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from checkout_gates.api.spec import Gate
from checkout_gates.gates.observations import Sample, SignalReading
from checkout_gates.rollout.plan import GateRead
from checkout_gates.rollout.replay import Replayer, fresh_rollout, replay, widen

from .rollouts import HEALTHY, T0, Driver, make_rollout, readings

APPROVE = "gates.checkout.dev/approve"
SEG = (("provider", "adyen"),)


def times(count: int, start: datetime = T0) -> list[datetime]:
    return [start + timedelta(seconds=30 * i) for i in range(count)]


def test_matches_the_controller_driver_step_for_step() -> None:
    """Same readings, same clock: the replay ends where the tests' controller stand-in does."""
    rollout = make_rollout()
    driver = Driver(rollout)
    driver.step()
    for _ in range(3):
        driver.step(HEALTHY)
    driver.annotate({APPROVE: "approve-all"})
    for _ in range(6):
        driver.step(HEALTHY)
    result = replay(rollout, [(t, HEALTHY) for t in times(10)], approve_all=True, approver="approve-all")
    assert result.status.phase == driver.status.phase == "Promoted"
    assert [(e.action, e.step, e.canary_weight) for e in result.status.history] == [
        (e.action, e.step, e.canary_weight) for e in driver.status.history
    ]
    assert result.outcome == "promoted"
    assert result.decided_at == result.transitions[-1].time
    assert [t.action for t in result.transitions] == [e.action for e in result.status.history]


def test_approval_waits_without_approve_all() -> None:
    result = replay(make_rollout(), [(t, HEALTHY) for t in times(10)])
    assert result.outcome == "in-progress"
    assert result.status.phase == "AwaitingApproval"
    assert result.decided_at is None and result.deciding_gate is None


def test_halt_names_gate_and_segment_and_stops() -> None:
    bad = readings(canary_approval=0.90)
    observations = [(times(1)[0], HEALTHY), *((t, bad) for t in times(8)[1:])]
    replayer = Replayer(make_rollout())
    for now, observed in observations:
        replayer.advance(now, observed)
    result = replayer.result()
    assert result.outcome == "halted"
    gate = result.deciding_gate
    assert gate is not None and gate.name == "auth-approval" and gate.segment == "provider=adyen"
    assert replayer.done
    # Nothing moves once the outcome is known.
    assert replayer.advance(T0 + timedelta(hours=1), HEALTHY) == []
    assert replayer.reads(T0 + timedelta(hours=1)) == []
    assert result.decided_at == T0 + timedelta(seconds=60)  # the second failing evaluation (failureLimit 2)


def test_times_must_increase() -> None:
    replayer = Replayer(make_rollout())
    replayer.advance(T0, {})
    with pytest.raises(ValueError, match="times must increase"):
        replayer.advance(T0, {})


def test_fresh_rollout_ignores_a_status_and_annotations_from_the_file() -> None:
    rollout = make_rollout(annotations={APPROVE: "mallory"})
    done = replay(rollout, [(T0, HEALTHY)]).rollout
    fresh = fresh_rollout(done)
    assert fresh.status.phase == "Pending" and fresh.metadata.annotations == {}
    assert fresh.metadata.generation >= 1 and fresh.metadata.uid


# --- widening recorded windows ------------------------------------------------------------------


def ratio_gate(**extra: object) -> Gate:
    return Gate.model_validate(
        {"name": "auth", "ratio": {"good": "g", "total": "t"}, "compare": {"maxDrop": "1pp"}, **extra}
    )


def ratio_reading(good: float, total: float, window: float = 30.0) -> SignalReading:
    sample = Sample(value=good / total, samples=total, good=good, total=total)
    return SignalReading(gate="auth", canary={SEG: sample}, stable={SEG: sample}, window_seconds=window)


def test_widen_adds_up_ratio_counts_within_the_window() -> None:
    recorded = [(t, {"auth": ratio_reading(90 + i, 100)}) for i, t in enumerate(times(5))]
    now = recorded[-1][0]
    wide = widen(GateRead(ratio_gate(), 90.0), recorded[-1][1]["auth"], now, recorded)
    # The last three readings cover (now - 90 s, now]; the one at now - 90 s does not.
    assert wide.window_seconds == 90.0
    assert wide.canary[SEG] == Sample(value=279 / 300, samples=300, good=279, total=300)


def test_widen_leaves_quantiles_errors_and_wide_readings_alone() -> None:
    now = T0
    quantile = Gate.model_validate({"name": "p99", "quantile": "q", "max": 1})
    reading = SignalReading(gate="p99", canary={(): Sample(value=0.5)}, window_seconds=30)
    assert widen(GateRead(quantile, 300.0), reading, now, [(now, {"p99": reading})]) is reading
    failed = SignalReading(gate="auth", error="timeout", window_seconds=30)
    assert widen(GateRead(ratio_gate(), 300.0), failed, now, [(now, {"auth": failed})]) is failed
    live = ratio_reading(9, 10, window=300.0)
    assert widen(GateRead(ratio_gate(), 300.0), live, now, [(now, {"auth": live})]) is live


def test_widen_adds_up_counts_and_their_exposure() -> None:
    gate = Gate.model_validate({"name": "dups", "count": "c", "exposure": "e", "max": 0})

    def reading(value: float) -> SignalReading:
        return SignalReading(gate="dups", canary={(): Sample(value=value, samples=100)}, stable={}, window_seconds=30)

    recorded = [(t, {"dups": reading(i)}) for i, t in enumerate(times(3))]
    wide = widen(GateRead(gate, 60.0), recorded[-1][1]["dups"], recorded[-1][0], recorded)
    assert wide.canary[()] == Sample(value=3, samples=200)


def test_sequential_gate_reads_everything_since_its_step_started() -> None:
    """A recording of per-interval counts replays a sequential gate on cumulative counts."""
    rollout = make_rollout()
    spec = rollout.spec.model_copy(
        update={"gates": [rollout.spec.gates[0].model_copy(update={"method": "sequential"}), rollout.spec.gates[1]]}
    )
    rollout = rollout.model_copy(update={"spec": spec})
    replayer = Replayer(rollout)
    replayer.advance(T0, HEALTHY)  # starts; the gate step begins at T0
    for now in times(4)[1:]:
        reads = {read.gate.name: read.window_seconds for read in replayer.reads(now)}
        assert reads["auth-approval"] == (now - T0).total_seconds()
        replayer.advance(now, HEALTHY)
    auth = next(g for g in replayer.status.gates if g.name == "auth-approval")
    assert auth.samples == 3 * 1000  # three intervals of 1,000 canary requests each


def test_a_workload_ref_is_left_out_of_a_replay_which_judges_the_gates_alone() -> None:
    """A recording has traffic, not Deployments: the replay of a workloadRef rollout decides as
    the same rollout without one (adoption and readiness happen on a cluster)."""
    plain = make_rollout()
    document = plain.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["workloadRef"] = {"name": "checkout-api"}
    released = type(plain).model_validate(document)
    steps = [(t, HEALTHY) for t in times(10)]
    with_workload = replay(released, steps, approve_all=True)
    without = replay(plain, steps, approve_all=True)
    assert with_workload.outcome == without.outcome == "promoted"
    assert [t.action for t in with_workload.transitions] == [t.action for t in without.transitions]
