"""Scenarios of the rollout state machine, each a short story an on-call engineer would recognise."""

from __future__ import annotations

from datetime import timedelta

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.api.status import Weights
from checkout_gates.gates.observations import ArmSteps, Sample, SignalReading
from checkout_gates.rollout.actions import ConsumeAnnotation, EmitEvent, PageOwner, ResolvePage, SetWeights
from checkout_gates.rollout.machine import Observations, decide
from checkout_gates.rollout.pages import record_delivery
from checkout_gates.rollout.plan import reads_needed

from .rollouts import HEALTHY, Driver, make_rollout, readings, rollout_doc, with_annotations, with_status

APPROVE = "gates.checkout.dev/approve"
ABORT = "gates.checkout.dev/abort"
RETRY = "gates.checkout.dev/retry"
PAUSE = "gates.checkout.dev/pause"


def weights_set(driver: Driver) -> list[int]:
    return [a.weights.canary for a in driver.actions if isinstance(a, SetWeights)]


def pages_opened(driver: Driver) -> set[str]:
    return {a.dedup_key for a in driver.actions if isinstance(a, PageOwner)}


def run_to_gate(driver: Driver) -> None:
    driver.step()  # start, setWeight 5, enter the gate step
    assert driver.status.phase == "Progressing"
    assert driver.status.current_step == 1


def test_healthy_rollout_steps_to_promotion_with_one_approval() -> None:
    driver = Driver(make_rollout())
    run_to_gate(driver)
    for _ in range(3):
        driver.step(HEALTHY)
    assert driver.status.phase == "AwaitingApproval"
    assert driver.status.current_step == 2
    driver.annotate({APPROVE: "alice"})
    driver.step()
    assert driver.status.current_step == 4 and driver.status.weights.canary == 25
    for _ in range(3):
        driver.step(HEALTHY)
    assert driver.status.phase == "Promoted"
    assert driver.status.weights == Weights(stable=0, canary=100)
    assert weights_set(driver) == [5, 25, 100]
    actions = [entry.action for entry in driver.status.history]
    assert actions[0] == "Started" and actions[-1] == "Promoted"
    approved = [e for e in driver.status.history if e.action == "Approved"]
    assert [e.actor for e in approved] == ["alice"]
    assert not pages_opened(driver)


def test_gate_must_hold_for_its_whole_window() -> None:
    driver = Driver(make_rollout())
    run_to_gate(driver)
    driver.step(HEALTHY)
    driver.step(readings(canary_total=10))  # inconclusive resets the streak
    driver.step(HEALTHY)
    driver.step(HEALTHY)
    assert driver.status.current_step == 1, "a 1m window needs a full minute of passes after the reset"
    driver.step(HEALTHY)
    assert driver.status.phase == "AwaitingApproval"


def test_failing_gate_holds_at_current_weight_and_pages_once() -> None:
    driver = Driver(make_rollout())
    run_to_gate(driver)
    bad = readings(canary_approval=0.90)
    driver.step(bad)
    assert driver.status.phase == "Progressing" and driver.status.failures == 1
    driver.step(bad)
    assert driver.status.phase == "Halted"
    assert driver.status.weights.canary == 5
    assert "auth-approval" in driver.status.halt_reason
    assert driver.status.page is not None
    for _ in range(10):
        driver.step(bad)
    assert len(pages_opened(driver)) == 1
    assert driver.status.phase == "Halted" and driver.status.weights.canary == 5
    gate = next(g for g in driver.status.gates if g.name == "auth-approval")
    assert gate.verdict == "Fail" and gate.segment == "provider=adyen"


def test_on_halt_abort_returns_traffic_to_stable() -> None:
    driver = Driver(make_rollout(on_halt="abort"))
    run_to_gate(driver)
    driver.step(readings(canary_approval=0.90))
    driver.step(readings(canary_approval=0.90))
    assert driver.status.phase == "Aborted"
    assert weights_set(driver)[-1] == 0


def test_critical_gate_aborts_at_once() -> None:
    driver = Driver(make_rollout())
    run_to_gate(driver)
    driver.step(readings(duplicates=2))
    assert driver.status.phase == "Aborted"
    assert driver.status.weights.canary == 0
    assert "duplicate-charges" in driver.status.halt_reason
    assert len(pages_opened(driver)) == 1


def test_critical_gate_is_watched_while_awaiting_approval() -> None:
    driver = Driver(make_rollout())
    run_to_gate(driver)
    for _ in range(3):
        driver.step(HEALTHY)
    assert driver.status.phase == "AwaitingApproval"
    driver.step(readings(duplicates=1))
    assert driver.status.phase == "Aborted"


def test_inconclusive_never_advances_and_halts_at_its_limit() -> None:
    driver = Driver(make_rollout())
    run_to_gate(driver)
    low = readings(canary_total=10)
    driver.step(low)
    driver.step(low)
    assert driver.status.current_step == 1 and driver.status.phase == "Progressing"
    driver.step(low)
    assert driver.status.phase == "Halted"
    assert driver.status.current_step == 1
    assert driver.status.page is not None and driver.status.page.reason == "inconclusive"


def test_prometheus_errors_are_inconclusive_not_passes() -> None:
    driver = Driver(make_rollout())
    run_to_gate(driver)
    for _ in range(2):
        driver.step(readings(error="connection refused"))
    assert driver.status.current_step == 1
    assert all(g.verdict == "Inconclusive" for g in driver.status.gates)
    assert "connection refused" in driver.status.gates[0].reason


def test_abort_annotation_drops_weight_to_zero_and_is_consumed_once() -> None:
    driver = Driver(make_rollout())
    run_to_gate(driver)
    driver.annotate({ABORT: "bob"})
    driver.step()
    assert driver.status.phase == "Aborted" and driver.status.weights.canary == 0
    assert ABORT not in driver.rollout.metadata.annotations
    aborted = [e for e in driver.status.history if e.action == "Aborted"]
    assert [e.actor for e in aborted] == ["bob"]
    history = list(driver.status.history)
    driver.annotate({ABORT: "bob"})
    driver.step()
    assert driver.status.phase == "Aborted"
    assert driver.status.history == history, "the same abort again is recognised and only removed"
    assert ABORT not in driver.rollout.metadata.annotations
    driver.annotate({ABORT: "frank"})
    driver.step()
    assert driver.status.history[-1].action == "Ignored" and driver.status.history[-1].actor == "frank"


def test_abort_wins_over_approve_given_at_the_same_time() -> None:
    driver = Driver(make_rollout())
    run_to_gate(driver)
    driver.annotate({APPROVE: "alice", ABORT: "bob"})
    driver.step()
    assert driver.status.phase == "Aborted"
    assert driver.rollout.metadata.annotations == {}


def test_second_approval_does_nothing() -> None:
    driver = Driver(make_rollout())
    run_to_gate(driver)
    for _ in range(3):
        driver.step(HEALTHY)
    driver.annotate({APPROVE: "alice"})
    driver.step()
    step, weights = driver.status.current_step, driver.status.weights
    driver.annotate({APPROVE: "alice"})
    driver.step()
    assert (driver.status.current_step, driver.status.weights) == (step, weights)
    assert APPROVE not in driver.rollout.metadata.annotations


def test_leftover_annotation_after_a_crash_is_not_applied_twice() -> None:
    rollout = make_rollout()
    driver = Driver(rollout)
    run_to_gate(driver)
    for _ in range(3):
        driver.step(HEALTHY)
    annotated = with_annotations(driver.rollout, {APPROVE: "alice"})
    first = decide(annotated, Observations(), driver.now)
    # The controller wrote this status and died before removing the annotation.
    replayed = decide(with_status(annotated, first.status), Observations(), driver.now + timedelta(seconds=5))
    assert replayed.status == first.status
    assert replayed.actions == (ConsumeAnnotation(APPROVE, "alice"),)


def test_retry_after_halt_runs_the_step_again_and_resolves_the_page() -> None:
    driver = Driver(make_rollout())
    run_to_gate(driver)
    driver.step(readings(canary_approval=0.90))
    driver.step(readings(canary_approval=0.90))
    assert driver.status.phase == "Halted"
    driver.annotate({RETRY: "carol"})
    driver.step()
    assert driver.status.phase == "Progressing" and driver.status.current_step == 1
    assert driver.status.failures == 0
    assert driver.status.page is not None and driver.status.page.resolved_at is not None
    assert driver.status.weights.canary == 5


def test_page_is_resolved_once_delivered_and_escalates_once() -> None:
    driver = Driver(make_rollout())
    run_to_gate(driver)
    driver.step(readings(canary_approval=0.90))
    driver.step(readings(canary_approval=0.90))
    page = driver.status.page
    assert page is not None
    delivered = record_delivery(
        driver.status, page.deliveries[0].target, dedup_key=page.dedup_key, resolved=False, error="", now=driver.now
    )
    driver.rollout = with_status(driver.rollout, delivered)
    driver.actions.clear()
    driver.step()
    assert not [a for a in driver.actions if isinstance(a, PageOwner)], "a delivered page is not sent again"
    driver.now += timedelta(minutes=10)
    driver.step()
    driver.step()
    escalations = [a for a in driver.actions if isinstance(a, PageOwner) and a.escalation]
    assert escalations and all(a.dedup_key == page.dedup_key for a in escalations)
    assert [e.action for e in driver.status.history].count("Escalated") == 1
    driver.annotate({ABORT: "dave"})
    driver.actions.clear()
    driver.step()
    resolves = [a for a in driver.actions if isinstance(a, ResolvePage)]
    assert resolves and resolves[0].targets == (0,)


def test_spec_change_restarts_from_step_zero_keeping_history() -> None:
    driver = Driver(make_rollout())
    run_to_gate(driver)
    history = list(driver.status.history)
    document = driver.rollout.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["spec"]["analysis"]["failureLimit"] = 3  # a change of the spec (a generation alone is none)
    document["metadata"]["generation"] = 2
    driver.rollout = CheckoutRollout.model_validate(document)
    driver.step()
    assert driver.status.observed_generation == 2
    assert driver.status.history[: len(history)] == history
    assert "Restarted" in [e.action for e in driver.status.history]
    assert weights_set(driver)[-2:] == [0, 5]


def test_pause_and_resume() -> None:
    driver = Driver(make_rollout())
    run_to_gate(driver)
    driver.annotate({PAUSE: "erin"})
    driver.step()
    assert driver.status.phase == "Paused"
    for _ in range(5):
        driver.step(HEALTHY)
    assert driver.status.current_step == 1, "a paused rollout does not advance"
    driver.annotate({APPROVE: "erin"})
    driver.step()
    assert driver.status.phase == "Progressing"


def confirm_weights(driver: Driver) -> None:
    """What the controller records once the router applied the status' weights."""
    status = driver.status
    confirmed = status.model_copy(update={"router_target": status.weights, "router_weights": status.weights})
    driver.rollout = with_status(driver.rollout, confirmed)


def test_unconfirmed_weights_are_stated_again_until_the_router_confirms() -> None:
    driver = Driver(make_rollout(), router_confirms=False)
    driver.step()  # start: setWeight 5 stated, not confirmed
    assert driver.status.current_step == 0, "a setWeight step completes only once the router confirms it"
    again = decide(driver.rollout, Observations(router_weights=Weights.canary_at(0)), driver.now)
    assert again.status.phase == "Progressing", "a router still at the old weights is a pending patch, not drift"
    assert again.status.current_step == 0
    assert [a.weights.canary for a in again.actions if isinstance(a, SetWeights)] == [5]
    confirm_weights(driver)
    settled = decide(driver.rollout, Observations(router_weights=Weights.canary_at(5)), driver.now)
    assert not [a for a in settled.actions if isinstance(a, SetWeights)]
    assert settled.status.current_step == 1, "confirmed: the step completes and the gate step begins"


def test_router_drift_halts_instead_of_overwriting() -> None:
    driver = Driver(make_rollout())
    run_to_gate(driver)
    decision = decide(driver.rollout, Observations(router_weights=Weights.canary_at(40)), driver.now)
    assert decision.status.phase == "Halted"
    assert "changed by hand" in decision.status.halt_reason
    assert not [a for a in decision.actions if isinstance(a, SetWeights)]


def test_reason_annotation_goes_with_its_request() -> None:
    driver = Driver(make_rollout())
    run_to_gate(driver)
    driver.annotate({PAUSE: "erin", "gates.checkout.dev/reason": "payments freeze"})
    driver.step()
    assert driver.status.history[-1].reason == "payments freeze"
    assert driver.rollout.metadata.annotations == {}, "the reason is consumed with the request"


def test_a_sequential_rejection_halts_at_once_and_says_rejected_with_its_e_value() -> None:
    document = rollout_doc()
    auth, *others = document["spec"]["gates"]
    document["spec"]["gates"] = [{**auth, "method": "sequential", "alpha": 0.01}, *others]  # a copy: GATES is shared
    driver = Driver(CheckoutRollout.model_validate(document))
    run_to_gate(driver)
    driver.step(readings(canary_approval=0.80, canary_total=2000))
    assert driver.status.phase == "Halted"
    assert driver.status.halt_reason.startswith("gate auth-approval rejected: provider=adyen: ")
    assert "e-value 1.563e+111 ≥ 100 (1/alpha)" in driver.status.halt_reason
    assert "times" not in driver.status.halt_reason
    events = [a for a in driver.actions if isinstance(a, EmitEvent) and a.reason == "GateFailed"]
    assert events and events[-1].message.startswith("auth-approval: rejected, provider=adyen: ")


def test_threshold_failures_count_per_step_and_say_so() -> None:
    driver = Driver(make_rollout())
    run_to_gate(driver)
    bad = readings(canary_approval=0.90)
    driver.step(bad)
    driver.step(HEALTHY)  # a pass in between does not reset the count
    assert driver.status.failures == 1
    driver.step(bad)
    assert driver.status.phase == "Halted"
    assert driver.status.halt_reason.startswith("gate auth-approval failed 2 times this step: ")


def test_a_retry_that_halts_again_at_the_same_step_for_the_same_reason_is_a_new_incident() -> None:
    """Found by test_one_page_per_halt: two critical aborts of step 1, a retry between, shared one
    dedup key, so a late resolve of the first page could close the second's incident."""
    driver = Driver(make_rollout(on_halt="hold"))
    critical = readings(duplicates=3)
    driver.step(critical, advance=30)
    driver.step(critical, advance=30)
    first = driver.status.page
    driver.annotate({RETRY: "oncall"})
    driver.step(critical, advance=30)
    driver.step(critical, advance=30)
    second = driver.status.page
    assert first is not None and second is not None and driver.status.phase == "Aborted"
    assert first.dedup_key != second.dedup_key
    assert [a.dedup_key for a in driver.actions if isinstance(a, PageOwner)] == [first.dedup_key, second.dedup_key]


def _exact_auth_doc() -> dict[str, object]:
    document = rollout_doc()
    auth, *others = document["spec"]["gates"]
    exact = {
        **auth,
        "ratio": {"good": 'good{variant="{{variant}}"}', "total": 'total{variant="{{variant}}"}'},
        "method": "sequential",
        "counts": "exact",
    }
    document["spec"]["gates"] = [exact, *others]
    return document


def _carried(canary_bad: list[float], stable_bad: list[float], share: list[float]) -> dict[str, SignalReading]:
    """Interval-by-interval readings of the exact auth gate: 1,000 requests an interval in all."""
    seg = (("provider", "adyen"),)

    def arm(bad: list[float], exposure: list[float]) -> Sample:
        total = sum(exposure)
        return Sample(
            value=(total - sum(bad)) / total,
            samples=total,
            good=total - sum(bad),
            total=total,
            steps=ArmSteps(tuple(bad), tuple(exposure)),
        )

    found = dict(readings())
    found["auth-approval"] = SignalReading(
        gate="auth-approval",
        canary={seg: arm(canary_bad, [1000 * s for s in share])},
        stable={seg: arm(stable_bad, [1000 * (1 - s) for s in share])},
    )
    return found


def test_carried_gates_read_since_the_evidence_began_and_a_retry_starts_a_new_test() -> None:
    driver = Driver(CheckoutRollout.model_validate(_exact_auth_doc()))
    run_to_gate(driver)
    started = driver.status.evidence_since
    assert started is not None
    assert "false halts ≤ 0.01 for this rollout over auth-approval" in driver.status.guarantee
    driver.step(_carried([1.0], [30.0], [0.05]))
    reads = {read.gate.name: read for read in reads_needed(driver.rollout, driver.now)}
    assert reads["auth-approval"].since == started
    assert reads["auth-approval"].window_seconds == (driver.now - started).total_seconds()
    assert reads["duplicate-charges"].since is None  # not carried: the step's window as before
    # A canary failing 4x as often: rejected for the rollout, with its e-value and its bound.
    driver.step(_carried([1.0, 12.0, 12.0, 12.0], [30.0, 28.0, 28.0, 28.0], [0.05] * 4))
    assert driver.status.phase == "Halted"
    reason = driver.status.halt_reason
    assert reason.startswith("gate auth-approval rejected: e-value ")
    assert "false halts ≤ 0.01 for this rollout): provider=adyen: canary fails" in reason
    driver.annotate({RETRY: "oncall"})
    driver.step()
    assert driver.status.phase == "Progressing"
    assert driver.status.evidence_since is not None and driver.status.evidence_since > started
