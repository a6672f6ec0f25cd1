"""A counter with no series yet is zero events once its exposure is known (issue 13): a canary at 5%
that has charged no duplicate yet is judged on 0 duplicates, not 'no data'."""

from __future__ import annotations

from datetime import datetime

import pytest

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.api.spec import PrometheusSpec
from checkout_gates.gates.evaluate import evaluate_gate
from checkout_gates.metrics.prometheus import PrometheusSource, Series

from .rollouts import rollout_doc

GATE = {
    "name": "duplicate-charges",
    "count": "sum by (provider) (increase(dup_total{variant='{{variant}}'}[{{window}}]))",
    "exposure": "sum by (provider) (increase(charges_total{variant='{{variant}}'}[{{window}}]))",
    "segmentBy": ["provider"],
    "max": 0.5,
    "critical": True,
}


def rollout(**gate: object) -> CheckoutRollout:
    document = rollout_doc([{"setWeight": 5}, {"gate": {"pass": ["duplicate-charges"], "window": "1m"}}])
    document["spec"]["gates"] = [{**GATE, **gate}]
    return CheckoutRollout.model_validate(document)


def answering(canary_duplicates: dict[str, float]) -> object:
    async def query_once(promql: str, at: datetime | None) -> list[Series]:
        canary = "variant='canary'" in promql
        if promql.startswith("sum by (provider) (increase(dup_total"):
            counts = canary_duplicates if canary else {"adyen": 1.0}
            return [Series(labels={"provider": p}, value=v) for p, v in counts.items()]
        return [Series(labels={"provider": p}, value=500.0) for p in ("adyen", "stripe")]

    return query_once


@pytest.mark.parametrize("on_missing", ["inconclusive", "fail"])
async def test_no_duplicate_series_on_the_canary_is_zero_duplicates_not_missing_data(
    monkeypatch: pytest.MonkeyPatch, on_missing: str
) -> None:
    cro = rollout(onMissingData=on_missing)
    gate = cro.spec.gates[0]
    async with PrometheusSource(PrometheusSpec(address="http://127.0.0.1:1"), dedupe_seconds=0) as source:
        monkeypatch.setattr(source, "_query_once", answering({}))
        reading = await source.read_gate(gate, spec=cro.spec, namespace="payments", name="checkout", window_seconds=60)
    assert reading.error is None
    assert {key: (s.value, s.samples) for key, s in reading.canary.items()} == {
        (("provider", "adyen"),): (0.0, 500.0),
        (("provider", "stripe"),): (0.0, 500.0),
    }
    assert evaluate_gate(gate, reading, canary_share=0.05).verdict == "Pass"


async def test_a_duplicate_in_one_segment_still_fails_and_the_others_count_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cro = rollout()
    gate = cro.spec.gates[0]
    async with PrometheusSource(PrometheusSpec(address="http://127.0.0.1:1"), dedupe_seconds=0) as source:
        monkeypatch.setattr(source, "_query_once", answering({"stripe": 2.0}))
        reading = await source.read_gate(gate, spec=cro.spec, namespace="payments", name="checkout", window_seconds=60)
    verdict = evaluate_gate(gate, reading, canary_share=0.05)
    assert verdict.verdict == "Fail" and verdict.segment == "provider=stripe"
    assert reading.canary[(("provider", "adyen"),)].value == 0.0
