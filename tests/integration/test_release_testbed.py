"""Releases on Deployments that really roll: the operator, kube-scheduler, kwok, Prometheus.

`kubectl set image` on the Deployment a CheckoutRollout names starts a rollout by itself; at
promotion the stable copy runs the new image, traffic is 100% stable and the canary has 0
replicas. A regressed image aborts with stable untouched (never fewer Ready stable pods); a canary
that never becomes Ready halts at its progress deadline; a revision that changes mid-rollout
restarts on the newest; an edit of the rollout after promotion changes no weight.

The simulated checkout follows the image the canary's Ready pods run: an image tagged
``-duplicates`` charges twice (``CanaryFollower``), so "deploy a bad image" is what these tests do.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from checkout_gates_lab.demo.manifests import http_route
from checkout_gates_lab.testbed import Kubectl, LocalCluster, Prometheus, gateway_api_crds
from checkout_gates_lab.testbed.workloads import WORKLOAD_CONTROLLERS, Workloads
from tests.conftest import _need

from .checkout_traffic import CheckoutTraffic, Service
from .operator_harness import CANARY, CRDS, STABLE, Operator, rollout_manifest, wait_for

pytestmark = pytest.mark.integration

NAME = "checkout-api"
REPLICAS = 3
SLOW = 150.0  # seconds: a whole release through gates at a 2 s interval, on a busy 2-core machine


@pytest.fixture(scope="module")
def release_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kubectl, Path]]:
    cluster = _need(lambda: LocalCluster(controller_manager=True, controllers=WORKLOAD_CONTROLLERS).start())
    try:
        workloads = _need(lambda: Workloads(cluster.kubeconfig, cluster.workdir, nodes=2).start())
        try:
            kubectl = Kubectl(cluster.kubeconfig)
            kubectl("apply", "-f", str(CRDS))
            kubectl.wait_established("checkoutrollouts.gates.checkout.dev")
            kubectl("apply", "--server-side", "--force-conflicts", "-f", str(gateway_api_crds()))
            kubectl.wait_established("httproutes.gateway.networking.k8s.io")
            yield kubectl, cluster.kubeconfig
        finally:
            workloads.stop()
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def release_operator(
    release_cluster: tuple[Kubectl, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    logs = tmp_path_factory.mktemp("release-operator") / "operator.log"
    process = Operator(release_cluster[1], logs).start()
    yield process
    process.stop()
    print(logs.read_text()[-6000:])


class CanaryFollower:
    """Makes the simulated canary behave like the image its Ready pods run (``-duplicates``: the
    release charges twice), and records the fewest Ready stable pods seen once stable ran."""

    def __init__(self, kubectl: Kubectl, namespace: str, service: Service) -> None:
        self.kubectl, self.namespace, self.service = kubectl, namespace, service
        self.fewest_stable: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CanaryFollower:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                canary = ready_images(self.kubectl, self.namespace, NAME)
                stable = ready_images(self.kubectl, self.namespace, f"{NAME}-stable")
            except Exception:
                continue
            self.service.canary.duplicates_per_second = 5.0 if any("duplicates" in i for i in canary) else 0.0
            if stable or self.fewest_stable is not None:
                self.fewest_stable = min(len(stable), self.fewest_stable if self.fewest_stable is not None else 99)


def ready_images(kubectl: Kubectl, namespace: str, app: str) -> list[str]:
    pods = kubectl.json("get", "pods", "-n", namespace, "-l", f"app={app}")["items"]
    return [
        pod["spec"]["containers"][0]["image"]
        for pod in pods
        if pod["metadata"].get("deletionTimestamp") is None
        and any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))
    ]


class Release:
    """A namespace with the Deployment, two Services, an HTTPRoute and the CheckoutRollout."""

    def __init__(self, kubectl: Kubectl, prometheus: Prometheus, traffic: CheckoutTraffic, name: str, **spec: Any):
        self.kubectl = kubectl
        self.namespace = name
        self.name = name
        self.service = traffic.service(name)
        kubectl("create", "namespace", name)
        documents = [
            deployment(name, "checkout:v1"),
            service(STABLE, name, f"{NAME}-stable"),
            service(CANARY, name, NAME),
            http_route(name, name, STABLE, CANARY),
        ]
        kubectl.apply(yaml.safe_dump_all(documents))
        kubectl("rollout", "status", f"deployment/{NAME}", "-n", name, "--timeout=120s")
        steps = [
            {"setWeight": 20},
            {"gate": {"pass": ["auth-approval", "duplicate-charges"], "window": "4s"}},
            {"setWeight": 50},
            {"gate": {"pass": ["auth-approval", "duplicate-charges"], "window": "4s"}},
        ]
        self.manifest = rollout_manifest(
            name, name, prometheus.url, steps=steps, workloadRef={"name": NAME, **spec}, onHalt="abort"
        )

    def apply(self) -> None:
        self.kubectl.apply(yaml.safe_dump(self.manifest))

    @property
    def status(self) -> dict[str, Any]:
        obj = self.kubectl.json("get", "checkoutrollout", self.name, "-n", self.namespace)
        return dict(obj.get("status") or {})

    def wait(self, check: Any, what: str, timeout: float = SLOW) -> dict[str, Any]:
        result: dict[str, Any] = wait_for(lambda: (s := self.status) and check(s) and s, what, timeout)
        return result

    def stable_hash(self, status: dict[str, Any]) -> str:
        return str(((status.get("revisions") or {}).get("stable") or {}).get("hash", ""))

    def promoted_on_new(self, before: str) -> dict[str, Any]:
        return self.wait(
            lambda s: s.get("phase") == "Promoted" and self.stable_hash(s) not in ("", before),
            f"{self.name} promoted on a revision other than {before}",
        )

    def deployment(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.kubectl.json("get", "deployment", name, "-n", self.namespace)
        return found

    def set_image(self, image: str) -> None:
        self.kubectl("set", "image", f"deployment/{NAME}", f"app={image}", "-n", self.namespace)

    def route_weights(self) -> tuple[int, int]:
        route = self.kubectl.json("get", "httproute", self.name, "-n", self.namespace)
        refs = {ref["name"]: ref.get("weight", 1) for ref in route["spec"]["rules"][0]["backendRefs"]}
        return refs[STABLE], refs[CANARY]

    def history(self) -> list[dict[str, Any]]:
        return list(self.status.get("history") or [])


def deployment(namespace: str, image: str) -> dict[str, Any]:
    labels = {"app": NAME}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": labels},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image, "ports": [{"containerPort": 8080}]}]},
            },
        },
    }


def service(name: str, namespace: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]},
    }


@pytest.fixture
def release(
    request: pytest.FixtureRequest,
    release_cluster: tuple[Kubectl, Path],
    release_operator: Operator,
    scraping_prometheus: Prometheus,
    traffic: CheckoutTraffic,
) -> Release:
    name = "r-" + request.node.name.removeprefix("test_").replace("_", "-")[:40].rstrip("-")
    return Release(release_cluster[0], scraping_prometheus, traffic, name)


def adopt(release: Release) -> str:
    release.apply()
    status = release.wait(lambda s: s.get("phase") == "Promoted", "the first revision adopted as stable")
    stable = release.deployment(f"{NAME}-stable")
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == "checkout:v1"
    assert stable["spec"]["selector"] == {"matchLabels": {"app": f"{NAME}-stable"}}
    assert release.route_weights() == (100, 0)
    wait_for(lambda: release.deployment(NAME)["spec"]["replicas"] == 0, "the Deployment scaled to 0 once adopted")
    return release.stable_hash(status)


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


def test_a_canary_that_never_becomes_ready_halts_at_its_progress_deadline(release: Release) -> None:
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
    assert [e["action"] for e in release.history()].count("Halted") == 1


def test_a_new_revision_mid_rollout_restarts_on_the_newest_and_a_later_spec_edit_moves_no_weight(
    release: Release,
) -> None:
    v1 = adopt(release)
    release.set_image("checkout:v2")
    release.wait(lambda s: (s.get("weights") or {}).get("canary", 0) > 0, "the first revision exposed")
    release.set_image("checkout:v3")
    status = release.promoted_on_new(v1)
    assert status["revisions"]["stable"]["images"] == ["checkout:v3"]
    replaced = [e["reason"] for e in release.history() if e["action"] == "NewRevision"]
    assert replaced and "mid-rollout" in replaced[-1]
    # An edit of the rollout after promotion: traffic stays where it is.
    generation = release.kubectl.json("get", "cro", release.name, "-n", release.namespace)["metadata"]["generation"]
    patch = {"spec": {"analysis": {"interval": "3s"}}}
    release.kubectl("patch", "cro", release.name, "-n", release.namespace, "--type=merge", "-p", json.dumps(patch))
    release.wait(lambda s: s.get("observedGeneration") == generation + 1, "the edit observed")
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
    assert release.route_weights() == (100, 0) and status.get("routerTarget") is None, "no weights were claimed"
