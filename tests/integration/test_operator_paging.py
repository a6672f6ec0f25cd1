"""Paging the stop-exposure owner through the running operator: one alert per halt, kept one
across re-decisions and a restart, resolved by on-call's abort; a failing target is surfaced,
never blocking the halt."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from checkout_gates_lab.testbed import Alertmanager

from .operator_harness import ABORT, Operator, Rollout, wait_for
from .receivers import Receiver

pytestmark = pytest.mark.integration


def halted_alerts(alertmanager: Alertmanager, rollout: Rollout, *, active: bool = True) -> list[dict[str, Any]]:
    found = alertmanager.alerts(rollout=rollout.name, namespace=rollout.namespace)
    now = datetime.now(UTC)
    if not active:
        return found
    return [a for a in found if datetime.fromisoformat(a["endsAt"].replace("Z", "+00:00")) > now]


def test_halt_pages_alertmanager_once_across_redecisions_and_restart(
    new_rollout: Callable[..., Rollout], alertmanager: Alertmanager, operator: Operator
) -> None:
    page = [{"alertmanager": {"url": alertmanager.url}}]
    rollout = new_rollout(owner={"name": "payments-oncall", "page": page})
    rollout.service.canary.approval = 0.80
    rollout.apply()
    status = rollout.wait_phase("Halted")
    dedup_key = status["page"]["dedupKey"]
    alerts = wait_for(lambda: halted_alerts(alertmanager, rollout), "the alert in Alertmanager")
    assert len(alerts) == 1
    labels = alerts[0]["labels"]
    assert labels["alertname"] == "CheckoutRolloutHalted"
    assert labels["owner"] == "payments-oncall" and labels["dedup_key"] == dedup_key
    assert "auth-approval" in alerts[0]["annotations"]["summary"]
    delivered = wait_for(
        lambda: all(d.get("deliveredAt") for d in rollout.status["page"]["deliveries"]) and rollout.status,
        "the delivery recorded in status",
    )
    conditions = {c["type"]: c for c in delivered["conditions"]}
    assert conditions["PageDelivered"]["status"] == "True"

    time.sleep(20)  # ten analysis intervals: ten re-decisions of the same halt
    operator.kill()
    operator.start()
    time.sleep(8)
    assert len(halted_alerts(alertmanager, rollout)) == 1
    assert rollout.status["page"]["dedupKey"] == dedup_key
    assert [e["action"] for e in rollout.history()].count("Halted") == 1

    rollout.annotate(ABORT, "alice")
    rollout.wait_phase("Aborted")
    wait_for(lambda: not halted_alerts(alertmanager, rollout), "the alert resolved")
    # Alertmanager shows the resolution before the operator's status records it: wait for the record.
    resolved = wait_for(
        lambda: (
            (page := rollout.status["page"])["resolvedAt"]
            and all(d.get("resolvedAt") for d in page["deliveries"])
            and page
        ),
        "the resolution recorded for every delivery",
    )
    assert resolved["resolvedAt"] and all(d.get("resolvedAt") for d in resolved["deliveries"])


def test_undeliverable_page_is_surfaced_and_does_not_block_the_halt(new_rollout: Callable[..., Rollout]) -> None:
    rollout = new_rollout()  # its only target is a webhook on a closed port
    rollout.service.canary.duplicates_per_second = 2.0
    rollout.apply()
    status = rollout.wait_phase("Aborted")
    assert status["weights"]["canary"] == 0
    failed = wait_for(
        lambda: (
            (c := {x["type"]: x for x in rollout.status.get("conditions", [])}.get("PageDelivered"))
            and c["status"] == "False"
            and c
        ),
        "PageDelivered=False",
    )
    assert "page[0]:webhook" in failed["message"]
    deliveries = rollout.status["page"]["deliveries"]
    assert deliveries[0]["attempts"] >= 1 and deliveries[0]["error"] and not deliveries[0].get("deliveredAt")


def test_a_waiting_approval_notifies_once_with_the_command_and_its_deadline_halts_and_pages_once(
    new_rollout: Callable[..., Rollout], operator: Operator, receiver: Receiver
) -> None:
    gates = ["auth-approval", "duplicate-charges"]
    rollout = new_rollout(
        steps=[
            {"setWeight": 20},
            {"gate": {"pass": gates, "window": "3s"}},
            {"approval": {"approvers": 2, "deadline": "20s"}},
            {"setWeight": 100},
        ],
        owner={
            "name": "payments-oncall",
            "page": [{"webhook": {"url": f"{receiver.url}/page"}}],
            "notify": [{"webhook": {"url": f"{receiver.url}/notify"}}],
        },
    )
    rollout.apply()
    rollout.wait_phase("AwaitingApproval")
    (notice,) = wait_for(lambda: receiver.accepted("/notify"), "the approval notice at the receiver")
    assert notice["event"] == "trigger" and notice["severity"] == "info"
    assert "step 2 waits for approval" in notice["summary"]
    details = notice["details"]
    assert (
        details["approve"]
        == f"kubectl annotate cro/{rollout.name} -n {rollout.namespace} gates.checkout.dev/approve=$USER"
    )
    assert details["approvals"] == "0 of 2" and "auth-approval Pass" in details["gates"]

    status = rollout.wait_phase("Halted", timeout=90)
    assert "not approved within 20s (0 of 2 approvers: nobody)" in status["haltReason"]
    assert status["weights"]["canary"] == 20, "exposure held where it was"
    wait_for(lambda: receiver.accepted("/page"), "the deadline's page")
    # The notice is resolved (nobody waits for approvers now); then nothing more is sent.
    wait_for(
        lambda: [b for b in receiver.accepted("/notify") if b["event"] == "resolve"],
        "the approval notice resolved at the receiver",
    )
    operator.kill()
    operator.start()
    time.sleep(6)  # three analysis intervals of the restarted operator: a double send would be seen
    notices = receiver.accepted("/notify")
    assert [b["event"] for b in notices] == ["trigger", "resolve"], notices
    assert [b["event"] for b in receiver.accepted("/page")] == ["trigger"]
    assert [e["action"] for e in rollout.history()].count("Halted") == 1
