"""Conflicts and races: a spec change mid-step, a person editing the route, on-call annotations
that arrive together, twice, or changed before the operator sees them, and a second writer of
status. Nothing is lost and nothing is done twice."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from checkout_gates_lab.testbed import Prometheus

from .operator_harness import ABORT, APPROVE, Operator, wait_for
from .reliability import (
    TWO_APPROVALS,
    TWO_GATES,
    LiveRollout,
    PrometheusProxy,
    advanced_steps,
    assert_clean_history,
    expected_steps,
    gate,
)

pytestmark = pytest.mark.integration

RETRY = "gates.checkout.dev/retry"


def actions(status: dict[str, Any]) -> list[tuple[str, str, int]]:
    return [(e["action"], e["actor"], e["step"]) for e in status["history"]]


def test_spec_change_mid_step_restarts_from_step_0_and_keeps_history(live: Callable[..., LiveRollout]) -> None:
    rollout = live()
    rollout.apply()
    wait_for(lambda: rollout.status.get("currentStep") == 3, "the second gate step (5%)")
    before = rollout.status
    rollout.manifest["spec"]["steps"][3]["gate"]["window"] = "3s"  # a new generation
    rollout.apply()
    # Taken up, and its first setWeight step confirmed by the router (a step completes only then).
    restarted = wait_for(
        lambda: (
            (s := rollout.status).get("observedGeneration") == 2 and advanced_steps(s["history"], generation=2) and s
        ),
        "the new generation taken up",
    )
    history = restarted["history"]
    assert history[: len(before["history"])] == before["history"], "the first generation's history is kept"
    assert [e["action"] for e in history].count("Restarted") == 1
    restart = next(e for e in history if e["action"] == "Restarted")
    assert restart["generation"] == 2 and "generation 1 -> 2" in restart["reason"]
    assert advanced_steps(history, generation=1) == [0, 1, 2]
    assert advanced_steps(history, generation=2)[0] == 0, "the new generation starts again at step 0"
    wait_for(lambda: rollout.status.get("phase") == "AwaitingApproval", "the approval step, again")
    rollout.annotate(APPROVE, "alice")
    status = rollout.wait_phase("Promoted")
    assert_clean_history(rollout, status, generation=2)
    assert advanced_steps(status["history"], generation=1) == [0, 1, 2]
    assert rollout.route_weights() == (0, 100)


def test_hand_edited_route_halts_on_drift_and_retry_reapplies(live: Callable[..., LiveRollout]) -> None:
    rollout = live()
    rollout.apply()
    wait_for(
        lambda: (
            rollout.status.get("currentStep") == 1 and (rollout.status.get("routerWeights") or {}).get("canary") == 1
        ),
        "1% confirmed by the router",
    )
    rollout.set_route_weights(50, 50)
    status = rollout.wait_phase("Halted")
    assert "changed by hand" in status["haltReason"] and "canary 50%" in status["haltReason"]
    assert status["page"]["reason"] == "router-drift"
    time.sleep(3)
    assert rollout.route_weights() == (50, 50), "a halted rollout does not fight the person"
    rollout.annotate(RETRY, "carol")
    wait_for(lambda: rollout.route_weights() == (99, 1), "retry re-applied the rollout's weights")
    status = wait_for(
        lambda: (s := rollout.status).get("phase") == "Progressing" and s, "Progressing again", timeout=30
    )
    assert ("Retried", "carol", 1) in actions(status)
    assert [a for a, _, _ in actions(status)].count("Halted") == 1
    assert status["page"]["resolvedAt"], "the drift page is resolved by the retry"
    wait_for(lambda: RETRY not in rollout.annotations(), "the retry consumed")


def test_abort_and_approve_together_abort_wins_and_both_are_consumed(live: Callable[..., LiveRollout]) -> None:
    rollout = live(steps=TWO_APPROVALS)
    rollout.apply()
    rollout.wait_phase("AwaitingApproval")
    rollout.annotate_many({ABORT: "bob", APPROVE: "alice"})  # one update carrying both
    status = rollout.wait_phase("Aborted")
    wait_for(lambda: not rollout.annotations(), "both annotations consumed")
    status = rollout.status
    done = actions(status)
    assert ("Aborted", "bob", 1) in done
    assert not [a for a in done if a[0] == "Approved"]
    ignored = [e for e in status["history"] if e["action"] == "Ignored"]
    assert [(e["actor"], e["reason"]) for e in ignored] == [("alice", "approve by alice superseded by abort")]
    wait_for(lambda: rollout.route_weights() == (100, 0), "the route back at stable")
    assert_clean_history(rollout, status)


def test_duplicate_approval_is_taken_once(live: Callable[..., LiveRollout]) -> None:
    # After the approval a gate step, not another approval: a repeat that arrives late must find
    # nothing to approve (with a second approval step next, a late repeat would be a new approval).
    rollout = live(steps=[{"setWeight": 1}, {"approval": {}}, {"setWeight": 5}, gate("30s"), {"setWeight": 100}])
    rollout.apply()
    rollout.wait_phase("AwaitingApproval")
    rollout.annotate(APPROVE, "alice")
    rollout.annotate(APPROVE, "alice")  # the same request again, at once
    wait_for(lambda: rollout.status.get("currentStep") == 3, "the gate step after the approval")
    wait_for(lambda: not rollout.annotations(), "the approval consumed")
    time.sleep(2)
    status = rollout.status
    assert status["currentStep"] == 3 and status["phase"] == "Progressing", "one approval opened one step"
    assert [a for a in actions(status) if a[0] == "Approved"] == [("Approved", "alice", 1)]
    # a repeat that landed after the first was consumed is recorded as ignored, never applied
    assert all("nothing awaits approval" in e["reason"] for e in status["history"] if e["action"] == "Ignored")
    assert_clean_history(rollout, status)


def test_annotation_changed_before_the_operator_runs_counts_its_last_value_once(
    live: Callable[..., LiveRollout], operator: Operator
) -> None:
    rollout = live(steps=TWO_APPROVALS)
    rollout.apply()
    rollout.wait_phase("AwaitingApproval")
    operator.kill()
    try:
        rollout.annotate(APPROVE, "carol")
        rollout.annotate(APPROVE, "dave")  # changed before any operator saw the first value
    finally:
        operator.start()
    status = wait_for(lambda: (s := rollout.status).get("currentStep") == 3 and s, "the approval taken")
    wait_for(lambda: not rollout.annotations(), "the approval consumed")
    status = rollout.status
    assert [a for a in actions(status) if a[0] == "Approved"] == [("Approved", "dave", 1)]
    assert "carol" not in json.dumps(status["history"])
    assert_clean_history(rollout, status)


def test_status_written_by_a_second_writer_is_re_read_and_re_decided(
    live: Callable[..., LiveRollout], operator: Operator, scraping_prometheus: Prometheus
) -> None:
    """A second writer changes status while a pass is between its read and its write (hooked into
    the pass through its Prometheus queries): that write gets a 409, the pass re-reads and decides
    again; every transition is still made, once."""
    rollout = live(steps=TWO_GATES)
    proxy = PrometheusProxy(scraping_prometheus.url).start()
    rollout.manifest["spec"]["prometheus"] = {"address": proxy.url, "timeout": "2s"}
    lock = threading.Lock()
    writes: list[float] = []

    def second_writer() -> None:
        with lock:  # once per evaluation (they are 2 s apart; a re-decision follows at once), 4 times
            if len(writes) >= 4 or (writes and time.monotonic() - writes[-1] < 1.5):
                return
            writes.append(time.monotonic())
        rollout.patch_status({"message": f"audited by audit-bot ({len(writes)})"})

    proxy.on_request = second_writer
    try:
        rollout.apply()
        status = rollout.wait_phase("Promoted", timeout=180)
    finally:
        proxy.stop()
    conflicts = [
        line
        for line in operator.logs.read_text(errors="replace").splitlines()
        if f'"{rollout.namespace}/{rollout.name}"' in line and "status conflict" in line
    ]
    print(f"\n{len(writes)} writes by the second writer, {len(conflicts)} conflicts met by the operator")
    assert len(writes) == 4
    assert len(conflicts) >= len(writes), "each write in the middle of a pass made its status write conflict"
    assert_clean_history(rollout, status)
    assert advanced_steps(status["history"]) == expected_steps(rollout.manifest["spec"]["steps"], 5)
    assert rollout.route_weights() == (0, 100) and status["routerTarget"] == status["weights"]
    assert "audited" not in status["message"], "the operator's own status won after re-deciding"
