"""Finding 1 of the hardening issue on the real testbed (docs/security.md, threat 1): rollouts whose
Prometheus accepts and never answers, four times as many as the operator runs passes at once and
some of them in the healthy rollout's own namespace, neither starve a healthy rollout's evaluations
nor hold back its abort, and do not keep the operator from ending on SIGTERM.

The operator runs as a local process with the chart's ServiceAccount token and an egress allowlist
(the real Prometheus and the hanging one), with ``--concurrency 4``: a namespace's share is then
one slot. The hanging server holds every request until the test is over and counts what it holds,
what it answered and what the client gave up on; a query timeout (60 s, the CRD's maximum) would
show as a request given up. So the assertions below are orders of events (and one ratio of two
measurements), never a duration: the healthy rollout evaluates, at the interval it had before the
hang, and is aborted *while* every hanging rollout still has a request held and none was answered
or dropped; then SIGTERM ends the operator with the requests still unanswered.
"""

from __future__ import annotations

import http.server
import itertools
import os
import select
import signal
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config, watch

from checkout_gates.api.spec import GROUP, PLURAL, VERSION
from checkout_gates.metrics.prometheus import QUERY_PATH
from checkout_gates_lab.demo.manifests import http_route
from checkout_gates_lab.testbed import ExternalCluster, Kubectl, LocalCluster, Prometheus

from . import test_chart
from .checkout_traffic import CheckoutTraffic
from .operator_harness import ABORT, CANARY, STABLE, Operator, Rollout, rollout_manifest, wait_for
from .test_chart import Release as ChartRelease

pytestmark = pytest.mark.integration

# The chart's fixtures, used as they are: the chart installed cluster-wide, a token of its ServiceAccount.
helm, release, operator_kubeconfig = test_chart.helm, test_chart.release, test_chart.operator_kubeconfig

CONCURRENCY = 4  # the operator's reconcile slots; a namespace's share is a quarter of them: 1
HANGING = 4 * CONCURRENCY
OTHER_NAMESPACES = 3  # hanging rollouts are spread over these and the healthy rollout's namespace
EVALUATIONS = 3  # the healthy rollout's evaluations asked for before and during the hang
ROLLOUTS = "checkoutrollouts.gates.checkout.dev"


@dataclass(frozen=True)
class Held:
    """What the hanging server has seen: requests held now per address prefix, answered, given up."""

    held: dict[str, int]
    received: int
    answered: int
    dropped: int  # closed by the operator before any answer (its timeout, or a cancelled pass)


class HangingPrometheus:
    """A loopback HTTP server that accepts every connection, reads the request and never answers
    until :meth:`release`. Each rollout gets its own address, ``<url>/<namespace>/<name>``, so that
    the server can say whose requests it holds (and each rollout gets a connection pool of its own,
    as distinct Prometheus servers would)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._held: dict[str, int] = {}
        self._received = self._answered = self._dropped = 0
        self.first_request: float | None = None  # time.monotonic() of the first request held
        hang = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                prefix = self.path.split(QUERY_PATH, 1)[0]
                hang._change(prefix, +1, received=1)
                while not hang._released.wait(0.1):
                    readable, _, _ = select.select([self.connection], [], [], 0)
                    if readable and not self.connection.recv(1, socket.MSG_PEEK):
                        hang._change(prefix, -1, dropped=1)  # the client closed its end
                        self.close_connection = True
                        return
                hang._change(prefix, -1, answered=1)
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 256  # a burst of connections must not wait on SYN retries

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _change(self, prefix: str, delta: int, *, received: int = 0, answered: int = 0, dropped: int = 0) -> None:
        with self._lock:
            if self.first_request is None:
                self.first_request = time.monotonic()
            self._held[prefix] = self._held.get(prefix, 0) + delta
            self._received += received
            self._answered += answered
            self._dropped += dropped

    def address(self, namespace: str, name: str) -> str:
        return f"{self.url}/{namespace}/{name}"

    def snapshot(self) -> Held:
        with self._lock:
            held = {prefix: count for prefix, count in self._held.items() if count}
            return Held(held, self._received, self._answered, self._dropped)

    def release(self) -> None:
        self._released.set()

    def close(self) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def hanging_prometheus() -> Iterator[HangingPrometheus]:
    server = HangingPrometheus()
    yield server
    server.close()


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Evaluations:
    """Every evaluation of one rollout, from a watch of it (polling could miss one): each evaluation
    writes the rollout's ``status.lastEvaluatedAt``."""

    def __init__(self, kubeconfig: Path, namespace: str, name: str) -> None:
        self._api = client.CustomObjectsApi(config.new_client_from_config(config_file=str(kubeconfig)))
        self._where = (namespace, name)
        self._watch = watch.Watch()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._seen: list[datetime] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        namespace, name = self._where
        while not self._stopped.is_set():
            try:
                for event in self._watch.stream(
                    self._api.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    field_selector=f"metadata.name={name}",
                    timeout_seconds=30,
                ):
                    last = (event["object"].get("status") or {}).get("lastEvaluatedAt")
                    with self._lock:
                        if last is not None and (not self._seen or _time(last) > self._seen[-1]):
                            self._seen.append(_time(last))
            except Exception:  # a broken watch is started again; what it missed is in the next listing
                time.sleep(0.2)

    @property
    def seen(self) -> list[datetime]:
        with self._lock:
            return list(self._seen)

    def since(self, moment: datetime) -> list[datetime]:
        return [at for at in self.seen if at > moment]

    def stop(self) -> None:
        self._stopped.set()
        self._watch.stop()


def _gaps(times: list[datetime]) -> list[float]:
    return [round((b - a).total_seconds(), 2) for a, b in itertools.pairwise(times)]


def test_hanging_prometheus_neither_starves_a_healthy_rollout_nor_holds_back_its_abort(
    kube: LocalCluster | ExternalCluster,
    kubectl: Kubectl,
    release: ChartRelease,
    operator_kubeconfig: Path,
    cluster_ready: Kubectl,
    scraping_prometheus: Prometheus,
    traffic: CheckoutTraffic,
    hanging_prometheus: HangingPrometheus,
    tmp_path: Path,
) -> None:
    hang = hanging_prometheus
    gates = ["auth-approval", "duplicate-charges"]
    # The healthy rollout: its gate step passes every evaluation but its window (10 min) keeps it there.
    healthy = Rollout(
        cluster_ready,
        scraping_prometheus,
        traffic,
        steps=[{"setWeight": 5}, {"gate": {"pass": gates, "window": "10m"}}, {"setWeight": 100}],
        analysis={"interval": "2s", "failureLimit": 2, "inconclusiveLimit": 1000},
    )
    suffix = healthy.name.removeprefix("co-")
    namespaces = [healthy.namespace] + [f"hang-{suffix}-{i}" for i in range(OTHER_NAMESPACES)]
    hanging: list[tuple[str, str]] = [
        (namespaces[i % len(namespaces)], f"hang-{uuid.uuid4().hex[:6]}") for i in range(HANGING)
    ]
    setup: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}} for namespace in namespaces[1:]
    ]
    setup += [http_route(name, namespace, STABLE, CANARY) for namespace, name in hanging]
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(setup))
    manifests = []
    for namespace, name in hanging:
        manifest = rollout_manifest(
            name,
            namespace,
            hang.address(namespace, name),
            steps=[{"setWeight": 5}, {"gate": {"pass": ["duplicate-charges"], "window": "10m"}}, {"setWeight": 100}],
            analysis={"interval": "2s", "failureLimit": 2, "inconclusiveLimit": 1000},
        )
        manifest["spec"]["prometheus"] = {"address": hang.address(namespace, name), "timeout": "60s"}
        manifests.append(manifest)

    args = [f"--concurrency={CONCURRENCY}", f"--egress-allow={scraping_prometheus.url},{hang.url}"]
    logs = tmp_path / "operator.log"
    operator = Operator(operator_kubeconfig, logs, args=args).start()
    evaluations = Evaluations(kube.kubeconfig, healthy.namespace, healthy.name)
    try:
        healthy.apply()
        wait_for(lambda: len(evaluations.seen) >= EVALUATIONS, "the healthy rollout's evaluations before the hang")
        before = evaluations.seen

        kubectl("apply", "-f", "-", input=yaml.safe_dump_all(manifests))
        prefixes = {f"/{namespace}/{name}" for namespace, name in hanging}
        try:
            wait_for(lambda: prefixes <= set(hang.snapshot().held), "a request of every hanging rollout held")
        except AssertionError as error:
            held = hang.snapshot()
            raise AssertionError(
                f"{error}: {len(prefixes & set(held.held))} of {HANGING} hang ({held}); "
                f"passes that kept their slot while waiting on Prometheus would let at most {CONCURRENCY}"
            ) from None
        hung_at = datetime.now(UTC)
        print(f"hanging: {hang.snapshot().received} requests from {HANGING} rollouts, {CONCURRENCY} slots")

        # (a) The healthy rollout keeps evaluating while every hanging request is still held.
        during = wait_for(
            lambda: (found := evaluations.since(hung_at)) and len(found) >= EVALUATIONS and found,
            "the healthy rollout's evaluations during the hang",
        )
        held = hang.snapshot()
        assert prefixes <= set(held.held), f"every hanging rollout still has a request held: {held}"
        assert held.answered == 0 and held.dropped == 0, f"no hanging request completed or timed out: {held}"
        assert healthy.status["phase"] == "Progressing"
        everything = evaluations.seen
        print(
            f"evaluation gaps before the hang {_gaps(before)} s, while the hanging rollouts came in "
            f"{_gaps([at for at in everything if before[-1] <= at <= during[0]])} s, during the hang {_gaps(during)} s"
        )
        # Their interval holds: the gaps between evaluations during the hang are of the same order
        # as before it (a ratio of two measurements on the same machine, not a duration).
        assert statistics.median(_gaps(during)) <= 2 * statistics.median(_gaps(before)), (before, during)

        # (b) An on-call abort lands while every hanging request is still held.
        asked = time.monotonic()
        healthy.annotate(ABORT, "bob")
        status = healthy.wait_phase("Aborted")
        wait_for(lambda: healthy.route_weights() == (100, 0), "the route back at stable")
        abort_seconds = time.monotonic() - asked
        held = hang.snapshot()
        assert status["weights"] == {"stable": 100, "canary": 0}
        assert [e["actor"] for e in status.get("history", []) if e["action"] == "Aborted"] == ["bob"]
        assert prefixes <= set(held.held), f"every hanging rollout still has a request held: {held}"
        assert held.answered == 0 and held.dropped == 0, f"no hanging request completed or timed out: {held}"
        listing = kubectl.json("get", ROLLOUTS, "-A")["items"]
        stuck = {(o["metadata"]["namespace"], o["metadata"]["name"]): o.get("status", {}) for o in listing}
        for key in hanging:
            assert stuck[key].get("phase") == "Progressing", (key, stuck[key])
            assert stuck[key].get("lastEvaluatedAt") is None, f"{key} has no evaluation: its reads never returned"
        assert hang.first_request is not None
        print(
            f"abort applied (phase Aborted, route 100/0) {abort_seconds:.2f} s after the annotation, "
            f"{time.monotonic() - hang.first_request:.1f} s after the first request held (the timeout is 60 s)"
        )

        # (c) SIGTERM ends the operator while its requests still hang; its exit lets them go.
        process = operator.process
        assert process is not None and process.poll() is None, "the operator is still running"
        held = hang.snapshot()
        assert prefixes <= set(held.held) and held.answered == held.dropped == 0, held
        stopping = time.monotonic()
        os.killpg(process.pid, signal.SIGTERM)
        wait_for(lambda: process.poll() is not None, "the operator's exit")
        print(f"operator exited with {process.returncode} {time.monotonic() - stopping:.2f} s after SIGTERM")
        assert process.returncode == 0
        assert hang.snapshot().answered == 0, "it ended while no hanging request had been answered"
        wait_for(lambda: not hang.snapshot().held, "every held request let go by the operator's exit")
    finally:
        evaluations.stop()
        operator.stop()
        hang.release()
        for namespace in namespaces:
            kubectl("delete", "namespace", namespace, "--wait=false", check=False)
    text = logs.read_text()
    for sign in ("HTTP 403", "Forbidden", "forbidden", "Not enough permissions"):
        assert sign not in text, f"the operator was refused something ({sign!r}):\n{text[-4000:]}"
