"""The Prometheus source against a real Prometheus (Debian's), with backfilled OpenMetrics samples.

Failure modes that a real Prometheus cannot be made to show on demand (a 5xx answer, an answer
that never comes) use tiny loopback servers: a socket that accepts and never answers, and an
HTTP server that answers every query with a fixed status.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from checkout_gates.api.spec import CheckoutRolloutSpec, Gate, PrometheusSpec
from checkout_gates.metrics.prometheus import PrometheusSource, interval_bounds
from checkout_gates_lab.testbed import Prometheus

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gates" / "card-payments.yaml"
STEP = 15  # seconds between backfilled samples
STEPS = 41  # 10 minutes
WINDOW = 300.0

# Per-step increments: (variant, provider) -> (approved, declined).
AUTHORIZATIONS = {
    ("stable", "adyen"): (19, 1),
    ("stable", "stripe"): (18, 2),
    ("canary", "adyen"): (9, 1),
    ("canary", "stripe"): (4, 1),
}
DUPLICATES = {"stable": 0, "canary": 1}
BUCKETS = ("0.1", "0.25", "0.5", "1", "+Inf")
# Cumulative bucket increments per step; 100 requests per step on each variant.
LATENCY = {"stable": (50, 90, 99, 100, 100), "canary": (20, 60, 90, 100, 100)}
QUEUE = {"stable": 3, "canary": 7}


@dataclass(frozen=True)
class Recording:
    run: str
    start: int

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.start + STEP * (STEPS - 1), tz=UTC)


def openmetrics(run: str, start: int) -> str:
    times = [start + STEP * i for i in range(STEPS)]
    lines = ["# TYPE cgtest_authorizations counter"]
    for (variant, provider), (approved, declined) in AUTHORIZATIONS.items():
        for outcome, per_step in (("approved", approved), ("declined", declined)):
            labels = f'run="{run}",variant="{variant}",provider="{provider}",outcome="{outcome}"'
            lines += [f"cgtest_authorizations_total{{{labels}}} {per_step * i} {t}" for i, t in enumerate(times)]
    lines.append("# TYPE cgtest_duplicate_charges counter")
    for variant, per_step in DUPLICATES.items():
        labels = f'run="{run}",variant="{variant}"'
        lines += [f"cgtest_duplicate_charges_total{{{labels}}} {per_step * i} {t}" for i, t in enumerate(times)]
    lines.append("# TYPE cgtest_request_duration_seconds histogram")
    for variant, cumulative in LATENCY.items():
        labels = f'run="{run}",variant="{variant}"'
        for i, t in enumerate(times):
            for le, per_step in zip(BUCKETS, cumulative, strict=True):
                lines.append(f'cgtest_request_duration_seconds_bucket{{{labels},le="{le}"}} {per_step * i} {t}')
            lines.append(f"cgtest_request_duration_seconds_count{{{labels}}} {cumulative[-1] * i} {t}")
            lines.append(f"cgtest_request_duration_seconds_sum{{{labels}}} {0.2 * cumulative[-1] * i:.1f} {t}")
    lines.append("# TYPE cgtest_charges counter")
    for labels, values in exact_series(run, start):
        lines += [f"cgtest_charges_total{{{labels}}} {value} {t}" for t, value in values]
    lines.append("# TYPE cgtest_mismatch_queue gauge")
    for variant, size in QUEUE.items():
        labels = f'run="{run}",variant="{variant}"'
        lines += [f"cgtest_mismatch_queue{{{labels}}} {size} {t}" for t in times]
    return "\n".join(lines) + "\n# EOF\n"


def exact_series(run: str, start: int) -> list[tuple[str, list[tuple[int, int]]]]:
    """Charges per pod, 7 a scrape on canary-a, which restarts (from 0) at step 30; canary-b is
    born at step 35; stable-a charges 20 a scrape. Scraped every STEP seconds."""
    times = [start + STEP * i for i in range(STEPS)]
    canary_a = [7 * i if i < 30 else 7 * (i - 30) + 3 for i in range(STEPS)]  # 3 events, then the restart's scrape
    series = [
        (f'run="{run}",variant="canary",pod="canary-a"', list(zip(times, canary_a, strict=True))),
        (f'run="{run}",variant="canary",pod="canary-b"', [(t, 5 * (i - 34)) for i, t in enumerate(times) if i >= 35]),
        (f'run="{run}",variant="stable",pod="stable-a"', [(t, 20 * i) for i, t in enumerate(times)]),
    ]
    return series


@pytest.fixture(scope="module")
def recording(prometheus: Prometheus) -> Recording:
    run = uuid.uuid4().hex[:8]
    start = (int(time.time()) - 3 * 3600) // STEP * STEP  # an older range: written as blocks
    prometheus.backfill_openmetrics(openmetrics(run, start))
    return Recording(run=run, start=start)


@pytest.fixture(scope="module")
def spec() -> CheckoutRolloutSpec:
    document = yaml.safe_load(EXAMPLE.read_text())
    return CheckoutRolloutSpec.model_validate(document["spec"])


@pytest_asyncio.fixture(loop_scope="function")  # the test's loop: it owns the pooled connections
async def source(prometheus: Prometheus) -> Any:
    async with PrometheusSource(PrometheusSpec(address=prometheus.url, timeout="5s")) as live:
        yield live


def gate(**fields: Any) -> Gate:
    return Gate.model_validate({"max": 1e9, **fields})


def auth_gate(run: str) -> Gate:
    selector = f'run="{run}", variant="{{{{variant}}}}"'
    return gate(
        name="auth-approval",
        ratio={
            "good": f'sum by (provider) (increase(cgtest_authorizations_total{{{selector}, outcome="approved"}}'
            "[{{window}}]))",
            "total": f"sum by (provider) (increase(cgtest_authorizations_total{{{selector}}}[{{{{window}}}}]))",
        },
        segmentBy=["provider"],
    )


async def read(source: PrometheusSource, spec: CheckoutRolloutSpec, one: Gate, at: datetime) -> Any:
    return await source.read_gate(
        one, spec=spec, namespace="payments", name="checkout-api", window_seconds=WINDOW, at=at
    )


async def test_ratio_per_segment(source: PrometheusSource, spec: CheckoutRolloutSpec, recording: Recording) -> None:
    reading = await read(source, spec, auth_gate(recording.run), recording.at)
    assert reading.error is None, reading.error
    assert reading.gate == "auth-approval"
    assert reading.window_seconds == WINDOW
    adyen, stripe = (("provider", "adyen"),), (("provider", "stripe"),)
    assert set(reading.canary) == set(reading.stable) == {adyen, stripe}
    for side, samples in (("canary", reading.canary), ("stable", reading.stable)):
        for segment, provider in ((adyen, "adyen"), (stripe, "stripe")):
            approved, declined = AUTHORIZATIONS[side, provider]
            sample = samples[segment]
            # increase() extrapolates every series by the same factor: the ratio is exact, counts are close.
            assert sample.value == pytest.approx(approved / (approved + declined), abs=1e-9)
            expected_total = (approved + declined) * WINDOW / STEP
            assert sample.total == pytest.approx(expected_total, rel=0.1)
            assert sample.samples == sample.total
            assert sample.good == pytest.approx(sample.total * approved / (approved + declined))


def true_events(series: list[tuple[int, int]], start: float, end: float) -> int:
    """Events in (start, end] of one counter whose every restart a scrape saw (the ground truth)."""
    before = [value for t, value in series if t <= start]
    previous, events = (before[-1] if before else 0), 0
    for t, value in series:
        if start < t <= end:
            events += value - previous if value >= previous else value
            previous = value
    return events


async def test_exact_counts_come_interval_by_interval_since_the_evidence_began(
    source: PrometheusSource, spec: CheckoutRolloutSpec, recording: Recording
) -> None:
    """With ``since`` (status.evidenceSince), the exact reader cuts the time since then at the
    analysis interval's grid and counts each interval exactly: what the carried e-process folds."""
    at = recording.at
    end = at.timestamp()
    since = datetime.fromtimestamp(end - 2 * WINDOW + 7.0, tz=UTC)  # across chunks, off the grid
    selector = f'cgtest_charges_total{{run="{recording.run}", variant="{{{{variant}}}}"}}'
    exact = gate(name="charges", count=selector, exposure=selector, method="sequential", counts="exact")
    reading = await source.read_gate(
        exact, spec=spec, namespace="payments", name="checkout-api", window_seconds=WINDOW, at=at, since=since
    )
    assert reading.error is None, reading.error
    bounds = interval_bounds(since.timestamp(), end, spec.interval_seconds())
    assert len(bounds) > 3
    series = dict(exact_series(recording.run, recording.start))
    for variant, samples in (("canary", reading.canary), ("stable", reading.stable)):
        steps = samples[()].steps
        assert steps is not None
        truth = tuple(
            float(sum(true_events(values, a, b) for labels, values in series.items() if variant in labels))
            for a, b in itertools.pairwise(bounds)
        )
        assert steps.bad == truth
        assert steps.exposure == truth
        assert samples[()].value == sum(truth)


def tail_gate(run: str, **tail: Any) -> Gate:
    histogram = f'cgtest_request_duration_seconds{{run="{run}", variant="{{{{variant}}}}"}}'
    return Gate.model_validate(
        {
            "name": "slow-checkouts",
            "tail": {"histogram": histogram, **tail},
            "compare": {"maxRise": "50%"},
            "method": "sequential",
            "counts": "exact",
        }
    )


@pytest.mark.parametrize(
    ("tail", "bound", "slow"), [({"quantile": 0.98}, "0.5", (10, 1)), ({"le": "0.25"}, "0.25", (40, 10))]
)
async def test_tail_counts_requests_slower_than_stable_bound(
    source: PrometheusSource,
    spec: CheckoutRolloutSpec,
    recording: Recording,
    tail: dict[str, Any],
    bound: str,
    slow: tuple[int, int],
) -> None:
    """A tail gate against a real Prometheus: the bound is stable's 0.98 bucket in the hour before
    the evidence began (0.5 s: 1% of stable's requests exceed it, 10% exceed 0.25 s), or the given
    le; then the requests slower than it are counted exactly, per interval, per request served."""
    at = recording.at
    since = datetime.fromtimestamp(recording.start + 20 * STEP, tz=UTC)  # ten minutes of history before
    reading = await source.read_gate(
        tail_gate(recording.run, **tail),
        spec=spec,
        namespace="payments",
        name="checkout-api",
        window_seconds=WINDOW,
        at=at,
        since=since,
    )
    assert reading.error is None, reading.error
    assert reading.subject is not None and f"le={bound}" in reading.subject
    intervals = len(interval_bounds(since.timestamp(), at.timestamp(), spec.interval_seconds())) - 1
    steps = STEPS - 1 - 20  # scrapes after the evidence began, each 100 requests per variant
    for samples, per_step in ((reading.canary, slow[0]), (reading.stable, slow[1])):
        sample = samples[()]
        assert sample.steps is not None and len(sample.steps.bad) == intervals
        assert sample.value == per_step * steps
        assert sample.samples == 100 * steps


async def test_tail_without_stable_history_says_what_to_do(
    source: PrometheusSource, spec: CheckoutRolloutSpec, recording: Recording
) -> None:
    """Evidence that began before stable had any request: no bound to choose, an Inconclusive
    reading that says to give tail.le (never a bound chosen from the data under test)."""
    since = datetime.fromtimestamp(recording.start - 2 * 3600, tz=UTC)
    reading = await source.read_gate(
        tail_gate(recording.run),
        spec=spec,
        namespace="payments",
        name="checkout-api",
        window_seconds=WINDOW,
        at=datetime.fromtimestamp(recording.start - 3600, tz=UTC),
        since=since,
    )
    assert reading.error is not None and "give tail.le" in reading.error


@pytest.mark.parametrize("offset", [0.0, 7.5])  # on a scrape, and between two
async def test_exact_counts_match_the_events_where_increase_extrapolates(
    source: PrometheusSource, spec: CheckoutRolloutSpec, recording: Recording, offset: float
) -> None:
    """counts: exact against a real Prometheus: every increment since the window began, across
    canary-a's restart and canary-b's birth, exactly; increase() between scrapes extrapolates."""
    at = recording.at - timedelta(seconds=offset)
    end = at.timestamp()
    selector = f'cgtest_charges_total{{run="{recording.run}", variant="{{{{variant}}}}"}}'
    exact = gate(name="charges", count=selector, exposure=selector, method="sequential", counts="exact")
    reading = await read(source, spec, exact, at)
    assert reading.error is None, reading.error
    series = dict(exact_series(recording.run, recording.start))
    truth = {
        variant: sum(true_events(values, end - WINDOW, end) for labels, values in series.items() if variant in labels)
        for variant in ("canary", "stable")
    }
    assert truth["canary"] > 0 and truth["stable"] > 0
    assert reading.canary[()].value == truth["canary"]
    assert reading.stable[()].value == truth["stable"]
    if offset:
        extrapolated = gate(name="charges", count=f"sum(increase({selector}[{{{{window}}}}]))")
        estimate = await read(source, spec, extrapolated, at)
        assert estimate.error is None, estimate.error
        assert estimate.canary[()].value != truth["canary"], "increase() extrapolates between scrapes"


async def test_subsecond_timeout(prometheus: Prometheus, spec: CheckoutRolloutSpec, recording: Recording) -> None:
    # Prometheus' own timeout parameter takes no fractions: 1500ms must not go out as 1.5s.
    async with PrometheusSource(PrometheusSpec(address=prometheus.url, timeout="1500ms")) as source:
        reading = await read(source, spec, auth_gate(recording.run), recording.at)
    assert reading.error is None, reading.error
    assert len(reading.canary) == 2


async def test_count_with_exposure(source: PrometheusSource, spec: CheckoutRolloutSpec, recording: Recording) -> None:
    selector = f'run="{recording.run}", variant="{{{{variant}}}}"'
    duplicates = gate(
        name="duplicate-charges",
        count=f"sum(increase(cgtest_duplicate_charges_total{{{selector}}}[{{{{window}}}}]))",
        exposure=f"sum(increase(cgtest_authorizations_total{{{selector}}}[{{{{window}}}}]))",
    )
    reading = await read(source, spec, duplicates, recording.at)
    assert reading.error is None, reading.error
    assert list(reading.canary) == [()]
    assert reading.canary[()].value == pytest.approx(WINDOW / STEP, rel=0.1)
    assert reading.stable[()].value == 0.0
    assert reading.canary[()].samples == pytest.approx(15 * WINDOW / STEP, rel=0.1)
    assert reading.stable[()].samples == pytest.approx(40 * WINDOW / STEP, rel=0.1)


async def test_quantile_from_histogram(
    source: PrometheusSource, spec: CheckoutRolloutSpec, recording: Recording
) -> None:
    selector = f'run="{recording.run}", variant="{{{{variant}}}}"'
    p99 = gate(
        name="p99-latency",
        quantile="histogram_quantile(0.99, sum by (le) "
        f"(rate(cgtest_request_duration_seconds_bucket{{{selector}}}[{{{{window}}}}])))",
        samples=f"sum(increase(cgtest_request_duration_seconds_count{{{selector}}}[{{{{window}}}}]))",
    )
    reading = await read(source, spec, p99, recording.at)
    assert reading.error is None, reading.error
    # Linear interpolation in the bucket holding rank 99: stable (0.25, 0.5], canary (0.5, 1].
    assert reading.stable[()].value == pytest.approx(0.5, rel=1e-6)
    assert reading.canary[()].value == pytest.approx(0.95, rel=1e-6)
    assert reading.canary[()].samples == pytest.approx(100 * WINDOW / STEP, rel=0.1)


async def test_scalar_gauge(source: PrometheusSource, spec: CheckoutRolloutSpec, recording: Recording) -> None:
    queue = gate(
        name="mismatch-queue",
        gauge=f'scalar(max(cgtest_mismatch_queue{{run="{recording.run}", variant="{{{{variant}}}}"}}))',
    )
    reading = await read(source, spec, queue, recording.at)
    assert reading.error is None, reading.error
    assert reading.canary == {(): reading.canary[()]}
    assert reading.canary[()].value == QUEUE["canary"]
    assert reading.stable[()].value == QUEUE["stable"]


async def test_time_parameter_and_empty_results(
    source: PrometheusSource, spec: CheckoutRolloutSpec, recording: Recording
) -> None:
    before = datetime.fromtimestamp(recording.start - 3600, tz=UTC)
    reading = await read(source, spec, auth_gate(recording.run), before)
    assert reading.error is None
    assert reading.canary == {} and reading.stable == {}


async def test_read_gates_concurrently(
    source: PrometheusSource, spec: CheckoutRolloutSpec, recording: Recording
) -> None:
    gates = [
        auth_gate(recording.run),
        gate(name="queue", gauge=f'max(cgtest_mismatch_queue{{run="{recording.run}", variant="{{{{variant}}}}"}})'),
        gate(name="broken", gauge="sum(rate(cgtest_mismatch_queue[{{window}}])"),
    ]
    readings = await source.read_gates(
        gates,
        spec=spec,
        namespace="payments",
        name="checkout-api",
        window_seconds={"auth-approval": 300, "queue": 60, "broken": 60},
        at=recording.at,
    )
    assert list(readings) == ["auth-approval", "queue", "broken"]
    assert readings["auth-approval"].error is None
    assert readings["queue"].window_seconds == 60
    assert readings["queue"].canary[()].value == QUEUE["canary"]
    assert readings["broken"].error is not None


async def test_bad_promql_carries_prometheus_message(source: PrometheusSource, spec: CheckoutRolloutSpec) -> None:
    broken = gate(name="broken", gauge='sum(rate(cgtest_mismatch_queue{variant="{{variant}}"}[{{window}}])')
    reading = await read(source, spec, broken, datetime.now(UTC))
    assert reading.error is not None
    assert "Prometheus rejected the query (HTTP 400, bad_data)" in reading.error
    assert "parse error" in reading.error
    assert "stable gauge, canary gauge queries" in reading.error  # both variants failed the same way: said once
    assert '(query: sum(rate(cgtest_mismatch_queue{variant="stable"}[5m]))' in reading.error
    assert reading.canary == {} and reading.stable == {}


async def test_nan_is_an_error(source: PrometheusSource, spec: CheckoutRolloutSpec) -> None:
    reading = await read(source, spec, gate(name="nan", gauge="vector(0) / vector(0)"), datetime.now(UTC))
    assert reading.error is not None
    assert "NaN" in reading.error


async def test_two_series_in_one_segment_is_an_error(
    source: PrometheusSource, spec: CheckoutRolloutSpec, recording: Recording
) -> None:
    unaggregated = gate(
        name="per-provider",
        count=f'cgtest_authorizations_total{{run="{recording.run}", variant="{{{{variant}}}}"}}',
        segmentBy=["provider"],
    )
    reading = await read(source, spec, unaggregated, recording.at)
    assert reading.error is not None
    assert "more than one series falls into segment provider=" in reading.error


async def test_unknown_template_variable(source: PrometheusSource, spec: CheckoutRolloutSpec) -> None:
    reading = await read(source, spec, gate(name="typo", gauge='max(up{variant="{{varient}}"})'), datetime.now(UTC))
    assert reading.error is not None
    assert "{{varient}}" in reading.error


# --- failures without a working Prometheus ------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_unreachable_prometheus_fails_quickly(spec: CheckoutRolloutSpec) -> None:
    address = f"http://127.0.0.1:{closed_port()}"
    async with PrometheusSource(PrometheusSpec(address=address, timeout="5s"), retries=2, backoff_seconds=0.05) as dead:
        began = time.monotonic()
        reading = await read(dead, spec, gate(name="g", gauge='max(up{variant="{{variant}}"})'), datetime.now(UTC))
        elapsed = time.monotonic() - began
    assert elapsed < 2.0
    assert reading.error is not None
    assert f"cannot connect to Prometheus at {address}" in reading.error
    assert "Connection refused" in reading.error
    assert "after 3 attempts" in reading.error


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A socket that accepts connections (the kernel does, into the backlog) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)
        yield int(server.getsockname()[1])


async def test_timeout_is_honoured(spec: CheckoutRolloutSpec, silent_port: int) -> None:
    config = PrometheusSpec(address=f"http://127.0.0.1:{silent_port}", timeout="1s")
    async with PrometheusSource(config, retries=2, backoff_seconds=0.05) as slow:
        began = time.monotonic()
        reading = await read(slow, spec, auth_gate("x"), datetime.now(UTC))
        elapsed = time.monotonic() - began
    assert reading.error is not None
    assert "did not answer within 1s" in reading.error
    assert 0.9 <= elapsed < 3.0  # four queries at once, each given up after 1 s, and not retried


class FixedAnswer:
    """An HTTP server answering every query with one status and body; counts the requests."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        self.requests = 0
        self.headers: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests += 1
                owner.headers.append(dict(self.headers))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_5xx_is_retried_with_backoff_and_4xx_is_not(spec: CheckoutRolloutSpec) -> None:
    one_query = gate(name="g", gauge='max(up{variant="{{variant}}"})')  # two queries: stable and canary
    unavailable = FixedAnswer(503, {"status": "error", "errorType": "unavailable", "error": "too many queries"})
    try:
        async with PrometheusSource(PrometheusSpec(address=unavailable.url), retries=2, backoff_seconds=0.05) as source:
            reading = await read(source, spec, one_query, datetime.now(UTC))
    finally:
        unavailable.close()
    assert reading.error is not None
    assert "Prometheus failed the query (HTTP 503, unavailable): too many queries" in reading.error
    assert "after 3 attempts" in reading.error
    assert unavailable.requests == 2 * 3

    bad = FixedAnswer(400, {"status": "error", "errorType": "bad_data", "error": "invalid parameter"})
    try:
        async with PrometheusSource(PrometheusSpec(address=bad.url), retries=2, backoff_seconds=0.05) as source:
            reading = await read(source, spec, one_query, datetime.now(UTC))
    finally:
        bad.close()
    assert reading.error is not None
    assert "invalid parameter" in reading.error
    assert bad.requests == 2


async def test_credentials_are_sent(spec: CheckoutRolloutSpec) -> None:
    server = FixedAnswer(200, {"status": "success", "data": {"resultType": "vector", "result": []}})
    try:
        async with PrometheusSource(PrometheusSpec(address=server.url), bearer_token="s3cret") as source:
            reading = await read(source, spec, gate(name="g", gauge="vector(1)"), datetime.now(UTC))
        async with PrometheusSource(PrometheusSpec(address=server.url), basic_auth=("alice", "pw")) as source:
            await read(source, spec, gate(name="g", gauge="vector(1)"), datetime.now(UTC))
    finally:
        server.close()
    assert reading.error is None
    assert reading.canary == {}
    assert server.headers[0]["Authorization"] == "Bearer s3cret"
    assert server.headers[-1]["Authorization"] == "Basic YWxpY2U6cHc="


async def test_answer_that_is_not_prometheus(spec: CheckoutRolloutSpec) -> None:
    server = FixedAnswer(200, {"hello": "world"})
    try:
        async with PrometheusSource(PrometheusSpec(address=server.url)) as source:
            reading = await read(source, spec, gate(name="g", gauge="vector(1)"), datetime.now(UTC))
    finally:
        server.close()
    assert reading.error is not None
    assert "not a query result" in reading.error
