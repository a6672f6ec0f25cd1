"""Running the operator against the testbed: the process, a scraping Prometheus, a rollout under test.

Fixtures here are registered for every integration test module by tests/integration/conftest.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from checkout_gates_lab.demo.manifests import http_route
from checkout_gates_lab.testbed import (
    ExternalCluster,
    Kubectl,
    LocalCluster,
    MissingComponentError,
    Prometheus,
    free_port,
    gateway_api_crds,
    operator_argv,
)

from .checkout_traffic import CheckoutTraffic

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
STABLE, CANARY = "checkout-stable", "checkout-canary"
APPROVE = "gates.checkout.dev/approve"
ABORT = "gates.checkout.dev/abort"
TIMEOUT = 90.0


class Operator:
    """`checkout-gates run` as a child process; restartable, killable; ``args`` are extra options."""

    def __init__(
        self, kubeconfig: Path, logs: Path, env: dict[str, str] | None = None, *, args: Sequence[str] = ()
    ) -> None:
        self.kubeconfig = kubeconfig
        self.logs = logs
        self.env = env or {}
        self.args = list(args)
        self.metrics_port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, **extra_env: str) -> Operator:
        self.metrics_port = free_port()
        command = operator_argv(
            self.kubeconfig,
            health_address=f"127.0.0.1:{free_port()}",
            metrics_address=f"127.0.0.1:{self.metrics_port}",
            log_level="debug",
            extra=self.args,
        )
        log = self.logs.open("ab")
        self.process = subprocess.Popen(
            command, stdout=log, stderr=log, env={**os.environ, **self.env, **extra_env}, start_new_session=True
        )
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None


@pytest.fixture(scope="module")
def traffic() -> Iterator[CheckoutTraffic]:
    exporter = CheckoutTraffic().start()
    yield exporter
    exporter.stop()


@pytest.fixture(scope="module")
def scraping_prometheus(traffic: CheckoutTraffic) -> Iterator[Prometheus]:
    try:
        server = Prometheus(scrape_targets=[traffic.target], scrape_interval="1s").start()
    except MissingComponentError as error:
        if os.environ.get("CI"):
            pytest.fail(str(error))
        pytest.skip(str(error))
    yield server
    server.close()


@pytest.fixture(scope="module")
def cluster_ready(kube: LocalCluster | ExternalCluster, kubectl: Kubectl) -> Kubectl:
    kubectl("apply", "-f", str(CRDS))
    kubectl.wait_established("checkoutrollouts.gates.checkout.dev")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(gateway_api_crds()))
    kubectl.wait_established("httproutes.gateway.networking.k8s.io")
    return kubectl


@pytest.fixture(scope="module")
def operator(
    kube: LocalCluster | ExternalCluster, cluster_ready: Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Operator]:
    logs = tmp_path_factory.mktemp("operator") / "operator.log"
    process = Operator(kube.kubeconfig, logs).start()
    yield process
    process.stop()
    print(logs.read_text()[-6000:])


def wait_for(check: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def rollout_manifest(name: str, namespace: str, prometheus: str, **overrides: Any) -> dict[str, Any]:
    selector = f'rollout="{name}", variant="{{{{variant}}}}"'
    spec: dict[str, Any] = {
        "stable": {"service": STABLE},
        "canary": {"service": CANARY},
        "routing": {"gatewayAPI": {"httpRoute": name}},
        "prometheus": {"address": prometheus, "timeout": "2s"},
        "owner": {"name": "payments-oncall", "page": [{"webhook": {"url": "http://127.0.0.1:9/unreachable"}}]},
        "gates": [
            {
                "name": "auth-approval",
                "ratio": {
                    "good": f'sum by (provider) (increase(payment_authorizations_total{{{selector}, outcome="approved"}}[{{{{window}}}}]))',
                    "total": f"sum by (provider) (increase(payment_authorizations_total{{{selector}}}[{{{{window}}}}]))",
                },
                "segmentBy": ["provider"],
                "compare": {"maxDrop": "2pp"},
                "minSamples": 20,
                "window": "5s",
            },
            {
                "name": "duplicate-charges",
                "count": f"sum(increase(payment_duplicate_charges_total{{{selector}}}[{{{{window}}}}]))",
                "max": 0.5,
                "critical": True,
                "onMissingData": "pass",
                "window": "5s",
            },
        ],
        "steps": [
            {"setWeight": 1},
            {"gate": {"pass": ["auth-approval", "duplicate-charges"], "window": "4s"}},
            {"setWeight": 5},
            {"gate": {"pass": ["auth-approval", "duplicate-charges"], "window": "4s"}},
            {"approval": {}},
            {"setWeight": 25},
            {"gate": {"pass": ["auth-approval", "duplicate-charges"], "window": "4s"}},
            {"setWeight": 100},
        ],
        "analysis": {"interval": "2s", "failureLimit": 2, "inconclusiveLimit": 4},
        "onHalt": "hold",
    }
    spec.update(overrides)
    return {
        "apiVersion": "gates.checkout.dev/v1alpha1",
        "kind": "CheckoutRollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


class Rollout:
    """One rollout under test, in a namespace of its own."""

    def __init__(self, kubectl: Kubectl, prometheus: Prometheus, traffic: CheckoutTraffic, **overrides: Any) -> None:
        self.kubectl = kubectl
        self.name = f"co-{uuid.uuid4().hex[:6]}"
        self.namespace = self.name
        self.service = traffic.service(self.name)
        kubectl("create", "namespace", self.namespace)
        kubectl("apply", "-f", "-", input=yaml.safe_dump(http_route(self.name, self.namespace, STABLE, CANARY)))
        self.manifest = rollout_manifest(self.name, self.namespace, prometheus.url, **overrides)

    def apply(self) -> None:
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump(self.manifest))

    def get(self) -> dict[str, Any]:
        obj: dict[str, Any] = self.kubectl.json("get", "checkoutrollout", self.name, "-n", self.namespace)
        return obj

    @property
    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.get().get("status", {})
        return status

    def route_weights(self) -> tuple[int, int]:
        route = self.kubectl.json("get", "httproute", self.name, "-n", self.namespace)
        refs = {ref["name"]: ref.get("weight", 1) for ref in route["spec"]["rules"][0]["backendRefs"]}
        return refs[STABLE], refs[CANARY]

    def annotate(self, key: str, value: str) -> None:
        self.kubectl("annotate", "--overwrite", f"checkoutrollout/{self.name}", "-n", self.namespace, f"{key}={value}")

    def wait_phase(self, phase: str, timeout: float = TIMEOUT) -> dict[str, Any]:
        status: dict[str, Any] = wait_for(
            lambda: (s := self.status).get("phase") == phase and s, f"{self.name} phase {phase}", timeout
        )
        return status

    def events(self) -> list[str]:
        listing = self.kubectl.json("get", "events.events.k8s.io", "-n", self.namespace)
        return [item.get("reason", "") for item in listing.get("items", [])]

    def history(self) -> list[dict[str, Any]]:
        return list(self.status.get("history", []))


@pytest.fixture
def new_rollout(
    cluster_ready: Kubectl, scraping_prometheus: Prometheus, traffic: CheckoutTraffic, operator: Operator
) -> Callable[..., Rollout]:
    def make(**overrides: Any) -> Rollout:
        return Rollout(cluster_ready, scraping_prometheus, traffic, **overrides)

    return make
