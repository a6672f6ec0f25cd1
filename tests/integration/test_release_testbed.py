"""Releases on Deployments that really roll: the operator, kube-scheduler, kwok, Prometheus.

`kubectl set image` on the Deployment a CheckoutRollout names starts a rollout by itself; at
promotion the stable copy runs the new image, traffic is 100% stable and the canary has 0
replicas. A regressed image aborts with stable untouched (never fewer Ready stable pods); a canary
that never becomes Ready halts at its progress deadline; a revision that changes mid-rollout
restarts on the newest; an edit of the rollout after promotion changes no weight. The release
and its cluster are in release_harness.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from checkout_gates_lab.testbed import Kubectl, Prometheus

from .checkout_traffic import CheckoutTraffic
from .operator_harness import wait_for
from .release_harness import NAME, REPLICAS, CanaryFollower, Release, adopt, deployment, ready_images
from .reliability import OperatorProcess

PASSES = "checkout_gates_reconcile_seconds_count"


def after_more_passes(operator: OperatorProcess, passes: int = 4) -> None:
    """Wait until the operator has run ``passes`` more reconcile passes: what a test says did not
    happen (a second halt, a weight change) would have happened by then."""
    start = operator.metric(PASSES)
    wait_for(lambda: operator.metric(PASSES) >= start + passes, f"{passes} more operator passes")


pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def release_operator(
    release_cluster: tuple[Kubectl, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    logs = tmp_path_factory.mktemp("release-operator") / "operator.log"
    process = OperatorProcess(release_cluster[1], logs)
    process.start()
    yield process
    process.stop()
    print(logs.read_text()[-6000:])


@pytest.fixture
def release(
    request: pytest.FixtureRequest,
    release_cluster: tuple[Kubectl, Path],
    release_operator: OperatorProcess,
    scraping_prometheus: Prometheus,
    traffic: CheckoutTraffic,
) -> Release:
    name = "r-" + request.node.name.removeprefix("test_").replace("_", "-")[:40].rstrip("-")
    return Release(release_cluster[0], scraping_prometheus, traffic, name)


def test_set_image_rolls_out_by_itself_and_promotion_makes_it_stable(release: Release) -> None:
    v1 = adopt(release)
    with CanaryFollower(release.kubectl, release.namespace, release.service) as follower:
        release.set_image("checkout:v2")
        started = release.wait(
            lambda s: ((s.get("revisions") or {}).get("canary") or {}).get("images") == ["checkout:v2"],
            "the new revision noticed",
        )
        assert started["phase"] == "Progressing"
        status = release.promoted_on_new(v1)
        assert (status.get("revisions") or {}).get("stable", {}).get("images") == ["checkout:v2"]
        assert release.route_weights() == (100, 0)
        stable = release.deployment(f"{NAME}-stable")
        assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == "checkout:v2"
        wait_for(lambda: release.deployment(NAME)["spec"]["replicas"] == 0, "the canary scaled to 0")
        wait_for(
            lambda: sorted(ready_images(release.kubectl, release.namespace, f"{NAME}-stable")) == ["checkout:v2"] * 3,
            "three Ready stable pods on checkout:v2",
        )
    assert follower.fewest_stable is not None and follower.fewest_stable >= REPLICAS, "stable never lost a Ready pod"
    actions = [entry["action"] for entry in release.history()]
    assert "CanaryReady" in actions and "Promoting" in actions and actions[-1] == "Promoted"
    listing = release.kubectl("get", "cro", release.name, "-n", release.namespace).stdout
    assert "STABLE" in listing and release.stable_hash(status) in listing


def test_a_regressed_image_aborts_scales_the_canary_down_and_stable_stays_ready(release: Release) -> None:
    v1 = adopt(release)
    with CanaryFollower(release.kubectl, release.namespace, release.service) as follower:
        release.set_image("checkout:v2-duplicates")
        status = release.wait(lambda s: s.get("phase") == "Aborted", "the regressed revision aborted")
        assert "duplicate-charges" in status["haltReason"]
        wait_for(lambda: release.route_weights() == (100, 0), "all traffic back on stable")
        wait_for(lambda: release.deployment(NAME)["spec"]["replicas"] == 0, "the canary scaled down")
    assert release.stable_hash(release.status) == v1
    assert sorted(ready_images(release.kubectl, release.namespace, f"{NAME}-stable")) == ["checkout:v1"] * REPLICAS
    assert follower.fewest_stable is not None and follower.fewest_stable >= REPLICAS
    assert release.status["page"]["dedupKey"]


def test_a_canary_that_never_becomes_ready_halts_at_its_progress_deadline(
    release: Release, release_operator: OperatorProcess
) -> None:
    release.manifest["spec"]["workloadRef"]["progressDeadline"] = "20s"
    release.manifest["spec"]["onHalt"] = "hold"
    v1 = adopt(release)
    # Pods that no node can take: they stay Pending, the canary never becomes Ready.
    patch = {"spec": {"template": {"spec": {"nodeSelector": {"zone": "nowhere"}}}}}
    release.kubectl("patch", "deployment", NAME, "-n", release.namespace, "--type=merge", "-p", json.dumps(patch))
    status = release.wait(lambda s: s.get("phase") == "Halted", "a halt at the progress deadline", timeout=90)
    assert "did not become Ready" in status["haltReason"] and "after 20s" in status["haltReason"]
    assert "canary-not-ready" in status["page"]["dedupKey"]
    assert release.route_weights() == (100, 0), "it never got traffic"
    assert release.stable_hash(status) == v1
    after_more_passes(release_operator)
    assert [e["action"] for e in release.history()].count("Halted") == 1, "one halt, one page"


def test_a_new_revision_mid_rollout_restarts_on_the_newest_and_a_later_spec_edit_moves_no_weight(
    release: Release, release_operator: OperatorProcess
) -> None:
    adopt(release)
    release.set_image("checkout:v2")
    release.wait(lambda s: (s.get("weights") or {}).get("canary", 0) > 0, "the first revision exposed")
    release.set_image("checkout:v3")
    status = release.wait(
        lambda s: s.get("phase") == "Promoted" and s["revisions"]["stable"]["images"] == ["checkout:v3"],
        "checkout:v3 promoted",
    )
    assert [e["action"] for e in status["history"]].count("Promoted") == 2, "v1 adopted, v3 promoted; never v2"
    replaced = [e["reason"] for e in release.history() if e["action"] == "NewRevision"]
    assert replaced and "mid-rollout" in replaced[-1]
    # An edit of the rollout after promotion: traffic stays where it is.
    generation = release.kubectl.json("get", "cro", release.name, "-n", release.namespace)["metadata"]["generation"]
    patch = {"spec": {"analysis": {"interval": "3s"}}}
    release.kubectl("patch", "cro", release.name, "-n", release.namespace, "--type=merge", "-p", json.dumps(patch))
    release.wait(lambda s: s.get("observedGeneration") == generation + 1, "the edit observed")
    after_more_passes(release_operator)
    assert release.status["phase"] == "Promoted" and release.route_weights() == (100, 0)
    assert release.history()[-1]["action"] == "SpecChanged"


def test_a_deployment_of_the_copys_name_that_is_not_ours_is_never_overwritten(release: Release) -> None:
    foreign = deployment(release.namespace, "someone-elses:v9")
    foreign["metadata"]["name"] = f"{NAME}-stable"
    foreign["spec"]["selector"] = {"matchLabels": {"app": "someone-else"}}
    foreign["spec"]["template"]["metadata"]["labels"] = {"app": "someone-else"}
    release.kubectl.apply(yaml.safe_dump(foreign))
    release.manifest["spec"]["workloadRef"]["progressDeadline"] = "15s"
    release.manifest["spec"]["onHalt"] = "hold"
    release.apply()
    status = release.wait(lambda s: s.get("phase") == "Halted", "a halt: the stable copy cannot be made", timeout=90)
    assert "adopting Deployment checkout-api as the stable revision" in status["haltReason"]
    assert "is not the stable copy of CheckoutRollout" in status["haltReason"], status["haltReason"]
    assert "never overwritten" in status["revisions"]["error"]
    kept = release.deployment(f"{NAME}-stable")
    assert kept["spec"]["template"]["spec"]["containers"][0]["image"] == "someone-elses:v9"
    assert release.deployment(NAME)["spec"]["replicas"] == REPLICAS, "the Deployment keeps serving"


def test_a_missing_deployment_is_named_in_status_and_nothing_moves(release: Release) -> None:
    release.manifest["spec"]["workloadRef"] = {"name": "no-such-app", "progressDeadline": "15s"}
    release.manifest["spec"]["onHalt"] = "hold"
    release.apply()
    status = release.wait(lambda s: s.get("phase") == "Halted", "a halt: no Deployment to release", timeout=90)
    assert f"Deployment {release.namespace}/no-such-app not found (spec.workloadRef.name)" in status["haltReason"]
    route = release.kubectl.json("get", "httproute", release.name, "-n", release.namespace)
    assert route["metadata"]["generation"] == 1, "the route was never written"
    assert status.get("routerTarget") is None, "no weights were claimed"


def test_undo_with_the_cli_rolls_the_previous_image_back_out_through_the_gates(
    release: Release, release_cluster: tuple[Kubectl, Path]
) -> None:
    v1 = adopt(release)
    release.set_image("checkout:v2")
    v2_status = release.promoted_on_new(v1)
    v2 = release.stable_hash(v2_status)
    command = [sys.executable, "-m", "checkout_gates.cli.main", "undo", release.name, "-n", release.namespace]
    command += ["--reason", "refund errors in v2", "--kubeconfig", str(release_cluster[1]), "--timeout", "60"]
    undone = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert undone.returncode == 0, undone.stderr + undone.stdout
    assert "UndoRequested by" in undone.stdout
    wait_for(
        lambda: release.deployment(NAME)["spec"]["template"]["spec"]["containers"][0]["image"] == "checkout:v1",
        "the Deployment back on checkout:v1",
    )
    status = release.promoted_on_new(v2)
    assert release.stable_hash(status) == v1, "the very revision first adopted: same template, same hash"
    assert status["revisions"]["stable"]["images"] == ["checkout:v1"]
    entries = release.history()
    undo = next(e for e in entries if e["action"] == "UndoRequested")
    assert undo["reason"].startswith("refund errors in v2") and f"revision {v1}" in undo["reason"]
    assert [e["action"] for e in entries].count("CanaryReady") == 2, "v1 went through the gates like any revision"


def autoscaler(name: str, target: str, low: int, high: int) -> dict[str, object]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": low,
            "maxReplicas": high,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }
            ],
        },
    }


def test_an_hpa_is_mirrored_onto_the_stable_copy_and_the_replicas_it_sets_are_never_fought(
    release: Release, release_operator: OperatorProcess
) -> None:
    """kube-controller-manager's own HPA controller: it holds its target within [min, max] (no
    metrics API runs here) and leaves a target at 0 alone."""
    kubectl, namespace = release.kubectl, release.namespace
    release.manifest["spec"]["workloadRef"]["autoscalerRef"] = {"name": NAME}
    release.manifest["spec"]["steps"].insert(2, {"approval": {}})  # a rollout that waits while the HPA moves
    kubectl.apply(yaml.safe_dump(autoscaler(NAME, NAME, 4, 6)), "-n", namespace)
    wait_for(lambda: release.deployment(NAME)["spec"]["replicas"] == 4, "the HPA holding the Deployment at 4")
    v1 = adopt(release)  # and the Deployment at 0 since: the HPA does not wake it
    # Mirrored once the copy took all traffic (a new HPA has no history to slow a scale-down).
    found = lambda: kubectl("get", "hpa", f"{NAME}-stable", "-n", namespace, "-o", "json", check=False)  # noqa: E731
    wait_for(lambda: found().returncode == 0, "the stable copy's HPA")
    mirror = json.loads(found().stdout)
    assert mirror["spec"]["scaleTargetRef"]["name"] == f"{NAME}-stable"
    assert (mirror["spec"]["minReplicas"], mirror["spec"]["maxReplicas"]) == (4, 6)
    assert release.deployment(f"{NAME}-stable")["spec"]["replicas"] == 4

    # The Deployment's HPA edited: the mirror follows, and the HPA controller (not the operator)
    # takes stable to 5.
    patch = json.dumps({"spec": {"minReplicas": 5}})
    kubectl("patch", "hpa", NAME, "-n", namespace, "--type=merge", "-p", patch)
    wait_for(lambda: release.deployment(f"{NAME}-stable")["spec"]["replicas"] == 5, "the mirror's HPA scaling stable")
    assert release.deployment(NAME)["spec"]["replicas"] == 0

    with CanaryFollower(kubectl, namespace, release.service):
        release.set_image("checkout:v2")
        release.wait(lambda s: s.get("phase") == "AwaitingApproval", "the rollout at its approval step")
        assert release.deployment(NAME)["spec"]["replicas"] == 5, "the canary woken at stable's replicas"
        # Its HPA now allows at most 2: the HPA controller shrinks the canary, and the operator
        # neither scales it back nor calls it a lack of capacity.
        patch = json.dumps({"spec": {"minReplicas": 2, "maxReplicas": 2}})
        kubectl("patch", "hpa", NAME, "-n", namespace, "--type=merge", "-p", patch)
        wait_for(lambda: release.deployment(NAME)["spec"]["replicas"] == 2, "the HPA shrinking the canary")
        wait_for(lambda: release.deployment(f"{NAME}-stable")["spec"]["replicas"] == 2, "the mirror following")
        after_more_passes(release_operator)
        assert release.deployment(NAME)["spec"]["replicas"] == 2
        assert release.status["phase"] == "AwaitingApproval"
        kubectl("annotate", "cro", release.name, "-n", namespace, "gates.checkout.dev/approve=on-call")
        release.promoted_on_new(v1)
    stable = release.deployment(f"{NAME}-stable")
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == "checkout:v2"
    assert stable["spec"]["replicas"] == 2, "the promotion copied the template, not a replica count"
    wait_for(lambda: release.deployment(NAME)["spec"]["replicas"] == 0, "the canary at 0 after the promotion")
    assert not [e for e in release.history() if e["action"] == "Halted"]


def test_an_hpa_of_the_mirrors_name_that_is_not_ours_is_never_overwritten(release: Release) -> None:
    kubectl, namespace = release.kubectl, release.namespace
    release.manifest["spec"]["workloadRef"]["autoscalerRef"] = {"name": NAME}
    kubectl.apply(yaml.safe_dump(autoscaler(NAME, NAME, 3, 6)), "-n", namespace)
    kubectl.apply(yaml.safe_dump(autoscaler(f"{NAME}-stable", "someone-elses", 1, 2)), "-n", namespace)
    adopt(release)
    status = release.wait(
        lambda s: "is never overwritten" in (s.get("revisions") or {}).get("error", ""), "the refusal"
    )
    assert f"HorizontalPodAutoscaler {namespace}/{NAME}-stable" in status["revisions"]["error"]
    theirs = kubectl.json("get", "hpa", f"{NAME}-stable", "-n", namespace)
    assert theirs["spec"]["scaleTargetRef"]["name"] == "someone-elses"
