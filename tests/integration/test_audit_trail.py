"""The audit trail of a whole rollout: every transition reaches the audit sink once across an
operator restart, and ``checkout-gates audit`` prints all of it after the status history (the
last 50) has rolled over, from the sink's records or from the operator's log.

The rollout has 61 setWeight steps (1% to 60%, then 100%): 63 transitions, more than the status
keeps. The operator is a real ``checkout-gates run`` with ``--audit-url`` pointed at a local
receiver that stores what it is sent; it is stopped and started again halfway.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from checkout_gates_lab.testbed import ExternalCluster, Kubectl, LocalCluster, Prometheus

from .checkout_traffic import CheckoutTraffic
from .operator_harness import Operator, Rollout, wait_for
from .receivers import Receiver

pytestmark = pytest.mark.integration

STEPS = [{"setWeight": weight} for weight in range(1, 61)] + [{"setWeight": 100}]
TRANSITIONS = 1 + len(STEPS) + 1  # Started, one StepAdvanced per step, Promoted


def cli(kubeconfig: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "NO_COLOR")}
    command = [sys.executable, "-m", "checkout_gates.cli.main", *args, "--kubeconfig", str(kubeconfig)]
    return subprocess.run(command, capture_output=True, text=True, env=env, input=stdin, timeout=120, check=False)


def promoted_and_delivered(rollout: Rollout, timeout: float) -> dict[str, Any]:
    """The status once the rollout is Promoted and the sink has taken every transition."""
    status: dict[str, Any] = wait_for(
        lambda: (
            (s := rollout.status).get("phase") == "Promoted"
            and (s.get("audit") or {}).get("delivered") == s["epoch"]
            and s
        ),
        "promoted, with every transition delivered",
        timeout=timeout,
    )
    return status


@pytest.fixture
def audited(
    kube: LocalCluster | ExternalCluster,
    cluster_ready: Kubectl,
    scraping_prometheus: Prometheus,
    traffic: CheckoutTraffic,
    receiver: Receiver,
    tmp_path: Path,
) -> Iterator[tuple[Rollout, Operator]]:
    rollout = Rollout(cluster_ready, scraping_prometheus, traffic, steps=STEPS)
    args = ["-n", rollout.namespace, "--audit-url", f"{receiver.url}/audit"]
    operator = Operator(kube.kubeconfig, tmp_path / "operator.log", args=args).start()
    try:
        yield rollout, operator
    finally:
        operator.stop()
        cluster_ready("delete", "namespace", rollout.namespace, "--wait=false")


def test_every_transition_reaches_the_sink_once_and_the_cli_prints_the_whole_trail(
    kube: LocalCluster | ExternalCluster, audited: tuple[Rollout, Operator], receiver: Receiver, tmp_path: Path
) -> None:
    rollout, operator = audited
    rollout.apply()
    wait_for(lambda: rollout.status.get("currentStep", 0) >= 20, "a third of the steps", timeout=180)
    operator.stop()  # and a new process takes over halfway
    operator.start()
    status = promoted_and_delivered(rollout, timeout=300)
    assert status["epoch"] == TRANSITIONS and len(status["history"]) == 50, "the status has rolled over"
    received = receiver.audit_records("/audit")
    uid = rollout.get()["metadata"]["uid"]
    assert [r["key"] for r in received] == [
        f"{rollout.namespace}/{rollout.name}/{uid}/{seq}" for seq in range(1, TRANSITIONS + 1)
    ], "every transition once, in order, across the restart"
    actions = [r["action"] for r in received]
    assert actions[0] == "Started" and actions[-1] == "Promoted" and actions.count("StepAdvanced") == len(STEPS)
    tail = [(e["seq"], e["action"], e["reason"]) for e in status["history"]]
    assert [(r["seq"], r["action"], r["reason"]) for r in received[-50:]] == tail, "the sink says what the status says"

    # The status alone: the last 50, and the CLI says which are missing.
    partial = cli(kube.kubeconfig, "audit", rollout.name, "-n", rollout.namespace, "-o", "json")
    assert partial.returncode == 2, partial.stderr
    assert f"transitions 1-{TRANSITIONS - 50} of {TRANSITIONS}" in partial.stderr
    assert len(partial.stdout.splitlines()) == 50

    # With the sink's records (as it stored the bodies): the whole trail, the same records.
    stored = tmp_path / "sink.jsonl"
    stored.write_text("".join(json.dumps(body) + "\n" for body in receiver.accepted("/audit")))
    whole = cli(kube.kubeconfig, "audit", rollout.name, "-n", rollout.namespace, "--records", str(stored), "-o", "json")
    assert whole.returncode == 0, whole.stderr
    assert [json.loads(line) for line in whole.stdout.splitlines()] == received

    # With the operator's log instead (both processes' lines, on stdin): the same trail, as text.
    text = cli(
        kube.kubeconfig,
        "audit",
        rollout.name,
        "-n",
        rollout.namespace,
        "--records",
        "-",
        stdin=operator.logs.read_text(),
    )
    assert text.returncode == 0, text.stderr
    lines = [line for line in text.stdout.splitlines() if not line.startswith(" " * 6)]  # not a reason or evidence
    assert len(lines) == TRANSITIONS and lines[0].split()[0] == "1" and "Started" in lines[0]
    assert "Promoted" in lines[-1] and text.stderr == ""


def test_the_sink_being_down_holds_nothing_and_the_records_follow_when_it_answers(
    kube: LocalCluster | ExternalCluster,
    cluster_ready: Kubectl,
    scraping_prometheus: Prometheus,
    traffic: CheckoutTraffic,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    receiver.script["/audit"] = [(503, "{}")] * 3
    rollout = Rollout(cluster_ready, scraping_prometheus, traffic, steps=[{"setWeight": 5}, {"setWeight": 100}])
    args = ["-n", rollout.namespace, "--audit-url", f"{receiver.url}/audit"]
    operator = Operator(kube.kubeconfig, tmp_path / "operator.log", args=args).start()
    try:
        rollout.apply()
        failing: dict[str, Any] = wait_for(
            lambda: ((s := rollout.status).get("audit") or {}).get("failures", 0) >= 1 and s, "a refused delivery"
        )
        assert "answered 503" in failing["audit"]["error"] and "/audit" not in failing["audit"]["error"]
        status = promoted_and_delivered(rollout, timeout=180)
        assert status["audit"]["failures"] == 0 and status["audit"]["lost"] == 0
        keys = [r["key"] for r in receiver.audit_records("/audit")]
        assert len(keys) == len(set(keys)) == status["epoch"]
        assert len(receiver.seen("/audit")) > 3, "the refused batches were tried again"
    finally:
        operator.stop()
        cluster_ready("delete", "namespace", rollout.namespace, "--wait=false")
