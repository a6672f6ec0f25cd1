"""The anytime-valid sequential test of canary against stable (checkout_gates.gates.sequential).

The statistical tests simulate Poisson request traffic per 15 s scrape interval (not per
request): by Poisson thinning, bad and good requests of each arm are independent Poisson
counts, which is exactly what cumulative Prometheus counters of a Poisson stream see.
"""

from __future__ import annotations

import math
import random
import statistics
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.sprt import expected_time
from checkout_gates.gates.sequential import (
    DEFAULT_GRID,
    ArmCounts,
    SequentialEvidence,
    null_relative_risk_for_margin,
    rejects,
    sequential_evidence,
)

# --------------------------------------------------------------------------- simulation


def poisson(rng: random.Random, mean: float) -> int:
    """Poisson sample: exact inversion for small means, rounded normal for large ones.

    Bad-event means per interval here are below 40 and use inversion; only the good-request
    counts (which merely set the traffic share) use the normal approximation.
    """
    if mean <= 0.0:
        return 0
    if mean < 40.0:
        u = rng.random()
        k, p = 0, math.exp(-mean)
        cumulative = p
        while u > cumulative and k < 1000:
            k += 1
            p *= mean / k
            cumulative += p
        return k
    return max(0, math.floor(rng.gauss(mean, math.sqrt(mean)) + 0.5))


@dataclass(frozen=True)
class Traffic:
    request_rate: float = 50.0  # req/s over both arms
    canary_share: float = 0.1
    stable_bad_rate: float = 0.03  # success 0.97
    canary_bad_rate: float = 0.03
    interval: float = 15.0  # seconds between checks
    horizon: float = 1800.0  # 30 minutes


@dataclass(frozen=True)
class RunResult:
    rejected_at: float | None  # seconds, first check with e >= 1/alpha
    max_log_e: float  # over all checks


def simulate(
    rng: random.Random,
    traffic: Traffic,
    *,
    log_threshold: float = math.inf,
    margin: float | None = None,
    share_override: bool = False,
) -> RunResult:
    """One gate step: cumulative counts checked every interval until rejection or the horizon."""
    per_canary = traffic.request_rate * traffic.canary_share * traffic.interval
    per_stable = traffic.request_rate * (1.0 - traffic.canary_share) * traffic.interval
    cb = ce = sb = se = 0
    t = 0.0
    max_log_e = -math.inf
    while t < traffic.horizon:
        t += traffic.interval
        bad = poisson(rng, per_canary * traffic.canary_bad_rate)
        cb += bad
        ce += bad + poisson(rng, per_canary * (1.0 - traffic.canary_bad_rate))
        bad = poisson(rng, per_stable * traffic.stable_bad_rate)
        sb += bad
        se += bad + poisson(rng, per_stable * (1.0 - traffic.stable_bad_rate))
        rho0 = 1.0 if margin is None else null_relative_risk_for_margin(sb / se, margin)
        ev = sequential_evidence(
            ArmCounts(cb, ce),
            ArmCounts(sb, se),
            null_relative_risk=rho0,
            canary_share=traffic.canary_share if share_override else None,
        )
        if not ev.valid:
            continue
        max_log_e = max(max_log_e, ev.log_e_value)
        if ev.log_e_value >= log_threshold:
            return RunResult(t, max_log_e)
    return RunResult(None, max_log_e)


def three_se_bound(alpha: float, runs: int) -> float:
    return alpha + 3.0 * math.sqrt(alpha * (1.0 - alpha) / runs)


def test_poisson_sampler_moments() -> None:
    rng = random.Random(11)
    for mean in (0.3, 2.25, 20.25, 675.0):
        xs = [poisson(rng, mean) for _ in range(20000)]
        assert statistics.fmean(xs) == pytest.approx(mean, rel=0.03, abs=0.02)
        assert statistics.pvariance(xs) == pytest.approx(mean, rel=0.06, abs=0.03)


# --------------------------------------------------------------------------- unit tests


def naive_mixture(x_c: int, x_s: int, share: float, rho0: float, grid: tuple[float, ...]) -> float:
    """Direct product-form mixture likelihood ratio, for small counts."""

    def theta(rho: float) -> float:
        return share * rho / (share * rho + 1.0 - share)

    t0 = theta(rho0)
    total = 0.0
    for m in grid:
        tk = theta(rho0 * m)
        total += (tk / t0) ** x_c * ((1.0 - tk) / (1.0 - t0)) ** x_s / len(grid)
    return total


def test_no_bad_events_gives_e_value_one() -> None:
    ev = sequential_evidence(ArmCounts(0, 1000), ArmCounts(0, 9000))
    assert ev.valid
    assert ev.e_value == pytest.approx(1.0)
    assert ev.log_e_value == pytest.approx(0.0, abs=1e-12)
    assert ev.canary_share == pytest.approx(0.1)
    assert ev.relative_risk_estimate is None
    assert "no bad events" in ev.reason
    assert not rejects(ev, 0.05)


def test_matches_direct_product_formula() -> None:
    for x_c, x_s, rho0 in ((3, 20, 1.0), (7, 30, 1.0), (0, 12, 1.0), (9, 25, 1.1667), (4, 0, 1.0)):
        ev = sequential_evidence(ArmCounts(x_c, 500), ArmCounts(x_s, 4500), null_relative_risk=rho0)
        assert ev.e_value == pytest.approx(naive_mixture(x_c, x_s, 0.1, rho0, DEFAULT_GRID), rel=1e-9)


def test_single_grid_point_is_wald_likelihood_ratio() -> None:
    share, rho1 = 0.1, 5.0 / 3.0
    t0, t1 = share, share * rho1 / (share * rho1 + 1 - share)
    ev = sequential_evidence(ArmCounts(30, 100), ArmCounts(150, 900), grid=(rho1,))
    expected = 30 * math.log(t1 / t0) + 150 * math.log((1 - t1) / (1 - t0))
    assert ev.log_e_value == pytest.approx(expected, rel=1e-12)


def test_grows_when_canary_clearly_worse() -> None:
    # Stable 3% failures on 9000 requests; canary 6% on 1000.
    previous = 0.0
    for k in range(1, 6):
        ev = sequential_evidence(ArmCounts(60 * k, 1000 * k), ArmCounts(270 * k, 9000 * k))
        assert ev.valid
        assert ev.relative_risk_estimate == pytest.approx(2.0)
        assert ev.log_e_value > previous
        previous = ev.log_e_value
    assert rejects(ev, 0.01)
    assert ev.e_value > 1e6
    full = sequential_evidence(ArmCounts(300, 5000), ArmCounts(1350, 45000), alpha=0.01)
    assert "≥ 100 (1/alpha)" in full.reason
    assert "canary fails 2x as often as stable" in full.reason
    assert "300 vs 1350 bad events, canary share 10.0%" in full.reason


def test_stays_small_when_canary_better_or_equal() -> None:
    better = sequential_evidence(ArmCounts(10, 1000), ArmCounts(270, 9000))
    assert better.valid and better.e_value < 1.0
    assert better.relative_risk_estimate == pytest.approx(1 / 3)
    assert not rejects(better, 0.2)
    assert "(better)" in better.reason
    much_more_data = sequential_evidence(ArmCounts(1000, 100000), ArmCounts(27000, 900000))
    assert much_more_data.e_value < 1e-10
    equal = sequential_evidence(ArmCounts(300, 10000), ArmCounts(2700, 90000))
    assert equal.e_value <= 1.5


def test_margin_null_relative_risk() -> None:
    rho0 = null_relative_risk_for_margin(0.03, 0.005)
    assert rho0 == pytest.approx(1.16667, abs=1e-4)
    # Canary at 3.5% is exactly at the tolerance: no evidence against the null; at 6% there is.
    at_tolerance = sequential_evidence(ArmCounts(350, 10000), ArmCounts(2700, 90000), null_relative_risk=rho0)
    assert at_tolerance.e_value <= 1.5
    assert at_tolerance.null_relative_risk == rho0
    worse = sequential_evidence(ArmCounts(600, 10000), ArmCounts(2700, 90000), null_relative_risk=rho0)
    assert rejects(worse, 0.01)
    assert "tolerated up to 1.17x" in worse.reason
    # With enough data a plain rho0 = 1 test fails the canary that is within tolerance; the margin does not.
    lots_c, lots_s = ArmCounts(3500, 100000), ArmCounts(27000, 900000)
    assert rejects(sequential_evidence(lots_c, lots_s), 0.01)
    assert not rejects(sequential_evidence(lots_c, lots_s, null_relative_risk=rho0), 0.05)


def test_null_relative_risk_for_margin_edge_cases() -> None:
    assert null_relative_risk_for_margin(0.0, 0.005) == math.inf
    assert math.isnan(null_relative_risk_for_margin(math.nan, 0.005))
    assert math.isnan(null_relative_risk_for_margin(-0.1, 0.005))
    assert math.isnan(null_relative_risk_for_margin(0.01, -0.02))
    assert null_relative_risk_for_margin(0.03, 0.0) == 1.0
    with pytest.raises(ValueError):
        null_relative_risk_for_margin(0.03, math.inf)
    for rho0 in (math.inf, math.nan, 0.0, -1.0):
        ev = sequential_evidence(ArmCounts(5, 100), ArmCounts(5, 900), null_relative_risk=rho0)
        assert not ev.valid
        assert "null relative risk" in ev.reason


@pytest.mark.parametrize(
    ("canary", "stable", "fragment"),
    [
        (ArmCounts(math.nan, 1000), ArmCounts(5, 9000), "canary bad count is nan"),
        (ArmCounts(3, 1000), ArmCounts(math.inf, 9000), "stable bad count is inf"),
        (ArmCounts(-4, 1000), ArmCounts(5, 9000), "canary bad count is negative"),
        (ArmCounts(3, math.nan), ArmCounts(5, 9000), "canary exposure is nan"),
        (ArmCounts(3, 1000), ArmCounts(5, -math.inf), "stable exposure is -inf"),
        (ArmCounts(3, -10), ArmCounts(5, 9000), "canary exposure is negative"),
        (ArmCounts(0, 0), ArmCounts(5, 9000), "no exposure"),
        (ArmCounts(0, 0), ArmCounts(0, 0), "no exposure"),
        (ArmCounts(3, 1000), ArmCounts(5, 0), "no exposure"),
        (ArmCounts(1e300, 1000), ArmCounts(5, 9000), "2^53"),
    ],
)
def test_invalid_inputs_are_reported_not_raised(canary: ArmCounts, stable: ArmCounts, fragment: str) -> None:
    ev = sequential_evidence(canary, stable)
    assert not ev.valid
    assert fragment in ev.reason
    assert ev.reason.startswith("invalid input")
    assert ev.e_value == 1.0 and ev.log_e_value == 0.0
    assert not rejects(ev, 0.5)


def test_non_integer_and_tiny_negative_counts() -> None:
    # Prometheus increase() extrapolates: 33.6 bad events rounds to 34; -1e-12 is float noise.
    ev = sequential_evidence(ArmCounts(33.6, 1000.4), ArmCounts(179.5, 8999.7))
    assert ev.valid and ev.canary_bad == 34 and ev.stable_bad == 180
    noise = sequential_evidence(ArmCounts(-1e-12, 1000), ArmCounts(3, 9000))
    assert noise.valid and noise.canary_bad == 0


def test_canary_share_override_for_count_signals() -> None:
    # Duplicate charges: no per-arm request totals, so the configured weight gives the share.
    ev = sequential_evidence(ArmCounts(4, 0), ArmCounts(1, 0), canary_share=0.05)
    assert ev.valid
    assert ev.canary_share == 0.05
    assert ev.relative_risk_estimate == pytest.approx(4 / 1 * 0.95 / 0.05)
    assert rejects(ev, 0.05)
    same = sequential_evidence(ArmCounts(4, 50), ArmCounts(1, 950))
    assert same.log_e_value == pytest.approx(ev.log_e_value)
    for bad_share in (0.0, 1.0, 5.0, math.nan, -0.1):
        invalid = sequential_evidence(ArmCounts(4, 0), ArmCounts(1, 0), canary_share=bad_share)
        assert not invalid.valid
        assert "canary share" in invalid.reason


def test_log_space_stable_at_huge_n() -> None:
    # n = 10^7 bad events at exactly the null ratio: finite, tiny evidence.
    null = sequential_evidence(ArmCounts(1_000_000, 10**8), ArmCounts(9_000_000, 9 * 10**8))
    assert null.valid and math.isfinite(null.log_e_value)
    assert null.e_value <= 1.5
    # A 20% worse canary at that n: the e-value saturates but stays finite; log is exact.
    worse = sequential_evidence(ArmCounts(1_200_000, 10**8), ArmCounts(9_000_000, 9 * 10**8))
    assert worse.valid and math.isfinite(worse.log_e_value) and math.isfinite(worse.e_value)
    assert worse.log_e_value > 1000
    assert rejects(worse, 1e-12)
    assert worse.relative_risk_estimate == pytest.approx(1.2)
    assert "e^" in worse.reason
    # Much better canary: e-value underflows to 0 gracefully.
    better = sequential_evidence(ArmCounts(100_000, 10**8), ArmCounts(9_000_000, 9 * 10**8))
    assert better.valid and better.log_e_value < -1000 and better.e_value == 0.0
    # Extreme shares do not break the log-odds computation.
    tiny = sequential_evidence(ArmCounts(3, 1e-300), ArmCounts(10**7, 1e300))
    assert tiny.valid and math.isfinite(tiny.log_e_value)


def test_rejects_validates_alpha() -> None:
    ev = sequential_evidence(ArmCounts(60, 1000), ArmCounts(270, 9000))
    for alpha in (0.0, 1.0, -0.1, math.nan):
        with pytest.raises(ValueError):
            rejects(ev, alpha)


def test_grid_and_weights() -> None:
    base = sequential_evidence(ArmCounts(30, 1000), ArmCounts(200, 9000))
    weighted = sequential_evidence(ArmCounts(30, 1000), ArmCounts(200, 9000), grid=(1.5, 2.0), weights=(3.0, 1.0))
    assert weighted.e_value == pytest.approx(
        0.75 * naive_mixture(30, 200, 0.1, 1.0, (1.5,)) + 0.25 * naive_mixture(30, 200, 0.1, 1.0, (2.0,))
    )
    assert base.e_value != weighted.e_value
    for grid, weights in (((), None), ((1.0, 2.0), None), ((2.0,), (1.0, 1.0)), ((2.0,), (0.0,))):
        with pytest.raises(ValueError):
            sequential_evidence(ArmCounts(1, 10), ArmCounts(1, 90), grid=grid, weights=weights)


def test_evidence_is_frozen() -> None:
    ev = sequential_evidence(ArmCounts(1, 10), ArmCounts(1, 90))
    assert isinstance(ev, SequentialEvidence)
    with pytest.raises(AttributeError):
        ev.e_value = 3.0  # type: ignore[misc]


# --------------------------------------------------------------------------- properties

finite_nonneg = st.floats(min_value=0.0, allow_nan=False, allow_infinity=False)
counts = st.floats(min_value=0.0, max_value=1e12, allow_nan=False, allow_infinity=False)
exposures = st.floats(min_value=1e-6, max_value=1e15, allow_nan=False, allow_infinity=False)


@given(finite_nonneg, finite_nonneg, finite_nonneg, finite_nonneg, st.none() | st.floats(0.0, 1.0))
@settings(max_examples=300, deadline=None)
def test_property_e_value_nonnegative_and_finite(
    cb: float, ce: float, sb: float, se: float, share: float | None
) -> None:
    ev = sequential_evidence(ArmCounts(cb, ce), ArmCounts(sb, se), canary_share=share)
    assert ev.e_value >= 0.0 and math.isfinite(ev.e_value)
    assert math.isfinite(ev.log_e_value)
    assert ev.reason


@given(
    cb=counts,
    ce=exposures,
    sb=counts,
    se=exposures,
    extra=counts,
    rho0=st.sampled_from([1.0, 1.1667, 2.5]),
)
@settings(max_examples=300, deadline=None)
def test_property_more_canary_bad_never_lowers_e_value(
    *, cb: float, ce: float, sb: float, se: float, extra: float, rho0: float
) -> None:
    before = sequential_evidence(ArmCounts(cb, ce), ArmCounts(sb, se), null_relative_risk=rho0)
    after = sequential_evidence(ArmCounts(cb + extra, ce), ArmCounts(sb, se), null_relative_risk=rho0)
    assert before.valid and after.valid
    assert after.log_e_value >= before.log_e_value
    assert after.e_value >= before.e_value


# --------------------------------------------------------------------------- statistics


@pytest.mark.slow
def test_aa_false_rejection_rate_within_alpha() -> None:
    """A/A: 2,000 runs of 30 min at 50 req/s, 10% canary, 0.97 success on both arms, checked every 15 s.

    Ville's inequality bounds the chance of *ever* reaching e >= 1/alpha by alpha, however
    often we look.  The observed rate must be at most alpha plus 3 binomial standard errors.
    """
    rng = random.Random(20240611)
    runs = 2000
    traffic = Traffic(canary_bad_rate=0.03, stable_bad_rate=0.03)
    max_log_e = [simulate(rng, traffic).max_log_e for _ in range(runs)]
    for alpha in (0.01, 0.05):
        rate = sum(1 for v in max_log_e if v >= math.log(1 / alpha)) / runs
        print(
            f"A/A alpha={alpha}: ever rejected in {rate:.4f} of {runs} runs (bound {three_se_bound(alpha, runs):.4f})"
        )
        assert rate <= three_se_bound(alpha, runs)


@pytest.mark.slow
def test_aa_at_the_margin_with_plug_in_null() -> None:
    """Canary exactly at the tolerance (3% -> 3.5%, maxDrop 0.5pp) with rho0 from the stable rate so far."""
    rng = random.Random(7)
    runs = 1000
    traffic = Traffic(canary_bad_rate=0.035, stable_bad_rate=0.03)
    max_log_e = [simulate(rng, traffic, margin=0.005).max_log_e for _ in range(runs)]
    for alpha in (0.01, 0.05):
        rate = sum(1 for v in max_log_e if v >= math.log(1 / alpha)) / runs
        print(f"A/A at margin alpha={alpha}: {rate:.4f}")
        assert rate <= three_se_bound(alpha, runs)


@pytest.mark.slow
def test_aa_rare_count_signal_with_configured_share() -> None:
    """Duplicate-charge-like rare events (0.1%), share from the configured weight, 2 hours."""
    rng = random.Random(99)
    runs = 1000
    traffic = Traffic(canary_bad_rate=0.001, stable_bad_rate=0.001, horizon=7200.0)
    max_log_e = [simulate(rng, traffic, share_override=True).max_log_e for _ in range(runs)]
    for alpha in (0.01, 0.05):
        rate = sum(1 for v in max_log_e if v >= math.log(1 / alpha)) / runs
        print(f"A/A rare events alpha={alpha}: {rate:.4f}")
        assert rate <= three_se_bound(alpha, runs)


@pytest.mark.slow
def test_power_and_speed_against_wald_sprt() -> None:
    """A 2pp drop (0.97 -> 0.95) on the canary at 10% of 50 req/s, checked every 15 s.

    Median time to rejection within 2x Wald's SPRT expected time for the same alpha and beta
    (the SPRT knows the true effect; the mixture does not), and power within 30 min >= 0.95.
    """
    alpha, beta = 0.01, 0.05
    traffic = Traffic(canary_bad_rate=0.05, stable_bad_rate=0.03)
    sprt = expected_time(
        request_rate=traffic.request_rate,
        canary_share=traffic.canary_share,
        stable_bad_rate=traffic.stable_bad_rate,
        canary_bad_rate=traffic.canary_bad_rate,
        alpha=alpha,
        beta=beta,
    )
    rng = random.Random(31337)
    runs = 400
    results = [simulate(rng, traffic, log_threshold=math.log(1 / alpha)) for _ in range(runs)]
    times = [r.rejected_at if r.rejected_at is not None else math.inf for r in results]
    power = sum(1 for t in times if math.isfinite(t)) / runs
    median = statistics.median(times)
    ratio = median / sprt.expected_seconds_h1
    print(
        f"power {power:.3f}; median time to reject {median:.0f} s; "
        f"Wald SPRT E1[T] {sprt.expected_seconds_h1:.0f} s; ratio {ratio:.2f}"
    )
    assert power >= 0.95
    assert median <= 2.0 * sprt.expected_seconds_h1
