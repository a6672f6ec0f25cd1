"""Gate evaluation (checkout_gates.gates.evaluate): readings -> verdicts, per segment, worst decides."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from checkout_gates.api.spec import Gate
from checkout_gates.gates.evaluate import MAX_SEGMENTS, evaluate_gate, evaluate_gates, query_window_seconds
from checkout_gates.gates.observations import Sample, Segment, SignalReading

ADYEN: Segment = (("method", "card"), ("provider", "adyen"))
STRIPE: Segment = (("method", "card"), ("provider", "stripe"))
KLARNA: Segment = (("method", "paylater"), ("provider", "klarna"))


def gate(**fields: Any) -> Gate:
    return Gate.model_validate({"name": "g", **fields})


def ratio_gate(**fields: Any) -> Gate:
    base: dict[str, Any] = {
        "name": "auth-approval",
        "ratio": {"good": "good{variant='{{variant}}'}", "total": "total{variant='{{variant}}'}"},
        "segmentBy": ["provider", "method"],
    }
    return Gate.model_validate({**base, **fields})


def ratio(rate: float, total: float) -> Sample:
    """A ratio sample as the adapter builds it: value, samples=total, good, total."""
    good = rate * total
    return Sample(value=rate, samples=total, good=good, total=total)


def counts(good: float, total: float) -> Sample:
    return Sample(value=good / total if total else math.nan, samples=total, good=good, total=total)


def reading(
    canary: dict[Segment, Sample], stable: dict[Segment, Sample] | None = None, *, name: str = "auth-approval"
) -> SignalReading:
    return SignalReading(gate=name, canary=canary, stable=stable or {})


# --- errors and missing data ----------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["inconclusive", "pass", "fail"])
def test_query_error_is_inconclusive_whatever_the_missing_data_policy(policy: str) -> None:
    g = gate(count="x", max=0, onMissingData=policy)
    verdict = evaluate_gate(g, SignalReading(gate="g", error="timeout after 5s"), canary_share=0.1)
    assert verdict.verdict == "Inconclusive"
    assert verdict.reason == "query failed: timeout after 5s"


def test_query_error_wins_over_data() -> None:
    g = gate(count="x", max=0, onMissingData="pass")
    r = SignalReading(gate="g", canary={(): Sample(0.0)}, stable={(): Sample(0.0)}, error="bad PromQL")
    assert evaluate_gate(g, r, canary_share=0.1).verdict == "Inconclusive"


@pytest.mark.parametrize(
    ("policy", "expected"),
    [(None, "Inconclusive"), ("inconclusive", "Inconclusive"), ("pass", "Pass"), ("fail", "Fail")],
)
def test_no_canary_series_follows_on_missing_data(policy: str | None, expected: str) -> None:
    fields: dict[str, Any] = {"count": "x", "max": 0, "critical": True}
    if policy is not None:
        fields["onMissingData"] = policy
    verdict = evaluate_gate(gate(**fields), SignalReading(gate="g", stable={(): Sample(3.0)}), canary_share=0.1)
    assert verdict.verdict == expected
    assert verdict.reason == "no data for canary"
    assert verdict.critical


# --- samples ----------------------------------------------------------------------------------------


def test_below_min_samples_is_inconclusive_with_the_numbers() -> None:
    g = ratio_gate(compare={"maxDrop": "0.5pp"}, minSamples=400)
    verdict = evaluate_gate(g, reading({ADYEN: ratio(0.99, 120)}, {ADYEN: ratio(0.97, 50_000)}), canary_share=0.05)
    assert verdict.verdict == "Inconclusive"
    assert "120 samples < minSamples 400" in verdict.reason
    assert verdict.reason.startswith("method=card,provider=adyen: ")
    assert verdict.samples == 120


def test_below_min_samples_never_fails_a_threshold_gate_either() -> None:
    g = ratio_gate(min=0.99, minSamples=400)
    verdict = evaluate_gate(g, reading({ADYEN: ratio(0.5, 10)}), canary_share=0.05)
    assert verdict.verdict == "Inconclusive"


def test_ratio_samples_are_the_total_not_the_samples_field() -> None:
    g = ratio_gate(min=0.9, minSamples=400)
    sample = Sample(value=0.95, samples=10_000, good=95, total=100)
    verdict = evaluate_gate(g, reading({ADYEN: sample}), canary_share=0.05)
    assert verdict.verdict == "Inconclusive"
    assert "100 samples < minSamples 400" in verdict.reason


def test_ratio_without_total_falls_back_to_samples() -> None:
    g = ratio_gate(min=0.9, minSamples=400)
    verdict = evaluate_gate(g, reading({ADYEN: Sample(value=0.95, samples=1000)}), canary_share=0.05)
    assert verdict.verdict == "Pass"
    assert verdict.samples == 1000


def test_unknown_samples_with_min_samples_is_inconclusive() -> None:
    g = gate(quantile="q", max=2.5, minSamples=100)
    verdict = evaluate_gate(g, reading({(): Sample(0.4)}, name="g"), canary_share=0.05)
    assert verdict.verdict == "Inconclusive"
    assert "minSamples" in verdict.reason


def test_samples_from_the_samples_query_count() -> None:
    g = gate(quantile="q", samples="s", max=2.5, minSamples=100)
    assert evaluate_gate(g, reading({(): Sample(0.4, samples=99)}), canary_share=0.05).verdict == "Inconclusive"
    assert evaluate_gate(g, reading({(): Sample(0.4, samples=100)}), canary_share=0.05).verdict == "Pass"


# --- unusable numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("g", "sample", "words"),
    [
        (gate(count="x", max=3), Sample(math.nan), "canary count is NaN"),
        (gate(count="x", max=3), Sample(math.inf), "canary count is +Inf"),
        (gate(count="x", max=3), Sample(-2.0), "canary count is negative"),
        (gate(gauge="x", max=3), Sample(-math.inf), "canary value is -Inf"),
        (gate(quantile="x", max=3), Sample(0.2, samples=math.nan), "canary samples is NaN"),
        (gate(count="x", max=3), Sample(1.0, samples=-5.0), "canary exposure is negative"),
        (ratio_gate(min=0.9), Sample(-0.2), "canary ratio is negative"),
        (ratio_gate(min=0.9), Sample(1.3), "above 1"),
        (ratio_gate(min=0.9), Sample(math.nan, samples=0, good=0, total=0), "no canary traffic"),
        (ratio_gate(min=0.9), Sample(0.9, good=120, total=100), "exceeds total"),
        (ratio_gate(min=0.9), Sample(None, good=90, total=-100), "canary total is negative"),
        (ratio_gate(min=0.9), Sample(None), "no canary value"),
    ],
)
def test_unusable_numbers_are_inconclusive_with_a_reason(g: Gate, sample: Sample, words: str) -> None:
    verdict = evaluate_gate(g, reading({(): sample}, name=g.name), canary_share=0.1)
    assert verdict.verdict == "Inconclusive"
    assert words in verdict.reason


def test_negative_zero_noise_counts_as_zero() -> None:
    verdict = evaluate_gate(gate(count="x", max=0), reading({(): Sample(-1e-12)}), canary_share=0.1)
    assert verdict.verdict == "Pass"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0])
def test_unusable_stable_baseline_is_inconclusive(bad: float) -> None:
    g = ratio_gate(compare={"maxDrop": "0.5pp"})
    verdict = evaluate_gate(g, reading({ADYEN: ratio(0.97, 1000)}, {ADYEN: Sample(bad)}), canary_share=0.05)
    assert verdict.verdict == "Inconclusive"
    assert "stable" in verdict.reason


def test_ratio_value_is_derived_from_good_and_total() -> None:
    g = ratio_gate(min=0.99)
    verdict = evaluate_gate(g, reading({ADYEN: Sample(None, good=980, total=1000)}), canary_share=0.05)
    assert verdict.verdict == "Fail"
    assert verdict.value == pytest.approx(0.98)


# --- absolute bounds --------------------------------------------------------------------------------


def test_max_bound_fails_when_above() -> None:
    g = gate(count="x", max=0, critical=True)
    verdict = evaluate_gate(g, reading({(): Sample(2.0)}), canary_share=0.01)
    assert verdict.verdict == "Fail"
    assert verdict.critical
    assert verdict.reason == "g 2 is above max 0"
    assert verdict.value == 2.0


def test_min_bound_fails_when_below_and_passes_at_the_bound() -> None:
    g = ratio_gate(min=0.99)
    failed = evaluate_gate(g, reading({ADYEN: ratio(0.985, 1000)}), canary_share=0.05)
    assert failed.verdict == "Fail"
    assert "98.5% is below min 99.0%" in failed.reason
    assert evaluate_gate(g, reading({ADYEN: ratio(0.99, 1000)}), canary_share=0.05).verdict == "Pass"


def test_only_absolute_bounds_need_no_stable_segment() -> None:
    g = gate(gauge="x", max=25)
    verdict = evaluate_gate(g, reading({(): Sample(3.0)}), canary_share=0.1)
    assert verdict.verdict == "Pass"


# --- compare against stable (threshold) ----------------------------------------------------------------


def test_max_drop_in_points_fails_and_reads_well() -> None:
    g = ratio_gate(compare={"maxDrop": "0.5pp"}, minSamples=400)
    verdict = evaluate_gate(g, reading({ADYEN: ratio(0.961, 1240)}, {ADYEN: ratio(0.973, 80_000)}), canary_share=0.05)
    assert verdict.verdict == "Fail"
    assert verdict.reason == (
        "method=card,provider=adyen: auth-approval 96.1% is below stable 97.3% - 0.5pp (limit 96.8%), 1,240 samples"
    )
    assert verdict.segment == "method=card,provider=adyen"
    assert (verdict.value, verdict.baseline, verdict.samples) == (0.961, 0.973, 1240)


def test_max_drop_passes_within_and_exactly_at_the_limit() -> None:
    g = ratio_gate(compare={"maxDrop": "0.5pp"})
    stable = {ADYEN: ratio(0.975, 80_000)}
    assert evaluate_gate(g, reading({ADYEN: ratio(0.972, 2000)}, stable), canary_share=0.05).verdict == "Pass"
    assert evaluate_gate(g, reading({ADYEN: ratio(0.970, 2000)}, stable), canary_share=0.05).verdict == "Pass"
    assert evaluate_gate(g, reading({ADYEN: ratio(0.9699, 2000)}, stable), canary_share=0.05).verdict == "Fail"


def test_reason_shows_enough_digits_to_tell_value_from_limit() -> None:
    g = ratio_gate(compare={"maxDrop": "0.5pp"})
    verdict = evaluate_gate(g, reading({ADYEN: ratio(0.9679, 2000)}, {ADYEN: ratio(0.973, 80_000)}), canary_share=0.05)
    assert verdict.verdict == "Fail"
    assert "96.79%" in verdict.reason and "(limit 96.80%)" in verdict.reason


def test_max_rise_relative_on_a_quantile() -> None:
    g = gate(quantile="q", compare={"maxRise": "20%"})
    stable: dict[Segment, Sample] = {(): Sample(0.500)}
    assert evaluate_gate(g, reading({(): Sample(0.59)}, stable), canary_share=0.1).verdict == "Pass"
    failed = evaluate_gate(g, reading({(): Sample(0.65)}, stable), canary_share=0.1)
    assert failed.verdict == "Fail"
    assert failed.reason == "g 0.65 is above stable 0.5 + 20% (limit 0.6)"


def test_max_rise_absolute_on_a_gauge_and_max_drop_on_a_gauge() -> None:
    rise = gate(gauge="x", compare={"maxRise": "5"})
    assert evaluate_gate(rise, reading({(): Sample(16)}, {(): Sample(10)}), canary_share=0.1).verdict == "Fail"
    assert evaluate_gate(rise, reading({(): Sample(15)}, {(): Sample(10)}), canary_share=0.1).verdict == "Pass"
    drop = gate(gauge="x", compare={"maxDrop": "10%"})
    assert evaluate_gate(drop, reading({(): Sample(85)}, {(): Sample(100)}), canary_share=0.1).verdict == "Fail"


def test_max_rise_applies_to_a_ratio_too() -> None:
    g = ratio_gate(compare={"maxRise": "1pp"})
    verdict = evaluate_gate(g, reading({ADYEN: ratio(0.12, 5000)}, {ADYEN: ratio(0.10, 50_000)}), canary_share=0.1)
    assert verdict.verdict == "Fail"


def test_missing_stable_segment_with_compare_is_inconclusive() -> None:
    g = ratio_gate(compare={"maxDrop": "0.5pp"})
    verdict = evaluate_gate(g, reading({ADYEN: ratio(0.97, 1000)}, {STRIPE: ratio(0.97, 1000)}), canary_share=0.05)
    assert verdict.verdict == "Inconclusive"
    assert verdict.reason == "no stable baseline for segment method=card,provider=adyen"


def test_missing_stable_segment_still_fails_an_absolute_bound() -> None:
    g = ratio_gate(min=0.99, compare={"maxDrop": "0.5pp"})
    verdict = evaluate_gate(g, reading({ADYEN: ratio(0.90, 1000)}), canary_share=0.05)
    assert verdict.verdict == "Fail"
    assert "below min" in verdict.reason


def test_count_compare_uses_rates_per_exposure_when_both_arms_have_it() -> None:
    g = gate(count="x", exposure="e", compare={"maxRise": "50%"})
    # 10 in 1,000 (1%) vs 500 in 100,000 (0.5%): double the rate, although the raw count is far lower.
    failed = evaluate_gate(
        g, reading({(): Sample(10, samples=1000)}, {(): Sample(500, samples=100_000)}), canary_share=0.5
    )
    assert failed.verdict == "Fail"
    assert failed.value == pytest.approx(0.01) and failed.baseline == pytest.approx(0.005)
    assert "per request" in failed.reason
    same = evaluate_gate(
        g, reading({(): Sample(5, samples=1000)}, {(): Sample(500, samples=100_000)}), canary_share=0.5
    )
    assert same.verdict == "Pass"


def test_count_compare_uses_traffic_share_without_exposure() -> None:
    g = gate(count="x", compare={"maxRise": "20%"})
    # At 10% canary, 3 vs 20 is 30 vs 22.2 at full traffic: a 35% rise.
    failed = evaluate_gate(g, reading({(): Sample(3)}, {(): Sample(20)}), canary_share=0.1)
    assert failed.verdict == "Fail"
    assert failed.value == pytest.approx(30.0) and failed.baseline == pytest.approx(20 / 0.9)
    assert evaluate_gate(g, reading({(): Sample(2)}, {(): Sample(20)}), canary_share=0.1).verdict == "Pass"


@pytest.mark.parametrize("share", [0.0, 1.0, math.nan, -0.5])
def test_count_compare_with_an_unusable_share_is_inconclusive(share: float) -> None:
    g = gate(count="x", compare={"maxRise": "20%"})
    verdict = evaluate_gate(g, reading({(): Sample(3)}, {(): Sample(20)}), canary_share=share)
    assert verdict.verdict == "Inconclusive"
    assert "share" in verdict.reason


def test_count_compare_with_zero_exposure_is_inconclusive() -> None:
    g = gate(count="x", exposure="e", compare={"maxRise": "20%"})
    verdict = evaluate_gate(g, reading({(): Sample(0, samples=0)}, {(): Sample(5, samples=100)}), canary_share=0.1)
    assert verdict.verdict == "Inconclusive"
    assert "exposure is 0" in verdict.reason


# --- segments: worst decides -------------------------------------------------------------------------


def test_worst_failing_segment_is_named() -> None:
    g = ratio_gate(compare={"maxDrop": "0.5pp"})
    canary = {ADYEN: ratio(0.962, 2000), STRIPE: ratio(0.90, 2000), KLARNA: ratio(0.975, 2000)}
    stable = {seg: ratio(0.975, 100_000) for seg in canary}
    verdict = evaluate_gate(g, reading(canary, stable), canary_share=0.05)
    assert verdict.verdict == "Fail"
    assert verdict.segment == "method=card,provider=stripe"
    assert verdict.reason.startswith("method=card,provider=stripe: auth-approval 90.0% is below stable 97.5%")
    assert verdict.reason.endswith("; 2 of 3 segments fail")
    assert [s.segment for s in verdict.segments] == [
        "method=card,provider=stripe",
        "method=card,provider=adyen",
        "method=paylater,provider=klarna",
    ]
    assert verdict.segments[0].severity > verdict.segments[1].severity > 0
    assert verdict.segments[2].severity == 0


def test_fail_beats_inconclusive_beats_pass() -> None:
    g = ratio_gate(compare={"maxDrop": "0.5pp"}, minSamples=400)
    stable = {seg: ratio(0.975, 100_000) for seg in (ADYEN, STRIPE, KLARNA)}
    incon_and_pass = {ADYEN: ratio(0.975, 1000), STRIPE: ratio(0.975, 100)}
    verdict = evaluate_gate(g, reading(incon_and_pass, stable), canary_share=0.05)
    assert verdict.verdict == "Inconclusive"
    assert verdict.segment == "method=card,provider=stripe"
    assert verdict.reason.endswith("; 1 of 2 segments inconclusive")
    verdict = evaluate_gate(g, reading({**incon_and_pass, KLARNA: ratio(0.95, 1000)}, stable), canary_share=0.05)
    assert verdict.verdict == "Fail"
    assert [s.verdict for s in verdict.segments] == ["Fail", "Inconclusive", "Pass"]


def test_all_pass_names_the_closest_segment() -> None:
    g = ratio_gate(compare={"maxDrop": "1pp"})
    canary = {ADYEN: ratio(0.975, 1000), STRIPE: ratio(0.967, 1000)}
    stable = {seg: ratio(0.975, 100_000) for seg in canary}
    verdict = evaluate_gate(g, reading(canary, stable), canary_share=0.05)
    assert verdict.verdict == "Pass"
    assert verdict.segment == "method=card,provider=stripe"
    assert verdict.reason.endswith("; all 2 segments pass")


def test_segments_are_capped() -> None:
    g = ratio_gate(min=0.9)
    canary: dict[Segment, Sample] = {(("provider", f"p{i:02d}"),): ratio(0.5 + i / 100, 1000) for i in range(30)}
    verdict = evaluate_gate(g, reading(canary), canary_share=0.05)
    assert len(verdict.segments) == MAX_SEGMENTS
    assert verdict.segment == "provider=p00"  # furthest below min 0.9
    assert verdict.reason.endswith("; 30 of 30 segments fail")
    severities = [s.severity for s in verdict.segments]
    assert severities == sorted(severities, reverse=True)


def test_scalar_segment_reason_has_no_prefix() -> None:
    verdict = evaluate_gate(gate(count="x", max=0), reading({(): Sample(1)}), canary_share=0.1)
    assert verdict.segment == "all"
    assert verdict.reason == "g 1 is above max 0"


# --- sequential --------------------------------------------------------------------------------------


def seq_gate(**fields: Any) -> Gate:
    return ratio_gate(method="sequential", alpha=0.01, **fields)


def test_sequential_clear_regression_fails_with_the_evidence_in_the_reason() -> None:
    g = seq_gate(compare={"maxDrop": "0.5pp"}, minSamples=400)
    # Canary 6% bad vs stable 3%: twice the failures.
    r = reading({ADYEN: counts(9400, 10_000)}, {ADYEN: counts(194_000, 200_000)})
    verdict = evaluate_gate(g, r, canary_share=0.05)
    assert verdict.verdict == "Fail"
    assert "e-value" in verdict.reason and "≥ 100 (1/alpha)" in verdict.reason
    assert "as often as stable" in verdict.reason  # the relative-risk estimate
    assert "600 vs 6000 bad events" in verdict.reason
    assert verdict.reason.startswith("method=card,provider=adyen: auth-approval 94.0% vs stable 97.0%")
    assert verdict.segments[0].severity > math.log(100)


def test_sequential_equal_arms_pass() -> None:
    g = seq_gate(compare={"maxDrop": "0.5pp"}, minSamples=400)
    r = reading({ADYEN: counts(9700, 10_000)}, {ADYEN: counts(194_000, 200_000)})
    verdict = evaluate_gate(g, r, canary_share=0.05)
    assert verdict.verdict == "Pass"
    assert "< 100 (1/alpha)" in verdict.reason


def test_sequential_equal_arms_pass_without_a_tolerance() -> None:
    g = seq_gate(min=0.5)
    r = reading({ADYEN: counts(9700, 10_000)}, {ADYEN: counts(194_000, 200_000)})
    assert evaluate_gate(g, r, canary_share=0.05).verdict == "Pass"


@pytest.mark.parametrize("scale", [1, 5, 20])
def test_sequential_canary_exactly_at_the_pp_margin_does_not_fail(scale: int) -> None:
    g = seq_gate(compare={"maxDrop": "0.5pp"})
    # Stable 3% bad, canary 3.5% bad: exactly 0.5pp worse, which the tolerance allows.
    r = reading({ADYEN: counts(9650 * scale, 10_000 * scale)}, {ADYEN: counts(97_000 * scale, 100_000 * scale)})
    assert evaluate_gate(g, r, canary_share=0.1).verdict == "Pass"
    # Without the margin the same data is a regression at the larger sizes.
    strict = seq_gate(compare={"maxDrop": "0pp"})
    if scale == 20:
        assert evaluate_gate(strict, r, canary_share=0.1).verdict == "Fail"


def test_sequential_well_past_the_margin_fails() -> None:
    g = seq_gate(compare={"maxDrop": "0.5pp"})
    # Stable 3% bad, canary 5% bad: 2pp worse, four times the margin.
    r = reading({ADYEN: counts(19_000, 20_000)}, {ADYEN: counts(194_000, 200_000)})
    assert evaluate_gate(g, r, canary_share=0.1).verdict == "Fail"


def test_sequential_gross_regression_fails_below_min_samples() -> None:
    # Anytime-valid: a rejection is trustworthy at any size, and halting early limits the blast radius.
    g = seq_gate(compare={"maxDrop": "0.5pp"}, minSamples=400)
    r = reading({ADYEN: counts(100, 200)}, {ADYEN: counts(194_000, 200_000)})
    verdict = evaluate_gate(g, r, canary_share=0.001)
    assert verdict.verdict == "Fail"


def test_sequential_below_min_samples_without_rejection_is_inconclusive() -> None:
    g = seq_gate(compare={"maxDrop": "0.5pp"}, minSamples=400)
    r = reading({ADYEN: counts(194, 200)}, {ADYEN: counts(194_000, 200_000)})
    verdict = evaluate_gate(g, r, canary_share=0.001)
    assert verdict.verdict == "Inconclusive"
    assert verdict.reason.startswith("method=card,provider=adyen: 200 samples < minSamples 400")


def test_sequential_without_stable_bad_events_passes_a_clean_canary() -> None:
    g = seq_gate(compare={"maxDrop": "1pp"}, minSamples=100)
    r = reading({ADYEN: counts(500, 500)}, {ADYEN: counts(20_000, 20_000)})
    assert evaluate_gate(g, r, canary_share=0.025).verdict == "Pass"


def test_sequential_missing_stable_segment_is_inconclusive() -> None:
    g = seq_gate(compare={"maxDrop": "0.5pp"})
    verdict = evaluate_gate(g, reading({ADYEN: counts(970, 1000)}, {STRIPE: counts(970, 1000)}), canary_share=0.05)
    assert verdict.verdict == "Inconclusive"
    assert "no stable baseline for segment method=card,provider=adyen" in verdict.reason


def test_sequential_ratio_needs_counts() -> None:
    g = seq_gate(compare={"maxDrop": "0.5pp"})
    verdict = evaluate_gate(g, reading({ADYEN: Sample(0.97)}, {ADYEN: Sample(0.97)}), canary_share=0.05)
    assert verdict.verdict == "Inconclusive"
    assert "good and total" in verdict.reason


def test_sequential_count_with_exposure() -> None:
    g = gate(count="x", exposure="e", compare={"maxRise": "0%"}, method="sequential")
    regressed = reading({(): Sample(40, samples=10_000)}, {(): Sample(100, samples=100_000)}, name="g")
    verdict = evaluate_gate(g, regressed, canary_share=0.5)  # the share is ignored: exposures are known
    assert verdict.verdict == "Fail"
    assert verdict.value == pytest.approx(0.004) and verdict.baseline == pytest.approx(0.001)
    same = reading({(): Sample(10, samples=10_000)}, {(): Sample(100, samples=100_000)}, name="g")
    assert evaluate_gate(g, same, canary_share=0.5).verdict == "Pass"


def test_sequential_count_relative_tolerance() -> None:
    g = gate(count="x", exposure="e", compare={"maxRise": "100%"}, method="sequential")
    # Exactly twice the stable rate is what 100% tolerates.
    r = reading({(): Sample(200, samples=100_000)}, {(): Sample(1000, samples=1_000_000)}, name="g")
    assert evaluate_gate(g, r, canary_share=0.1).verdict == "Pass"
    g0 = gate(count="x", exposure="e", compare={"maxRise": "0%"}, method="sequential")
    assert evaluate_gate(g0, r, canary_share=0.1).verdict == "Fail"


def test_sequential_count_without_exposure_uses_the_share() -> None:
    g = gate(count="x", compare={"maxRise": "0%"}, method="sequential")
    r = reading({(): Sample(30)}, {(): Sample(90)}, name="g")  # 30 at 10% vs 90 at 90%: 3x the rate
    assert evaluate_gate(g, r, canary_share=0.1).verdict == "Fail"
    assert evaluate_gate(g, r, canary_share=0.25).verdict == "Pass"  # 30 at 25% vs 90 at 75%: equal
    broken = evaluate_gate(g, r, canary_share=1.0)
    assert broken.verdict == "Inconclusive"
    assert "share" in broken.reason


def test_sequential_keeps_absolute_bounds() -> None:
    g = gate(count="x", exposure="e", compare={"maxRise": "0%"}, max=0, method="sequential", critical=True)
    r = reading({(): Sample(1, samples=10_000)}, {(): Sample(0, samples=100_000)}, name="g")
    verdict = evaluate_gate(g, r, canary_share=0.1)
    assert verdict.verdict == "Fail"
    assert verdict.critical
    assert "above max 0" in verdict.reason


@pytest.mark.parametrize("bad", [math.nan, math.inf, -5.0])
def test_sequential_bad_stable_numbers_are_inconclusive(bad: float) -> None:
    g = seq_gate(compare={"maxDrop": "0.5pp"})
    r = reading({ADYEN: counts(970, 1000)}, {ADYEN: Sample(0.97, good=bad, total=1000)})
    verdict = evaluate_gate(g, r, canary_share=0.05)
    assert verdict.verdict == "Inconclusive"
    assert "stable good count" in verdict.reason


# --- several gates and query windows ----------------------------------------------------------------------


def test_evaluate_gates_marks_gates_without_a_reading() -> None:
    dup = gate(count="x", max=0, critical=True)
    dup = Gate.model_validate({**dup.to_wire(), "name": "dup"})
    lat = Gate.model_validate({"name": "lat", "quantile": "q", "max": 2.5})
    verdicts = evaluate_gates([dup, lat], {"lat": reading({(): Sample(0.3)}, name="lat")}, canary_share=0.1)
    assert list(verdicts) == ["dup", "lat"]
    assert verdicts["dup"].verdict == "Inconclusive"
    assert verdicts["dup"].reason == "not evaluated"
    assert verdicts["dup"].critical
    assert verdicts["lat"].verdict == "Pass"


def test_query_window_seconds() -> None:
    threshold = gate(count="x", max=0)
    assert query_window_seconds(threshold, interval_seconds=30, step_elapsed_seconds=600) == 30
    windowed = gate(count="x", max=0, window="5m")
    assert query_window_seconds(windowed, interval_seconds=30, step_elapsed_seconds=600) == 300
    sequential = seq_gate(compare={"maxDrop": "0.5pp"})
    assert query_window_seconds(sequential, interval_seconds=30, step_elapsed_seconds=600) == 600
    assert query_window_seconds(sequential, interval_seconds=30, step_elapsed_seconds=4) == 30


# --- properties ---------------------------------------------------------------------------------------

any_float = st.floats(allow_nan=True, allow_infinity=True)
maybe_float = st.none() | any_float | st.floats(min_value=0, max_value=1e6)


@st.composite
def gates(draw: st.DrawFn) -> Gate:
    kind = draw(st.sampled_from(["ratio", "count", "quantile", "gauge"]))
    fields: dict[str, Any] = {"name": "g"}
    if kind == "ratio":
        fields["ratio"] = {"good": "g", "total": "t"}
    else:
        fields[kind] = "q"
    if kind != "ratio" and draw(st.booleans()):
        fields["exposure" if kind == "count" else "samples"] = "s"
    method = draw(st.sampled_from(["threshold", "sequential"])) if kind in ("ratio", "count") else "threshold"
    fields["method"] = method
    bound = st.floats(min_value=-10, max_value=1000, allow_nan=False)
    low, high = draw(st.none() | bound), draw(st.none() | bound)
    if low is not None and high is not None and low > high:
        low, high = high, low
    if low is not None:
        fields["min"] = low
    if high is not None:
        fields["max"] = high
    units = ["", "%", "pp"] if kind == "ratio" else ["", "%"]
    tolerance = st.builds(lambda v, u: f"{v}{u}", st.sampled_from(["0", "0.5", "1", "20"]), st.sampled_from(units))
    drop, rise = draw(st.none() | tolerance), draw(st.none() | tolerance)
    if drop is not None or rise is not None:
        fields["compare"] = {k: v for k, v in (("maxDrop", drop), ("maxRise", rise)) if v is not None}
    if "min" not in fields and "max" not in fields and "compare" not in fields:
        fields["max"] = 0
    fields["minSamples"] = draw(st.integers(min_value=0, max_value=1000))
    fields["onMissingData"] = draw(st.sampled_from(["inconclusive", "pass", "fail"]))
    fields["alpha"] = draw(st.sampled_from([0.01, 0.05, 0.5]))
    return Gate.model_validate(fields)


samples_st = st.builds(Sample, value=maybe_float, samples=maybe_float, good=maybe_float, total=maybe_float)
segments_st = st.sampled_from([(), ADYEN, STRIPE, KLARNA])
share_st = st.floats(min_value=0, max_value=1) | any_float


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    g=gates(),
    canary=st.dictionaries(segments_st, samples_st, max_size=4),
    stable=st.dictionaries(segments_st, samples_st, max_size=4),
    share=share_st,
)
def test_property_never_raises_and_verdict_is_one_of_three(
    g: Gate, canary: dict[Segment, Sample], stable: dict[Segment, Sample], share: float
) -> None:
    verdict = evaluate_gate(g, reading(canary, stable, name="g"), canary_share=share)
    assert verdict.verdict in ("Pass", "Fail", "Inconclusive")
    assert verdict.gate == "g"
    assert len(verdict.segments) == len(canary)
    for result in verdict.segments:
        assert math.isfinite(result.severity)
    if canary:
        assert verdict.segments[0].verdict == verdict.verdict


@st.composite
def too_few(draw: st.DrawFn, gate_st: st.SearchStrategy[Gate]) -> tuple[Gate, Sample]:
    """A gate with minSamples > 0 and a canary sample with fewer (or unknown) samples."""
    g = draw(gate_st)
    minimum = draw(st.integers(min_value=1, max_value=1000))
    g = Gate.model_validate({**g.to_wire(), "minSamples": minimum})
    below = st.none() | st.floats(min_value=0, max_value=minimum, exclude_max=True)
    n = draw(below)
    value = draw(maybe_float)
    if g.signal_kind == "ratio":
        # A ratio's samples are its total (or the samples field when the total is absent).
        return g, Sample(value=value, samples=draw(below), good=draw(maybe_float), total=n)
    return g, Sample(value=value, samples=n)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(case=too_few(gates()), segment=segments_st, stable=samples_st, share=share_st)
def test_property_below_min_samples_never_passes(
    case: tuple[Gate, Sample], segment: Segment, stable: Sample, share: float
) -> None:
    g, sample = case
    verdict = evaluate_gate(g, reading({segment: sample}, {segment: stable}, name="g"), canary_share=share)
    assert verdict.verdict != "Pass"


@settings(max_examples=200, deadline=None)
@given(g=gates(), error=st.text(max_size=20), canary=st.dictionaries(segments_st, samples_st, max_size=3))
def test_property_query_error_is_always_inconclusive(g: Gate, error: str, canary: dict[Segment, Sample]) -> None:
    r = SignalReading(gate="g", canary=canary, stable=canary, error=error)
    assert evaluate_gate(g, r, canary_share=0.1).verdict == "Inconclusive"
