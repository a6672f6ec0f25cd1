"""The operator as a user meets it: a process watching a real kube-apiserver, reading a real
Prometheus, patching a Gateway API HTTPRoute, driven by kubectl annotations."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from checkout_gates.testbed import (
    ExternalCluster,
    Kubectl,
    LocalCluster,
    MissingComponentError,
    Prometheus,
    free_port,
    gateway_api_crds,
)

from .checkout_traffic import CheckoutTraffic

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
STABLE, CANARY = "checkout-stable", "checkout-canary"
APPROVE = "gates.checkout.dev/approve"
ABORT = "gates.checkout.dev/abort"
TIMEOUT = 90.0


class Operator:
    """`checkout-gates run` as a child process; restartable, killable."""

    def __init__(self, kubeconfig: Path, logs: Path, env: dict[str, str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.logs = logs
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, **extra_env: str) -> Operator:
        command = [
            sys.executable,
            "-m",
            "checkout_gates.cli.main",
            "run",
            "--kubeconfig",
            str(self.kubeconfig),
            "--health-address",
            f"127.0.0.1:{free_port()}",
            "--metrics-address",
            f"127.0.0.1:{free_port()}",
            "--log-level",
            "debug",
        ]
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


def http_route(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": "edge"}],
            "rules": [
                {
                    "backendRefs": [
                        {"name": STABLE, "port": 8080, "weight": 100},
                        {"name": CANARY, "port": 8080, "weight": 0},
                    ]
                }
            ],
        },
    }


class Rollout:
    """One rollout under test, in a namespace of its own."""

    def __init__(self, kubectl: Kubectl, prometheus: Prometheus, traffic: CheckoutTraffic, **overrides: Any) -> None:
        self.kubectl = kubectl
        self.name = f"co-{uuid.uuid4().hex[:6]}"
        self.namespace = self.name
        self.service = traffic.service(self.name)
        kubectl("create", "namespace", self.namespace)
        kubectl("apply", "-f", "-", input=yaml.safe_dump(http_route(self.name, self.namespace)))
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
