"""The simulator as a process and as a library: its /metrics over loopback HTTP, a clean SIGTERM,
a real Prometheus scraping it, and its traffic share following an HTTPRoute on a real API server."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from checkout_gates_lab.sim import RouteTarget, Simulator, SimulatorConfig, load_scenario
from checkout_gates_lab.sim.catalog import (
    AUTH_OUTCOMES,
    CAPTURE_OUTCOMES,
    COUNTERS,
    KINDS,
    METHODS,
    PATHS,
    PROVIDERS,
    REFUND_OUTCOMES,
    VARIANTS,
)
from checkout_gates_lab.testbed import ExternalCluster, Kubectl, LocalCluster, Prometheus, free_port, gateway_api_crds

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "examples" / "scenarios"
RATE, WEIGHT = 200.0, 20.0

Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse(text: str) -> Samples:
    samples: Samples = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name].append((dict(sample.labels), sample.value))
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for found, v in samples[name] if all(found.get(k) == want for k, want in labels.items()))


def label_values(samples: Samples, name: str, label: str) -> set[str]:
    return {found[label] for found, _ in samples[name]}


@dataclass
class Process:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def metrics(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def scrape(self) -> Samples:
        response = httpx.get(self.metrics, timeout=5.0)
        response.raise_for_status()
        assert response.headers["content-type"].startswith("text/plain")
        return parse(response.text)


def start(tmp_path: Path, *options: str) -> Process:
    port = free_port()
    log = tmp_path / f"sim-{port}.log"
    command = [sys.executable, "-m", "checkout_gates_lab.sim", "--port", str(port), *options]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"simulator exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0).status_code == 200:
                return Process(process, port, log)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError(f"simulator did not listen on {port}:\n{log.read_text()}")


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[Process]:
    options = ("--rate", str(RATE), "--canary-weight", str(WEIGHT), "--seed", "7")
    running = start(tmp_path, *options, "--scenario", str(SCENARIOS / "duplicate-charges.yaml"))
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait(10)


EXPECTED_LABELS = {
    "checkout_attempts_total": {"path": set(PATHS)},
    "checkout_completions_total": {"path": set(PATHS)},
    "payment_authorizations_total": {"provider": set(PROVIDERS), "method": set(METHODS), "outcome": set(AUTH_OUTCOMES)},
    "payment_captures_total": {"provider": set(PROVIDERS), "method": set(METHODS), "outcome": set(CAPTURE_OUTCOMES)},
    "payment_refunds_total": {"provider": set(PROVIDERS), "kind": set(KINDS), "outcome": set(REFUND_OUTCOMES)},
    "payment_duplicate_charges_total": {"provider": set(PROVIDERS)},
    "checkout_duplicate_orders_total": {},
    "order_payment_mismatch_queue": {},
    "checkout_request_duration_seconds_count": {},
    "checkout_request_duration_seconds_sum": {},
}


def test_metrics_have_their_names_and_labels_and_counters_increase(simulator: Process) -> None:
    deadline = time.monotonic() + 10
    first, first_at = simulator.scrape(), time.monotonic()
    while not total(first, "checkout_attempts_total", variant="stable") and time.monotonic() < deadline:
        time.sleep(0.05)  # the port opens before the first tick: fault flags are set by a tick
        first, first_at = simulator.scrape(), time.monotonic()
    assert {spec.name for spec in COUNTERS} <= set(EXPECTED_LABELS)
    for name, labels in EXPECTED_LABELS.items():
        assert first[name], f"{name} missing"
        assert {frozenset(found) for found, _ in first[name]} == {frozenset({"variant", *labels})}, name
        assert label_values(first, name, "variant") == set(VARIANTS), name
        for label, values in labels.items():
            assert label_values(first, name, label) == values, (name, label)
    buckets = label_values(first, "checkout_request_duration_seconds_bucket", "le")
    assert {"0.3", "1.0", "2.5", "3.0", "+Inf"} <= buckets
    assert first["sim_canary_share"] == [({}, WEIGHT / 100)]
    assert first["sim_fault_active"] == [({"fault": "retry-without-idempotency-key"}, 1.0)]

    time.sleep(3.0)
    second, second_at = simulator.scrape(), time.monotonic()
    for variant in VARIANTS:
        for name in ("checkout_attempts_total", "checkout_completions_total", "payment_authorizations_total"):
            assert total(second, name, variant=variant) > total(first, name, variant=variant), (name, variant)
        inf = {"variant": variant, "le": "+Inf"}
        assert total(second, "checkout_request_duration_seconds_bucket", **inf) > total(
            first, "checkout_request_duration_seconds_bucket", **inf
        )
    rate = (total(second, "checkout_attempts_total") - total(first, "checkout_attempts_total")) / (second_at - first_at)
    assert rate == pytest.approx(RATE, rel=0.25)
    canary_share = total(second, "checkout_attempts_total", variant="canary") / total(second, "checkout_attempts_total")
    assert canary_share == pytest.approx(WEIGHT / 100, abs=0.06)


def test_sigterm_stops_the_simulator_cleanly(simulator: Process) -> None:
    simulator.process.send_signal(signal.SIGTERM)
    assert simulator.process.wait(10) == 0
    assert "simulator stopped" in simulator.log.read_text()
    with pytest.raises(httpx.TransportError):
        httpx.get(simulator.metrics, timeout=1.0)


def test_other_paths_and_methods(simulator: Process) -> None:
    assert httpx.get(f"http://127.0.0.1:{simulator.port}/nope", timeout=5.0).status_code == 404
    assert httpx.post(simulator.metrics, timeout=5.0).status_code == 405


def test_duration_ends_the_run(tmp_path: Path) -> None:
    running = start(tmp_path, "--duration", "1", "--rate", "10")
    assert running.process.wait(15) == 0
    assert "duration reached" in running.log.read_text()


def test_a_bad_scenario_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("faults:\n  - variant: canary\n    effect: {latencyMultiplier: -1}\n")
    result = subprocess.run(
        [sys.executable, "-m", "checkout_gates_lab.sim", "--port", "0", "--scenario", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "faults[0].effect.latencyMultiplier" in result.stderr


async def eventually(check: Callable[[], Awaitable[bool]], what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_the_simulator_as_a_library() -> None:
    config = SimulatorConfig(
        rate=100, canary_weight=50, port=0, seed=3, scenario=load_scenario(SCENARIOS / "latency-regression.yaml")
    )
    async with Simulator(config) as sim, httpx.AsyncClient(timeout=5.0) as client:
        assert sim.port > 0
        assert sim.url == f"http://127.0.0.1:{sim.port}/metrics"

        async def counted() -> bool:
            samples = parse((await client.get(sim.url)).text)
            return all(total(samples, "checkout_request_duration_seconds_count", variant=v) > 50 for v in VARIANTS)

        await eventually(counted, "a second of traffic")
        samples = parse((await client.get(sim.url)).text)
        mean = {
            v: total(samples, "checkout_request_duration_seconds_sum", variant=v)
            / total(samples, "checkout_request_duration_seconds_count", variant=v)
            for v in VARIANTS
        }
        assert mean["canary"] > 1.3 * mean["stable"]  # latencyMultiplier 1.6 on the canary
        assert sim.engine.totals.count(COUNTERS[0]) > 0
    async with httpx.AsyncClient(timeout=1.0) as client:
        with pytest.raises(httpx.TransportError):
            await client.get(sim.url)


@pytest.mark.slow
def test_a_real_prometheus_scrapes_the_simulator(prometheus: Prometheus, simulator: Process) -> None:
    before = list(prometheus.scrape_targets)
    target = f"127.0.0.1:{simulator.port}"
    prometheus.set_scrape_targets([*before, target])
    try:
        mine = f'instance="{target}"'
        # rate() over 30s reads low while the series is younger than the window: wait for 33 s of samples.
        started = time.monotonic()
        while not prometheus.query(f"count_over_time(sim_canary_share{{{mine}}}[40s]) >= 34"):
            assert time.monotonic() - started < 90, "Prometheus did not scrape the simulator for 33 s"
            time.sleep(1.0)
        result = prometheus.query(f"sum(rate(checkout_attempts_total{{{mine}}}[30s]))")
        assert float(result[0]["value"][1]) == pytest.approx(RATE, rel=0.1)
        share = prometheus.query(f"sim_canary_share{{{mine}}}")
        assert float(share[0]["value"][1]) == pytest.approx(WEIGHT / 100)
        # The example rollout's auth-approval query, for the canary: one segment per provider and method.
        approval = prometheus.query(
            f'sum by (provider, method) (increase(payment_authorizations_total{{{mine}, variant="canary", '
            f'outcome="approved"}}[30s])) / sum by (provider, method) '
            f'(increase(payment_authorizations_total{{{mine}, variant="canary"}}[30s]))'
        )
        segments = {(r["metric"]["provider"], r["metric"]["method"]) for r in approval}
        assert ("adyen", "card") in segments
        assert len(segments) >= 6
        p99 = prometheus.query(
            "histogram_quantile(0.99, sum by (le) "
            f'(rate(checkout_request_duration_seconds_bucket{{{mine}, variant="stable"}}[30s])))'
        )
        assert 0.5 < float(p99[0]["value"][1]) < 1.5
    finally:
        prometheus.set_scrape_targets(before)


HTTP_ROUTE = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: checkout-api, namespace: {namespace}}}
spec:
  rules:
    - backendRefs:
        - {{name: checkout-api-stable, port: 8080, weight: 90}}
        - {{name: checkout-api-canary, port: 8080, weight: 10}}
"""


async def test_the_share_follows_the_http_route(kube: LocalCluster | ExternalCluster, kubectl: Kubectl) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(gateway_api_crds()))
    kubectl.wait_established("httproutes.gateway.networking.k8s.io")
    namespace = f"sim-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", namespace)
    try:
        kubectl.apply(HTTP_ROUTE.format(namespace=namespace))
        target = RouteTarget(
            http_route="checkout-api",
            stable_service="checkout-api-stable",
            canary_service="checkout-api-canary",
            namespace=namespace,
            kubeconfig=kube.kubeconfig,
        )
        config = SimulatorConfig(rate=100, port=0, seed=1, route=target)
        async with Simulator(config) as sim, httpx.AsyncClient(timeout=5.0) as client:

            async def share_is(expected: float) -> bool:
                samples = parse((await client.get(sim.url)).text)
                return samples["sim_canary_share"] == [({}, expected)]

            await eventually(lambda: share_is(0.1), "the route's 10 %", within=5)
            patch = [
                {"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 50},
                {"op": "replace", "path": "/spec/rules/0/backendRefs/1/weight", "value": 50},
            ]
            await asyncio.to_thread(
                kubectl, "patch", "httproute", "checkout-api", "-n", namespace, "--type=json", "-p", json.dumps(patch)
            )
            await eventually(lambda: share_is(0.5), "the patched 50 %", within=5)
            # A route that disappears leaves the last weight in force.
            await asyncio.to_thread(kubectl, "delete", "httproute", "checkout-api", "-n", namespace)
            await asyncio.sleep(2.5)
            assert await share_is(0.5)
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
