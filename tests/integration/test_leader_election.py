"""Two replicas with leader election (controller/leadership.py): one acts, the other stands by
and takes over within the lease duration when the leader is killed, without a step done twice."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from checkout_gates_lab.testbed import ExternalCluster, Kubectl, LocalCluster, Prometheus

from .checkout_traffic import CheckoutTraffic
from .operator_harness import APPROVE, wait_for
from .reliability import LiveRollout, OperatorProcess, assert_clean_history

pytestmark = pytest.mark.integration

LEASE_SECONDS = 8.0  # the default is 15 s; shorter here to keep the test short
RETRY_SECONDS = min(2.0, LEASE_SECONDS / 7.5)  # what `run` derives from the lease duration


def acted(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Log lines of a replica's reconcile passes that changed something."""
    return [line for line in lines if line.get("event") in ("weights applied", "phase changed", "page delivered")]


def index_of(lines: list[dict[str, Any]], event: str) -> int:
    return next((i for i, line in enumerate(lines) if line.get("event") == event), len(lines))


def test_only_the_leader_acts_and_a_standby_takes_over_when_it_dies(
    kube: LocalCluster | ExternalCluster,
    cluster_ready: Kubectl,
    scraping_prometheus: Prometheus,
    traffic: CheckoutTraffic,
    tmp_path: Path,
) -> None:
    rollout = LiveRollout(cluster_ready, scraping_prometheus, traffic, kube.kubeconfig)
    lease = f"{rollout.name}-leader"

    def replica(identity: str) -> OperatorProcess:
        args = ["-n", rollout.namespace, "--leader-election", "--leader-election-namespace", rollout.namespace]
        args += ["--leader-election-id", lease, "--leader-election-identity", identity]
        args += ["--lease-duration", str(LEASE_SECONDS)]
        return OperatorProcess(kube.kubeconfig, tmp_path / f"{identity}.log", args=args)

    a, b = replica("replica-a"), replica("replica-b")
    try:
        a.start()
        wait_for(lambda: rollout.lease_holder(lease) == "replica-a", "replica-a to lead", timeout=60)
        b.start()
        wait_for(lambda: any(line.get("event") == "leader election: candidate" for line in b.log_lines()), "b up")
        rollout.apply()

        # Mid-rollout: the 5% step applied and confirmed, by the leader only.
        wait_for(lambda: (rollout.status.get("routerTarget") or {}).get("canary") == 5, "the 5% step", timeout=120)
        assert rollout.lease_holder(lease) == "replica-a"
        assert acted(a.log_lines()), "the leader acts"
        assert not acted(b.log_lines()), "the standby does not"
        before = rollout.status

        a.kill()
        killed = time.monotonic()
        wait_for(lambda: rollout.lease_holder(lease) == "replica-b", "replica-b to take over", timeout=60)
        takeover = time.monotonic() - killed
        # Reported, not asserted (a loaded machine is no clock); the wait above bounds it.
        print(f"\ntakeover after {takeover:.1f}s (lease {LEASE_SECONDS:g}s, retry {RETRY_SECONDS:g}s)")

        wait_for(lambda: rollout.status.get("phase") == "AwaitingApproval", "the approval step", timeout=120)
        rollout.annotate(APPROVE, "alice")
        # Promoted is written only once the router confirmed 100% (rollout/machine.py), so the
        # status read here already holds the confirmation: no read can race the confirm write.
        status = rollout.wait_phase("Promoted", timeout=120)
        assert_clean_history(rollout, status)
        assert rollout.route_weights() == (0, 100) and status["routerTarget"] == status["weights"]
        history = status["history"]
        assert history[: len(before["history"])] == before["history"], "nothing the old leader wrote was lost"
        assert {e["actor"] for e in history if e["action"] != "Approved"} == {"checkout-gates"}
        assert [e["actor"] for e in history if e["action"] == "Approved"] == ["alice"]

        lines_b = b.log_lines()
        assert acted(lines_b), "the new leader carried the rollout on"
        assert index_of(lines_b, "leader election: leading") < index_of(lines_b, "weights applied")
        passes_before_leading = [
            line for line in lines_b[: index_of(lines_b, "leader election: leading")] if "rollout" in line
        ]
        assert not passes_before_leading, "a standby runs no reconcile pass"

        b.stop()  # a clean shutdown gives the lease up at once
        assert rollout.lease_holder(lease) == ""
    finally:
        a.kill()
        b.kill()
        rollout.delete()
