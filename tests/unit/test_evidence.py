"""The carried e-process (gates/evidence.py) and the rollout's one budget (gates/budget.py)."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from checkout_gates.api.spec import Gate
from checkout_gates.gates.budget import guarantee, judge_gates
from checkout_gates.gates.evidence import (
    NullRisk,
    gate_evidence,
    gate_evidence_path,
    relative_risk_lower_bound,
    rollout_evidence,
)
from checkout_gates.gates.observations import ArmSteps, Sample, SignalReading
from checkout_gates.gates.sequential import ArmCounts, sequential_evidence

SCALAR = ()
CARD = (("provider", "adyen"),)
WALLET = (("provider", "paypal"),)


def _one(null: float = 1.0) -> NullRisk:
    return lambda rate: null


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method is fine for the small means of these tests.
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), min_size=1, max_size=12),
    st.floats(0.02, 0.6),
)
def test_at_one_share_the_intervals_add_up_to_the_one_batch_test(batches: list[tuple[int, int]], share: float) -> None:
    """With the share constant, folding interval by interval is the one-shot mixture test: the
    likelihood ratio of a batch is the product of its parts'."""
    exposure_c, exposure_s = 1000.0 * share, 1000.0 * (1.0 - share)
    canary = ArmSteps(tuple(float(c) for c, _ in batches), (exposure_c,) * len(batches))
    stable = ArmSteps(tuple(float(s) for _, s in batches), (exposure_s,) * len(batches))
    folded = gate_evidence("g", {SCALAR: canary}, {SCALAR: stable}, null_for=_one(), segmented=False)
    whole = sequential_evidence(
        ArmCounts(canary.total_bad, exposure_c * len(batches)), ArmCounts(stable.total_bad, exposure_s * len(batches))
    )
    assert math.isclose(folded.log_e_value, whole.log_e_value, rel_tol=1e-9, abs_tol=1e-9)


def test_evidence_is_carried_across_share_changes_and_stays_valid() -> None:
    """A/A at 5% -> 25% -> 50%: the share changes between intervals, each interval weighed at its
    own share. False rejections of the whole run stay under alpha (seeded: the same draws every time)."""
    rng = random.Random(20261201)
    alpha, runs, rejected = 0.05, 2000, 0
    shares = [0.05] * 20 + [0.25] * 20 + [0.5] * 20
    for _ in range(runs):
        canary_bad, stable_bad, canary_exposure, stable_exposure = [], [], [], []
        for share in shares:
            requests = 400.0
            canary_exposure.append(requests * share)
            stable_exposure.append(requests * (1 - share))
            canary_bad.append(float(_poisson(rng, requests * share * 0.03)))
            stable_bad.append(float(_poisson(rng, requests * (1 - share) * 0.03)))
        _, path = gate_evidence_path(
            "g",
            {SCALAR: ArmSteps(tuple(canary_bad), tuple(canary_exposure))},
            {SCALAR: ArmSteps(tuple(stable_bad), tuple(stable_exposure))},
            null_for=_one(),
            segmented=False,
        )
        rejected += max(path) >= -math.log(alpha)  # looked at after every interval
    assert rejected / runs <= alpha


def test_a_regression_seen_at_low_exposure_is_not_thrown_away_at_the_next_step() -> None:
    """The canary fails twice as often; the evidence of the 5% intervals is still there at 25%."""
    five = ArmSteps((6.0,) * 10, (100.0,) * 10)
    five_stable = ArmSteps((57.0,) * 10, (1900.0,) * 10)
    both = gate_evidence(
        "g",
        {SCALAR: ArmSteps((*five.bad, 30.0), (*five.exposure, 500.0))},
        {SCALAR: ArmSteps((*five_stable.bad, 45.0), (*five_stable.exposure, 1500.0))},
        null_for=_one(),
        segmented=False,
    )
    later_only = gate_evidence(
        "g",
        {SCALAR: ArmSteps((30.0,), (500.0,))},
        {SCALAR: ArmSteps((45.0,), (1500.0,))},
        null_for=_one(),
        segmented=False,
    )
    assert both.log_e_value > later_only.log_e_value + 3.0


def test_a_segment_that_appears_late_enters_at_the_average_so_far() -> None:
    quiet = ArmSteps((1.0, 1.0, 1.0), (100.0, 100.0, 100.0))
    quiet_stable = ArmSteps((30.0, 30.0, 30.0), (1900.0, 1900.0, 1900.0))
    late = ArmSteps((0.0, 0.0, 5.0), (0.0, 0.0, 100.0))
    late_stable = ArmSteps((0.0, 0.0, 30.0), (0.0, 0.0, 1900.0))
    evidence = gate_evidence(
        "g", {CARD: quiet, WALLET: late}, {CARD: quiet_stable, WALLET: late_stable}, null_for=_one(), segmented=True
    )
    card, wallet = evidence.segments[CARD], evidence.segments[WALLET]
    assert card.log_start == 0.0
    # It entered at the card segment's wealth after two intervals (below 1: few canary failures).
    two = gate_evidence(
        "g",
        {CARD: ArmSteps(quiet.bad[:2], quiet.exposure[:2])},
        {CARD: ArmSteps(quiet_stable.bad[:2], quiet_stable.exposure[:2])},
        null_for=_one(),
        segmented=False,
    )
    assert math.isclose(wallet.log_start, two.log_e_value)
    assert wallet.log_start < 0.0
    assert evidence.blamed()[0] == WALLET


def test_unusable_intervals_are_skipped_and_said() -> None:
    evidence = gate_evidence(
        "g",
        {SCALAR: ArmSteps((1.0, math.nan, -5.0, 2.0), (100.0, 100.0, 100.0, 100.0))},
        {SCALAR: ArmSteps((3.0, 3.0, 3.0, 3.0), (900.0, 900.0, 900.0, 900.0))},
        null_for=_one(),
        segmented=False,
    )
    assert evidence.pooled.used == 2
    assert evidence.pooled.skipped == 2
    assert evidence.pooled.problem is not None and "canary bad count is nan" in evidence.pooled.problem


def test_bad_events_with_no_exposure_on_their_arm_are_not_evidence() -> None:
    evidence = gate_evidence(
        "g", {SCALAR: ArmSteps((4.0,), (0.0,))}, {SCALAR: ArmSteps((3.0,), (900.0,))}, null_for=_one(), segmented=False
    )
    assert evidence.log_e_value == 0.0
    assert evidence.pooled.problem is not None and "no exposure" in evidence.pooled.problem


def test_a_gate_not_read_counts_zero_and_the_average_is_over_the_declared_gates() -> None:
    strong = gate_evidence(
        "dup",
        {SCALAR: ArmSteps((40.0,), (1000.0,))},
        {SCALAR: ArmSteps((20.0,), (9000.0,))},
        null_for=_one(),
        segmented=False,
    )
    alone = rollout_evidence({"dup": strong}, budgeted_gates=1, alpha=0.01)
    shared = rollout_evidence({"dup": strong}, budgeted_gates=3, alpha=0.01)
    assert math.isclose(alone.log_e_value - shared.log_e_value, math.log(3.0))


def _gate(name: str, **extra: object) -> Gate:
    return Gate.model_validate(
        {
            "name": name,
            "ratio": {
                "good": f'{name}_ok{{variant="{{{{variant}}}}"}}',
                "total": f'{name}{{variant="{{{{variant}}}}"}}',
            },
            "compare": {"maxDrop": "0pp"},
            "method": "sequential",
            "counts": "exact",
            "segmentBy": ["provider"],
            **extra,
        }
    )


def _reading(name: str, canary_bad: float, stable_bad: float) -> SignalReading:
    def sample(bad: float, total: float) -> Sample:
        return Sample(
            value=(total - bad) / total, samples=total, good=total - bad, total=total, steps=ArmSteps((bad,), (total,))
        )

    return SignalReading(
        gate=name,
        canary={CARD: sample(canary_bad, 1000.0), WALLET: sample(30.0, 1000.0)},
        stable={CARD: sample(stable_bad, 9000.0), WALLET: sample(270.0, 9000.0)},
    )


def test_the_rollout_budget_halts_on_the_gate_and_segment_that_carry_the_evidence() -> None:
    auth, refunds = _gate("auth"), _gate("refunds")
    readings = {"auth": _reading("auth", 90.0, 270.0), "refunds": _reading("refunds", 30.0, 270.0)}
    judgement = judge_gates([auth, refunds], [auth, refunds], readings, canary_share=0.1, alpha=0.01)
    verdict = judgement.verdicts["auth"]
    assert verdict.verdict == "Fail"
    assert verdict.segment == "provider=adyen"
    assert "false halts ≤ 0.01 for this rollout" in verdict.reason
    assert verdict.reason.startswith("e-value ") and " ≥ 100 (false halts" in verdict.reason
    assert judgement.verdicts["refunds"].verdict == "Pass"
    assert judgement.rollout is not None and judgement.rollout.rejects


def test_healthy_gates_pass_and_the_status_says_which_bound_holds() -> None:
    auth, refunds = _gate("auth"), _gate("refunds", alpha=0.001)
    readings = {"auth": _reading("auth", 30.0, 270.0), "refunds": _reading("refunds", 30.0, 270.0)}
    judgement = judge_gates([auth, refunds], [auth, refunds], readings, canary_share=0.1, alpha=0.01)
    assert {v.verdict for v in judgement.verdicts.values()} == {"Pass"}
    text = guarantee([auth, refunds], alpha=0.01)
    assert text.startswith("false halts ≤ 0.01 for this rollout over auth")
    assert "refunds" in text.split(";")[1]


def test_an_alpha_override_spends_its_own_budget() -> None:
    refunds = _gate("refunds", alpha=0.2)
    readings = {"refunds": _reading("refunds", 70.0, 270.0)}
    judgement = judge_gates([refunds], [refunds], readings, canary_share=0.1, alpha=0.0001)
    assert judgement.rollout is None
    assert judgement.verdicts["refunds"].verdict == "Fail"
    assert "for gate refunds" in judgement.verdicts["refunds"].reason


def test_the_path_ends_where_the_fold_ends() -> None:
    canary = ArmSteps((1.0, 9.0, 4.0), (100.0, 300.0, 300.0))
    stable = ArmSteps((20.0, 22.0, 25.0), (1900.0, 700.0, 700.0))
    evidence, path = gate_evidence_path("g", {CARD: canary}, {CARD: stable}, null_for=_one(), segmented=True)
    assert len(path) == 3
    assert path[-1] == evidence.log_e_value
    for end in (1, 2):
        prefix = gate_evidence(
            "g",
            {CARD: ArmSteps(canary.bad[:end], canary.exposure[:end])},
            {CARD: ArmSteps(stable.bad[:end], stable.exposure[:end])},
            null_for=_one(),
            segmented=True,
        )
        assert math.isclose(path[end - 1], prefix.log_e_value)


def test_the_lower_bound_of_the_relative_risk_is_below_the_estimate_and_above_one_when_rejected() -> None:
    canary = ArmSteps((20.0, 25.0, 30.0), (500.0, 500.0, 500.0))  # 5% failing
    stable = ArmSteps((40.0, 38.0, 42.0), (2000.0, 2000.0, 2000.0))  # 2% failing: 2.5x
    bound = relative_risk_lower_bound(canary, stable, alpha=0.01)
    assert bound is not None and 1.2 < bound < 2.5
    stricter = relative_risk_lower_bound(canary, stable, alpha=0.001)
    assert stricter is not None and stricter < bound  # more confidence, a lower floor
    healthy = relative_risk_lower_bound(
        ArmSteps((10.0, 10.0), (500.0, 500.0)), ArmSteps((40.0, 40.0), (2000.0, 2000.0)), alpha=0.01
    )
    assert healthy is None or healthy < 1.0  # nothing says a canary failing as often as stable is worse


def test_a_rejection_says_how_much_worse_the_canary_is_at_least() -> None:
    auth = _gate("auth")
    judgement = judge_gates([auth], [auth], {"auth": _reading("auth", 90.0, 270.0)}, canary_share=0.1, alpha=0.01)
    reason = judgement.verdicts["auth"].reason
    assert "canary's relative risk ≥ " in reason and "anytime-valid bound" in reason


def test_the_pooled_test_is_stratified_so_different_shares_per_segment_are_no_regression() -> None:
    """Found in review: summing each arm over segments compares mixtures of different base rates at
    different shares (Simpson). Two segments at 2% and 10% declines, identical arms, the canary at
    20% of one and 30% of the other: summed, the canary looks 1.2x worse; stratified it is not."""
    intervals = 60
    low = (ArmSteps((4.0,) * intervals, (200.0,) * intervals), ArmSteps((16.0,) * intervals, (800.0,) * intervals))
    high = (ArmSteps((30.0,) * intervals, (300.0,) * intervals), ArmSteps((70.0,) * intervals, (700.0,) * intervals))
    evidence = gate_evidence(
        "g", {CARD: low[0], WALLET: high[0]}, {CARD: low[1], WALLET: high[1]}, null_for=_one(), segmented=True
    )
    assert evidence.pooled.log_e_value < 0.0
    assert evidence.log_e_value < 0.0
    summed = gate_evidence(
        "g",
        {SCALAR: ArmSteps((34.0,) * intervals, (500.0,) * intervals)},
        {SCALAR: ArmSteps((86.0,) * intervals, (1500.0,) * intervals)},
        null_for=_one(),
        segmented=False,
    )
    assert summed.log_e_value > -math.log(0.01), "what the summed test would have concluded"


def test_a_spread_regression_is_blamed_on_the_pooled_test_not_on_one_segment() -> None:
    worse = ArmSteps((8.0,) * 10, (200.0,) * 10)
    usual = ArmSteps((16.0,) * 10, (800.0,) * 10)
    segments = {(("provider", f"p{i}"),): worse for i in range(9)}
    stables = {(("provider", f"p{i}"),): usual for i in range(9)}
    evidence = gate_evidence("g", segments, stables, null_for=_one(), segmented=True)
    segment, blamed = evidence.blamed()
    assert segment is None and blamed is evidence.pooled


def test_a_segment_with_little_or_no_canary_traffic_does_not_hold_the_step() -> None:
    """minSamples counts the gate's canary traffic; a small segment below it, or one with no
    interval of traffic on both arms yet, passes with its evidence carried (found in review)."""
    auth = _gate("auth", minSamples=500)

    def sample(bad: float, total: float) -> Sample:
        value = (total - bad) / total if total else None
        return Sample(value=value, samples=total, good=total - bad, total=total, steps=ArmSteps((bad,), (total,)))

    reading = SignalReading(
        gate="auth",
        canary={CARD: sample(30.0, 1000.0), WALLET: sample(1.0, 20.0), SCALAR: sample(0.0, 0.0)},
        stable={CARD: sample(270.0, 9000.0), WALLET: sample(9.0, 180.0), SCALAR: sample(3.0, 100.0)},
    )
    judgement = judge_gates([auth], [auth], {"auth": reading}, canary_share=0.1, alpha=0.01)
    verdict = judgement.verdicts["auth"]
    assert verdict.verdict == "Pass", verdict.reason
    reasons = {result.segment: result.reason for result in verdict.segments}
    assert "this segment: 20 samples < minSamples 500, its evidence carried" in reasons["provider=paypal"]
    assert "no canary traffic in this segment yet, its evidence carried" in reasons["all"]
    few = judge_gates(
        [auth],
        [auth],
        {"auth": SignalReading("auth", canary={CARD: sample(3.0, 100.0)}, stable={CARD: sample(27.0, 900.0)})},
        canary_share=0.1,
        alpha=0.01,
    )
    assert few.verdicts["auth"].verdict == "Inconclusive"
    assert "the gate's canary traffic so far: 100 samples < minSamples 500" in few.verdicts["auth"].reason
