"""Tail signals: the bound chosen from stable's buckets, the counters read, and the verdict."""

from __future__ import annotations

import pytest

from checkout_gates.api.spec import Gate
from checkout_gates.gates.budget import judge_gates
from checkout_gates.gates.observations import SCALAR, ArmSteps, Sample, SignalReading
from checkout_gates.metrics.prometheus import QueryError, exact_samples
from checkout_gates.metrics.tail import NoBoundError, bound_query, choose_bound, counter_templates

HISTOGRAM = 'checkout_request_duration_seconds{variant="{{variant}}", path="/pay"}'


def tail_gate(**tail: object) -> Gate:
    return Gate.model_validate(
        {
            "name": "slow-checkouts",
            "tail": {"histogram": HISTOGRAM, **tail},
            "compare": {"maxRise": "50%"},
            "method": "sequential",
            "counts": "exact",
        }
    )


def test_bound_is_stable_quantile_bucket_rounded_up() -> None:
    # 1000 requests: 10% over 0.25 s, 1.5% over 0.5 s, 0.4% over 1 s.
    buckets = [("0.1", 500.0), ("0.25", 900.0), ("0.5", 985.0), ("1", 996.0), ("2.5", 1000.0), ("+Inf", 1000.0)]
    assert choose_bound(buckets, 0.99) == "1"
    assert choose_bound(buckets, 0.98) == "0.5"
    assert choose_bound(buckets, 0.9) == "0.25"
    assert choose_bound(list(reversed(buckets)), 0.9) == "0.25", "the answer's order does not matter"


def test_no_bound_without_stable_requests_or_above_the_last_bucket() -> None:
    with pytest.raises(NoBoundError, match=r"give tail\.le"):
        choose_bound([("0.5", 0.0), ("+Inf", 0.0)], 0.99)
    with pytest.raises(NoBoundError, match=r"give tail\.le"):
        choose_bound([], 0.99)
    with pytest.raises(NoBoundError, match="exceeded the largest finite bucket"):
        choose_bound([("0.5", 90.0), ("+Inf", 100.0)], 0.99)


def test_hostile_le_labels_are_not_bounds() -> None:
    # A label that is not a bound as clients spell one is never quoted into a query.
    buckets = [
        ('0.5"} or vector(1) #', 99.0),
        ("NaN", 99.0),
        (" 1\n", 99.0),
        ("1_0", 99.0),
        ("1", 99.5),
        ("+Inf", 100.0),
    ]
    assert choose_bound(buckets, 0.99) == "1"


def test_two_spellings_of_a_bound_are_one_bucket() -> None:
    """Pods of two client versions spell 0.5 as "0.5" and "0.50": one bucket, their requests added."""
    buckets = [("0.5", 400.0), ("0.50", 400.0), ("1", 498.0), ("1.0", 498.0), ("+Inf", 500.0), ("+Inf", 500.0)]
    assert float(choose_bound(buckets, 0.99)) == 1.0


def test_no_bound_without_an_inf_bucket() -> None:
    with pytest.raises(NoBoundError, match=r"no \+Inf bucket"):
        choose_bound([("0.5", 90.0), ("1", 99.5)], 0.99)


def test_counters_and_bound_query_keep_the_matchers() -> None:
    tail = tail_gate().tail
    assert tail is not None
    good, total = counter_templates(tail, "0.5")
    assert good == 'checkout_request_duration_seconds_bucket{variant="{{variant}}", path="/pay", le=~"0\\\\.5"}'
    assert total == 'checkout_request_duration_seconds_count{variant="{{variant}}", path="/pay"}'
    assert bound_query(tail) == (
        'sum by (le) (increase(checkout_request_duration_seconds_bucket{variant="{{variant}}", path="/pay"}[1h]))'
    )
    bare = Gate.model_validate({**tail_gate().model_dump(by_alias=True, exclude_none=True), "tail": {"histogram": "x"}})
    assert bare.tail is not None
    # Every spelling of the bound: as given, as Prometheus 3 stores it, and as the answer had it.
    assert counter_templates(bare.tail, "1", ["1.00", "2"]) == ('x_bucket{le=~"1|1\\\\.0|1\\\\.00"}', "x_count{}")
    with pytest.raises(ValueError):
        counter_templates(bare.tail, "1} or up{")


def reading(canary_slow: int, stable_slow: int, *, intervals: int = 240) -> SignalReading:
    """``canary_slow`` of 400 canary and ``stable_slow`` of 1,600 stable requests slow in every interval."""

    def sample(bad: int, served: float) -> Sample:
        steps = ArmSteps((float(bad),) * intervals, (served,) * intervals)
        return Sample(value=steps.total_bad, samples=steps.total_exposure, steps=steps)

    return SignalReading(
        gate="slow-checkouts",
        canary={SCALAR: sample(canary_slow, 400.0)},
        stable={SCALAR: sample(stable_slow, 1600.0)},
        subject="slower than le=0.5 (stable's 0.99 quantile bucket in the 1h before the evidence began)",
    )


def test_tail_judged_as_slow_requests_per_request_and_says_its_bound() -> None:
    gate = tail_gate()
    healthy = judge_gates([gate], [gate], {gate.name: reading(4, 16)}, canary_share=0.2, alpha=0.01)
    verdict = healthy.verdicts[gate.name]
    assert verdict.verdict == "Pass", verdict.reason
    assert verdict.reason.startswith("slower than le=0.5")
    # 1.25x stable's rate, within the tolerance of 50% more: still a pass.
    assert (
        judge_gates([gate], [gate], {gate.name: reading(5, 16)}, canary_share=0.2, alpha=0.01)
        .verdicts[gate.name]
        .verdict
        == "Pass"
    )
    slow = judge_gates([gate], [gate], {gate.name: reading(12, 16)}, canary_share=0.2, alpha=0.01)
    rejected = slow.verdicts[gate.name]
    assert rejected.verdict == "Fail"
    assert rejected.reason.startswith("slower than le=0.5"), rejected.reason
    assert "e-value" in rejected.reason and "false halts ≤ 0.01 for this rollout" in rejected.reason


def test_requests_without_a_bucket_series_are_an_error_not_all_slow() -> None:
    """A segment that served requests but has no _bucket series at the bound (its pods spell the
    bound otherwise) must not read as every request slow: that would halt a healthy canary."""
    gate = tail_gate()
    counted = {"good": {}, "total": {SCALAR: (100.0, 100.0)}}
    with pytest.raises(QueryError, match="no _bucket series at the bound"):
        exact_samples(gate, counted, 2)  # type: ignore[arg-type]
    fine = exact_samples(gate, {"good": {SCALAR: (99.0, 98.0)}, "total": {SCALAR: (100.0, 100.0)}}, 2)  # type: ignore[arg-type]
    assert fine[SCALAR].value == 3.0 and fine[SCALAR].samples == 200.0
