"""Helpers of the reliability tests (crash points, outages, races, leader election).

- :class:`OperatorProcess`: the operator harness' process with extra command-line arguments
  (``-n`` namespaces, leader election flags) and a known metrics port.
- :class:`LiveRollout`: the harness' Rollout, read and annotated through the Python client
  instead of kubectl (many rollouts polled at once would otherwise cost a kubectl process each).
- :class:`PrometheusProxy`: a tiny HTTP proxy in front of Prometheus that can delay, fail or
  turn every answer into NaN.
- checks shared by the tests: history without duplicates, every step advanced exactly once.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from kubernetes import config
from kubernetes.client import ApiClient, CoordinationV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from checkout_gates_lab.testbed import ExternalCluster, Kubectl, LocalCluster, Prometheus

from .checkout_traffic import CheckoutTraffic
from .operator_harness import CANARY, STABLE, Operator, Rollout

GROUP, VERSION, PLURAL = "gates.checkout.dev", "v1alpha1", "checkoutrollouts"


def api_client(kubeconfig: Path) -> ApiClient:
    client: ApiClient = config.new_client_from_config(config_file=str(kubeconfig))
    return client


class OperatorProcess(Operator):
    """The operator harness' process, with liveness and its metrics' URL."""

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def metric(self, name: str) -> float:
        """The sum of a metric's samples (0 when absent or the process does not answer)."""
        try:
            text = httpx.get(self.metrics_url, timeout=5.0).text
        except httpx.HTTPError:
            return 0.0
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def log_lines(self) -> list[dict[str, Any]]:
        """The process' structured log lines (kopf's own plain lines are skipped)."""
        lines = []
        for line in self.logs.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    lines.append(json.loads(line))
        return lines


class LiveRollout(Rollout):
    """A rollout in its own namespace, read and written through the Python client."""

    def __init__(
        self, kubectl: Kubectl, prometheus: Prometheus, traffic: CheckoutTraffic, kubeconfig: Path, **overrides: Any
    ) -> None:
        super().__init__(kubectl, prometheus, traffic, **overrides)
        self.client = api_client(kubeconfig)
        self.custom = CustomObjectsApi(self.client)

    def delete(self) -> None:
        """Remove the rollout (no finalizer: it goes at once), so later tests' operators leave it be."""
        with contextlib.suppress(ApiException):
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)

    def get(self) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name
        )
        return obj

    @property
    def status(self) -> dict[str, Any]:
        try:
            status: dict[str, Any] = self.get().get("status", {})
        except ApiException:  # kube-apiserver restarting: nothing known yet
            return {}
        return status

    def route(self) -> dict[str, Any]:
        route: dict[str, Any] = self.custom.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", self.namespace, "httproutes", self.name
        )
        return route

    def route_weights(self) -> tuple[int, int]:
        refs = {ref["name"]: ref.get("weight", 1) for ref in self.route()["spec"]["rules"][0]["backendRefs"]}
        return refs[STABLE], refs[CANARY]

    def set_route_weights(self, stable: int, canary: int) -> None:
        """Edit the HTTPRoute by hand, as a person with kubectl edit would."""
        route = self.route()
        for ref in route["spec"]["rules"][0]["backendRefs"]:
            ref["weight"] = stable if ref["name"] == STABLE else canary
        self.custom.replace_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", self.namespace, "httproutes", self.name, route
        )

    def annotate(self, key: str, value: str) -> None:
        self.annotate_many({key: value})

    def annotate_many(self, annotations: dict[str, str | None]) -> None:
        """Set (or with None remove) several annotations in one update of the object."""
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name, {"metadata": {"annotations": annotations}}
        )

    def annotations(self) -> dict[str, str]:
        """The on-call annotations (gates.checkout.dev/...) on the object."""
        found: dict[str, str] = self.get()["metadata"].get("annotations") or {}
        return {key: value for key, value in found.items() if key.startswith(GROUP + "/")}

    def patch_status(self, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, PLURAL, self.name, {"status": status}
        )

    def condition(self, kind: str, status: dict[str, Any] | None = None) -> dict[str, Any]:
        conditions = (status if status is not None else self.status).get("conditions", [])
        found: dict[str, Any] = next((c for c in conditions if c["type"] == kind), {})
        return found

    def lease_holder(self, name: str) -> str:
        try:
            lease = CoordinationV1Api(self.client).read_namespaced_lease(name, self.namespace)
        except ApiException:
            return ""
        return str(lease.spec.holder_identity or "")


# --- checks ------------------------------------------------------------------------------------


def duplicate_history(history: Sequence[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """History entries that occur more than once (same time, action, actor and step)."""
    keys = Counter((e["time"], e["action"], e["actor"], e["step"]) for e in history)
    return [key for key, count in keys.items() if count > 1]


def advanced_steps(history: Sequence[dict[str, Any]], generation: int | None = None) -> list[int]:
    return [
        e["step"]
        for e in history
        if e["action"] == "StepAdvanced" and (generation is None or e["generation"] == generation)
    ]


def expected_steps(steps: Sequence[dict[str, Any]], before: int) -> list[int]:
    """The steps that advance by a StepAdvanced entry (approvals are Approved instead), below ``before``."""
    return [index for index, step in enumerate(steps[:before]) if "approval" not in step]


def assert_clean_history(rollout: Rollout, status: dict[str, Any], *, generation: int | None = None) -> None:
    """No duplicate entry; every step below the current one advanced exactly once, none skipped."""
    history = status.get("history", [])
    assert not duplicate_history(history), f"duplicate history entries: {duplicate_history(history)}"
    steps = rollout.manifest["spec"]["steps"]
    before = len(steps) if status.get("phase") == "Promoted" else status["currentStep"]
    assert advanced_steps(history, generation) == expected_steps(steps, before), [
        (e["action"], e["step"]) for e in history
    ]


# --- Prometheus with faults --------------------------------------------------------------------

ProxyMode = Literal["pass", "slow", "error", "nan"]


class PrometheusProxy:
    """HTTP proxy to one Prometheus: ``pass`` forwards, ``slow`` waits ``delay`` seconds first,
    ``error`` answers 500 as an overloaded Prometheus does, ``nan`` turns every value into NaN.
    ``on_request`` (if set) runs before each answer: a test's hook into the middle of a pass."""

    def __init__(self, upstream: str, delay: float = 5.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.delay = delay
        self.mode: ProxyMode = "pass"
        self.requests = 0
        self.on_request: Callable[[], None] | None = None
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> PrometheusProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._forward(b"")

            def do_POST(self) -> None:
                self._forward(self.rfile.read(int(self.headers.get("Content-Length") or 0)))

            def _forward(self, body: bytes) -> None:
                proxy.requests += 1
                mode = proxy.mode
                if proxy.on_request is not None:
                    proxy.on_request()
                with contextlib.suppress(OSError):  # the client may have given up (slow mode)
                    if mode == "slow":
                        time.sleep(proxy.delay)
                    if mode == "error":
                        self._answer(500, b'{"status":"error","errorType":"internal","error":"injected: overloaded"}')
                        return
                    headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")}
                    answer = httpx.request(
                        self.command, proxy.upstream + self.path, content=body, headers=headers, timeout=30.0
                    )
                    content = answer.content
                    if mode == "nan" and answer.status_code == 200:
                        content = _nan(content)
                    self._answer(answer.status_code, content)

            def _answer(self, status: int, content: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @contextlib.contextmanager
    def faulty(self, mode: ProxyMode) -> Iterator[None]:
        self.mode = mode
        try:
            yield
        finally:
            self.mode = "pass"


def _nan(content: bytes) -> bytes:
    answer = json.loads(content)
    data = answer.get("data", {})
    if data.get("resultType") == "vector":
        for item in data.get("result", []):
            item["value"][1] = "NaN"
    elif data.get("resultType") == "scalar":
        data["result"][1] = "NaN"
    return json.dumps(answer).encode()


# --- specs -------------------------------------------------------------------------------------

GATES = ["auth-approval", "duplicate-charges"]


def gate(window: str = "4s") -> dict[str, Any]:
    return {"gate": {"pass": GATES, "window": window}}


ONE_GATE = [{"setWeight": 1}, gate(), {"setWeight": 100}]
TWO_GATES = [{"setWeight": 1}, gate(), {"setWeight": 5}, gate(), {"setWeight": 100}]
TWO_APPROVALS = [{"setWeight": 1}, {"approval": {}}, {"setWeight": 5}, {"approval": {}}, {"setWeight": 100}]


def analysis(inconclusive_limit: int = 4, failure_limit: int = 2) -> dict[str, Any]:
    return {"interval": "2s", "failureLimit": failure_limit, "inconclusiveLimit": inconclusive_limit}


# Registered for every integration module by conftest.py.
@pytest.fixture
def live(
    kube: LocalCluster | ExternalCluster,
    cluster_ready: Kubectl,
    scraping_prometheus: Prometheus,
    traffic: CheckoutTraffic,
    operator: Operator,
) -> Iterator[Callable[..., LiveRollout]]:
    made: list[LiveRollout] = []

    def make(**overrides: Any) -> LiveRollout:
        made.append(LiveRollout(cluster_ready, scraping_prometheus, traffic, kube.kubeconfig, **overrides))
        return made[-1]

    yield make
    for rollout in made:
        rollout.delete()
