"""Releases on the kwok testbed: a cluster whose Deployments really roll, and one release in it.

A ``Release`` is a namespace with the Deployment ``checkout-api`` (3 replicas, checkout:v1), the
stable and canary Services (the stable one selects the copy's ``app: checkout-api-stable``), an
HTTPRoute and a CheckoutRollout naming the Deployment. ``CanaryFollower`` makes the simulated
checkout follow the image the canary's Ready pods run. Used by test_release_testbed.py and
test_release_crash_points.py, each with a cluster of its own (``release_cluster``, module scope).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from checkout_gates_lab.demo.manifests import http_route
from checkout_gates_lab.testbed import Kubectl, LocalCluster, Prometheus, gateway_api_crds
from checkout_gates_lab.testbed.workloads import WORKLOAD_CONTROLLER_ARGS, WORKLOAD_CONTROLLERS, Workloads
from tests.conftest import _need

from .checkout_traffic import CheckoutTraffic, Service
from .operator_harness import CANARY, CRDS, STABLE, rollout_manifest, wait_for

NAME = "checkout-api"
REPLICAS = 3
SLOW = 150.0  # seconds: a whole release through gates at a 2 s interval, on a busy 2-core machine


@pytest.fixture(scope="module")
def release_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Kubectl, Path]]:
    cluster = _need(
        lambda: LocalCluster(
            controller_manager=True, controllers=WORKLOAD_CONTROLLERS, controller_manager_args=WORKLOAD_CONTROLLER_ARGS
        ).start()
    )
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
        while not self._stop.wait(0.2):
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
        # Not waited for: adoption copies the template whether or not its pods are up yet, and the
        # tests wait for what they assert (the copy Ready, the traffic moved).
        kubectl.apply(yaml.safe_dump_all(documents))
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


def adopt(release: Release) -> str:
    """Apply the rollout and wait until checkout:v1 is stable; its revision hash."""
    release.apply()
    status = release.wait(lambda s: s.get("phase") == "Promoted", "the first revision adopted as stable")
    stable = release.deployment(f"{NAME}-stable")
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"] == "checkout:v1"
    assert stable["spec"]["selector"] == {"matchLabels": {"app": f"{NAME}-stable"}}
    assert release.route_weights() == (100, 0)
    wait_for(lambda: release.deployment(NAME)["spec"]["replicas"] == 0, "the Deployment scaled to 0 once adopted")
    return release.stable_hash(status)
