"""Bad and absurd answers from a real Prometheus, judged end to end (source -> gate -> decision).

Malformed PromQL (Prometheus answers 400: the verdict is Inconclusive with Prometheus' own
message and the query), queries that match no series, NaN, ±Inf and negative values, and 5,000
segments from a backfilled metric: the verdict is computed, the status keeps at most
``SEGMENT_LIMIT`` segments and stays small. Never an exception.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.api.spec import CheckoutRolloutSpec, Gate, PrometheusSpec
from checkout_gates.api.status import SEGMENT_LIMIT
from checkout_gates.gates.evaluate import evaluate_gate
from checkout_gates.metrics.prometheus import PrometheusSource
from checkout_gates_lab.testbed import Prometheus
from tests.unit.rollouts import Driver, rollout_doc

pytestmark = pytest.mark.integration

SEGMENTS = 5000
STEP = 30
STEPS = 3  # samples per series: a 1-minute window at the last one
WINDOW = 60.0


@dataclass(frozen=True)
class Backfill:
    run: str
    at: datetime


def openmetrics(run: str, start: int) -> str:
    """5,000 providers x 2 variants x 2 outcomes; canary provider-04999 approves only half."""
    lines = ["# TYPE cgabsurd_auth counter"]
    times = [start + STEP * i for i in range(STEPS)]
    for provider in range(SEGMENTS):
        for variant in ("stable", "canary"):
            declined = 50 if (variant == "canary" and provider == SEGMENTS - 1) else 3
            for outcome, per_step in (("approved", 100 - declined), ("declined", declined)):
                labels = f'run="{run}",variant="{variant}",provider="provider-{provider:05d}",outcome="{outcome}"'
                lines += [f"cgabsurd_auth_total{{{labels}}} {per_step * i} {t}" for i, t in enumerate(times)]
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def backfill(prometheus: Prometheus) -> Backfill:
    run = uuid.uuid4().hex[:8]
    start = (int(time.time()) - 2 * 3600) // STEP * STEP
    prometheus.backfill_openmetrics(openmetrics(run, start))
    return Backfill(run, datetime.fromtimestamp(start + STEP * (STEPS - 1), tz=UTC))


@pytest_asyncio.fixture(loop_scope="function")  # the test's loop: it owns the pooled connections
async def source(prometheus: Prometheus) -> Any:
    async with PrometheusSource(PrometheusSpec(address=prometheus.url, timeout="10s")) as live:
        yield live


def ratio_gate(run: str, **fields: Any) -> Gate:
    selector = f'run="{run}", variant="{{{{variant}}}}"'
    return Gate.model_validate(
        {
            "name": "auth-approval",
            "ratio": {
                "good": f'sum by (provider) (increase(cgabsurd_auth_total{{{selector}, outcome="approved"}}[{{{{window}}}}]))',
                "total": f"sum by (provider) (increase(cgabsurd_auth_total{{{selector}}}[{{{{window}}}}]))",
            },
            "segmentBy": ["provider"],
            "compare": {"maxDrop": "2pp"},
            **fields,
        }
    )


def spec_with(*gates: Gate) -> CheckoutRolloutSpec:
    document = rollout_doc()
    document["spec"]["gates"] = [g.to_wire() for g in gates]
    names = [g.name for g in gates]
    document["spec"]["steps"] = [{"setWeight": 5}, {"gate": {"pass": names, "window": "1m"}}, {"setWeight": 100}]
    return CheckoutRolloutSpec.model_validate(document["spec"])


async def test_five_thousand_segments_judged_and_status_kept_small(
    source: PrometheusSource, backfill: Backfill
) -> None:
    gate = ratio_gate(backfill.run)
    spec = spec_with(gate)
    started = time.perf_counter()
    reading = await source.read_gate(
        gate, spec=spec, namespace="payments", name="co", window_seconds=WINDOW, at=backfill.at
    )
    read_seconds = time.perf_counter() - started
    assert reading.error is None, reading.error
    assert len(reading.canary) == len(reading.stable) == SEGMENTS
    verdict = evaluate_gate(gate, reading, canary_share=0.05)
    assert verdict.verdict == "Fail"
    assert verdict.segment == "provider=provider-04999"
    assert f"1 of {SEGMENTS} segments fail" in verdict.reason
    assert read_seconds < 20, f"reading {SEGMENTS} segments took {read_seconds:.1f}s"

    document = rollout_doc()
    document["spec"] = spec.to_wire()
    driver = Driver(CheckoutRollout.model_validate(document))
    driver.step(advance=30)
    driver.step({"auth-approval": reading})
    status = driver.status
    recorded = next(g for g in status.gates if g.name == "auth-approval")
    assert recorded.verdict == "Fail" and recorded.segment == "provider=provider-04999"
    assert len(recorded.segments) <= SEGMENT_LIMIT
    size = len(json.dumps(status.to_wire(), allow_nan=False))
    assert size < 24_000, f"status is {size} bytes"


MALFORMED = "sum(rate(cgabsurd_auth_total[5m])"


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        (
            {"count": MALFORMED, "max": 0},
            ["query failed", "Prometheus rejected the query (HTTP 400", "parse error", MALFORMED],
        ),
        ({"count": 'sum(cgabsurd_nothing_total{variant="{{variant}}"})', "max": 0}, ["no data for canary"]),
        ({"count": "vector(0) / 0", "max": 0}, ["query failed", "NaN"]),
        ({"count": "vector(1) / 0", "max": 0}, ["canary count is +Inf"]),
        ({"count": "vector(-1) / 0", "max": 0}, ["canary count is -Inf"]),
        ({"count": "-5", "max": 0}, ["canary count is negative (-5)"]),
        ({"quantile": "vector(1) / 0", "max": 2.5}, ["canary value is +Inf"]),
        ({"count": "cgabsurd_auth_total[1m]", "max": 0}, ["range vector"]),
        (
            {"count": 'sum(cgabsurd_auth_total{variant="{{varient}}"})', "max": 0},
            ["unknown template variable {{varient}}"],
        ),
    ],
    ids=["malformed", "no-series", "nan", "inf", "minus-inf", "negative", "inf-quantile", "range-vector", "typo"],
)
async def test_bad_answers_are_inconclusive_with_the_reason(
    source: PrometheusSource, backfill: Backfill, fields: dict[str, Any], words: list[str]
) -> None:
    gate = Gate.model_validate({"name": "odd", **fields})
    spec = spec_with(gate)
    reading = await source.read_gate(
        gate, spec=spec, namespace="payments", name="co", window_seconds=WINDOW, at=backfill.at
    )
    verdict = evaluate_gate(gate, reading, canary_share=0.05)
    assert verdict.verdict == "Inconclusive", verdict
    for word in words:
        assert word in verdict.reason, verdict.reason

    document = rollout_doc()
    document["spec"] = spec.to_wire()
    driver = Driver(CheckoutRollout.model_validate(document))
    driver.step(advance=30)
    driver.step({"odd": reading})
    recorded = next(g for g in driver.status.gates if g.name == "odd")
    assert recorded.verdict == "Inconclusive" and words[-1] in recorded.reason
    json.dumps(driver.status.to_wire(), allow_nan=False)
