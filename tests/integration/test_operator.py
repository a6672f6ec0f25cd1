"""The operator as a user meets it: a process watching a real kube-apiserver, reading a real
Prometheus, patching a Gateway API HTTPRoute, driven by kubectl annotations."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from checkout_gates_lab.testbed import Prometheus

from .operator_harness import ABORT, APPROVE, Operator, Rollout, wait_for

pytestmark = pytest.mark.integration


def test_healthy_rollout_steps_1_5_25_100_with_approval(new_rollout: Callable[..., Rollout]) -> None:
    rollout = new_rollout()
    rollout.apply()
    seen: list[int] = []

    def observe() -> str:
        status = rollout.status
        canary = status.get("weights", {}).get("canary")
        if canary is not None and (not seen or seen[-1] != canary):
            seen.append(canary)
        return str(status.get("phase"))

    wait_for(lambda: observe() == "AwaitingApproval", "the approval step")
    status = rollout.status
    assert status["weights"]["canary"] == 5 and status["currentStep"] == 4
    assert rollout.route_weights() == (95, 5)
    rollout.annotate(APPROVE, "alice")
    wait_for(lambda: observe() == "Promoted", "promotion")
    assert rollout.route_weights() == (0, 100)
    assert [w for w in seen if w] == [1, 5, 25, 100] or set(seen) >= {5, 25, 100}
    history = rollout.history()
    actions = [entry["action"] for entry in history]
    assert actions[0] == "Started" and actions[-1] == "Promoted"
    approved = [entry for entry in history if entry["action"] == "Approved"]
    assert [entry["actor"] for entry in approved] == ["alice"]
    advanced = [(entry["step"], entry["reason"]) for entry in history if entry["action"] == "StepAdvanced"]
    assert len(advanced) == len(set(advanced)), f"a step was recorded twice: {advanced}"
    annotations = rollout.get()["metadata"].get("annotations", {})
    assert APPROVE not in annotations, "the approval was consumed"
    conditions = {c["type"]: c for c in rollout.status["conditions"]}
    assert conditions["Progressing"]["status"] == "False" and conditions["Progressing"]["reason"] == "Promoted"
    assert conditions["RouterReady"]["status"] == "True"
    reasons = wait_for(lambda: (r := rollout.events()) and "Promoted" in r and r, "a Promoted event")
    assert {"Progressing", "StepAdvanced", "AwaitingApproval", "Approved", "Promoted"} <= set(reasons)


def test_failing_gate_holds_at_current_weight_and_names_the_segment(new_rollout: Callable[..., Rollout]) -> None:
    rollout = new_rollout()
    rollout.service.canary.approval = 0.80
    rollout.apply()
    status = rollout.wait_phase("Halted")
    assert status["weights"]["canary"] == 1
    assert rollout.route_weights() == (99, 1)
    assert "auth-approval" in status["haltReason"]
    gate = next(g for g in status["gates"] if g["name"] == "auth-approval")
    assert gate["verdict"] == "Fail" and gate["segment"].startswith("provider=")
    assert status["page"]["dedupKey"]


def test_critical_gate_aborts_to_zero(new_rollout: Callable[..., Rollout]) -> None:
    rollout = new_rollout()
    rollout.service.canary.duplicates_per_second = 2.0
    rollout.apply()
    status = rollout.wait_phase("Aborted")
    assert status["weights"]["canary"] == 0
    assert "duplicate-charges" in status["haltReason"]
    wait_for(lambda: rollout.route_weights() == (100, 0), "the route back at stable")


def test_abort_annotation_returns_weight_to_zero_once(new_rollout: Callable[..., Rollout]) -> None:
    rollout = new_rollout()
    rollout.apply()
    rollout.wait_phase("AwaitingApproval")
    rollout.annotate(ABORT, "bob")
    status = rollout.wait_phase("Aborted")
    assert status["weights"]["canary"] == 0
    wait_for(lambda: rollout.route_weights() == (100, 0), "the route back at stable")
    wait_for(lambda: ABORT not in rollout.get()["metadata"].get("annotations", {}), "the abort consumed")
    history = rollout.history()
    rollout.annotate(ABORT, "bob")
    wait_for(lambda: ABORT not in rollout.get()["metadata"].get("annotations", {}), "the repeat consumed")
    time.sleep(2)
    after = rollout.history()
    assert [e for e in after if e["action"] == "Aborted"] == [e for e in history if e["action"] == "Aborted"]
    assert [e["actor"] for e in after if e["action"] == "Aborted"] == ["bob"]


def test_operator_restart_resumes_at_the_same_step(new_rollout: Callable[..., Rollout], operator: Operator) -> None:
    rollout = new_rollout()
    rollout.apply()
    rollout.wait_phase("AwaitingApproval")
    before = rollout.status
    operator.kill()
    operator.start()
    time.sleep(5)
    during = rollout.status
    assert during["currentStep"] == before["currentStep"] and during["weights"] == before["weights"]
    rollout.annotate(APPROVE, "alice")
    rollout.wait_phase("Promoted")
    advanced = [(e["step"], e["reason"]) for e in rollout.history() if e["action"] == "StepAdvanced"]
    assert len(advanced) == len(set(advanced)) == 7, advanced  # every step but the approval


def test_prometheus_down_holds_then_halts_on_the_inconclusive_limit(
    new_rollout: Callable[..., Rollout], scraping_prometheus: Prometheus
) -> None:
    rollout = new_rollout()
    rollout.apply()
    wait_for(lambda: rollout.status.get("currentStep") == 1, "the first gate step")
    scraping_prometheus.stop()
    try:
        status = rollout.wait_phase("Halted")
    finally:
        scraping_prometheus.start()
    assert status["currentStep"] == 1 and status["weights"]["canary"] == 1
    assert status["page"]["reason"] == "inconclusive"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["MetricsAvailable"]["status"] == "False"
    assert json.dumps(status["gates"]).count("Inconclusive") >= 2
