"""CheckoutFreeze on the testbed: a window declared for the next seconds holds progressing
rollouts at their weight; an abort still works; a break-glass by an approver with a reason lets one
proceed and is paged; the window's end lets the others go on by themselves."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from checkout_gates_lab.testbed import Kubectl

from .operator_harness import Operator, Rollout, wait_for
from .receivers import Receiver

pytestmark = pytest.mark.integration

GATES = ["auth-approval", "duplicate-charges"]
STEPS = [
    {"setWeight": 5},
    {"gate": {"pass": GATES, "window": "2s"}},
    {"setWeight": 50},
    {"gate": {"pass": GATES, "window": "2s"}},
    {"setWeight": 100},
]


def canary(rollout: Rollout) -> int:
    return int(rollout.status.get("weights", {}).get("canary", 0))


def frozen(rollout: Rollout) -> dict[str, Any] | None:
    status = rollout.status
    return status if status.get("freeze") else None


def test_a_freeze_holds_exposure_an_abort_works_break_glass_is_paged_and_the_end_lets_go(
    cluster_ready: Kubectl, new_rollout: Callable[..., Rollout], operator: Operator, receiver: Receiver
) -> None:
    owner = {"name": "payments-oncall", "page": [{"webhook": {"url": f"{receiver.url}/page"}}]}
    rollouts = [new_rollout(steps=STEPS, owner=owner) for _ in range(3)]
    waits, aborts, breaks = rollouts
    for rollout in rollouts:
        rollout.apply()
    for rollout in rollouts:
        wait_for(lambda r=rollout: canary(r) == 5, f"{rollout.name} at 5%")  # type: ignore[misc]
    now = datetime.now(UTC)
    until = now + timedelta(seconds=40)
    freeze: dict[str, Any] = {
        "apiVersion": "gates.checkout.dev/v1alpha1",
        "kind": "CheckoutFreeze",
        "metadata": {"name": f"peak-{waits.name}"},
        "spec": {
            "reason": "Black Friday peak",
            "windows": [{"start": (now - timedelta(seconds=5)).isoformat(), "end": until.isoformat()}],
            "namespaces": [r.namespace for r in rollouts],
        },
    }
    cluster_ready.apply(yaml.safe_dump(freeze))
    try:
        for rollout in rollouts:
            status = wait_for(lambda r=rollout: frozen(r), f"{rollout.name} frozen")  # type: ignore[misc]
            assert status["freeze"]["name"] == freeze["metadata"]["name"]
        listing = cluster_ready("get", "cro", waits.name, "-n", waits.namespace).stdout
        assert "FROZEN-UNTIL" in listing
        # Held: every gate step passes in a few seconds, yet no weight grows.
        wait_for(lambda: any(e["action"] == "StepAdvanced" for e in waits.history()), "the gate step passed")
        assert waits.status["weights"]["canary"] == 5 and waits.status["message"].startswith("Frozen until")

        aborts.annotate("gates.checkout.dev/abort", "bob")
        aborted = aborts.wait_phase("Aborted")
        assert aborted["weights"]["canary"] == 0, "an abort works in a freeze"

        meta = {"gates.checkout.dev/break-freeze": "alice", "gates.checkout.dev/reason": "the peak's own fix"}
        patch = json.dumps({"metadata": {"annotations": meta}})
        cluster_ready("patch", "cro", breaks.name, "-n", breaks.namespace, "--type=merge", "-p", patch)
        promoted = breaks.wait_phase("Promoted", timeout=60)
        assert promoted["weights"]["canary"] == 100 and datetime.now(UTC) < until, "before the window ended"
        assert [e["actor"] for e in breaks.history() if e["action"] == "FreezeBroken"] == ["alice"]
        (paged,) = wait_for(
            lambda: [b for b in receiver.accepted("/page") if "broken by alice" in b["summary"]], "the break paged"
        )
        assert paged["severity"] == "warning" and paged["rollout"]["name"] == breaks.name

        assert waits.status["weights"]["canary"] == 5, "the others still held"
        done = waits.wait_phase("Promoted", timeout=120)  # the window ends: it goes on by itself
        assert done["weights"]["canary"] == 100
        assert "FreezeEnded" in [e["action"] for e in waits.history()]
    finally:
        cluster_ready("delete", "checkoutfreeze", freeze["metadata"]["name"], "--wait=false", check=False)
