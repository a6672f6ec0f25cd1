"""Wald's SPRT reference formulas (bench.sprt)."""

from __future__ import annotations

import math
import random

import pytest

from bench.sprt import (
    bernoulli_kl,
    canary_bad_probability,
    expected_bad_events_h0,
    expected_bad_events_h1,
    expected_time,
    wald_boundaries,
)


def test_wald_boundaries() -> None:
    b = wald_boundaries(0.01, 0.05)
    assert b.upper == pytest.approx(95.0)
    assert b.lower == pytest.approx(0.05 / 0.99)
    assert b.log_upper == pytest.approx(math.log(95.0))
    assert b.log_lower == pytest.approx(math.log(0.05 / 0.99))


@pytest.mark.parametrize(("alpha", "beta"), [(0.0, 0.1), (0.1, 0.0), (1.0, 0.1), (0.6, 0.5), (-0.1, 0.1)])
def test_wald_boundaries_reject_bad_error_rates(alpha: float, beta: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        wald_boundaries(alpha, beta)


def test_bernoulli_kl() -> None:
    assert bernoulli_kl(0.3, 0.3) == 0.0
    p, q = 0.15625, 0.1
    expected = p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
    assert bernoulli_kl(p, q) == pytest.approx(expected)
    assert bernoulli_kl(p, q) > 0 and bernoulli_kl(q, p) > 0
    assert bernoulli_kl(0.0, 0.5) == pytest.approx(math.log(2))
    assert bernoulli_kl(1.0, 0.5) == pytest.approx(math.log(2))
    with pytest.raises(ValueError):
        bernoulli_kl(0.5, 0.0)
    with pytest.raises(ValueError):
        bernoulli_kl(1.5, 0.5)


def test_canary_bad_probability() -> None:
    assert canary_bad_probability(0.1, 1.0) == pytest.approx(0.1)
    # 2pp drop on a 3% failure rate at 10% exposure: 5*0.05 / (5*0.05 + 45*0.03).
    assert canary_bad_probability(0.1, 0.05 / 0.03) == pytest.approx(0.25 / 1.6)
    with pytest.raises(ValueError):
        canary_bad_probability(0.0, 2.0)
    with pytest.raises(ValueError):
        canary_bad_probability(0.1, 0.0)


def test_expected_bad_events_formulas() -> None:
    theta0, theta1, alpha, beta = 0.1, 0.15625, 0.01, 0.05
    log_a, log_b = math.log((1 - beta) / alpha), math.log(beta / (1 - alpha))
    e1 = ((1 - beta) * log_a + beta * log_b) / bernoulli_kl(theta1, theta0)
    e0 = (alpha * log_a + (1 - alpha) * log_b) / -bernoulli_kl(theta0, theta1)
    assert expected_bad_events_h1(theta0, theta1, alpha, beta) == pytest.approx(e1)
    assert expected_bad_events_h0(theta0, theta1, alpha, beta) == pytest.approx(e0)
    assert e1 == pytest.approx(273.39, abs=0.01)
    with pytest.raises(ValueError):
        expected_bad_events_h1(0.1, 0.1, alpha, beta)


def test_expected_time_worked_example() -> None:
    """Success 0.97 -> 0.95 on the canary at 10% of 50 req/s: bad events at 45*0.03 + 5*0.05 per s."""
    e = expected_time(
        request_rate=50.0,
        canary_share=0.1,
        stable_bad_rate=0.03,
        canary_bad_rate=0.05,
        alpha=0.01,
        beta=0.05,
    )
    assert e.theta0 == pytest.approx(0.1)
    assert e.theta1 == pytest.approx(0.15625)
    assert e.bad_event_rate_h1 == pytest.approx(45 * 0.03 + 5 * 0.05)
    assert e.bad_event_rate_h0 == pytest.approx(50 * 0.03)
    assert e.expected_seconds_h1 == pytest.approx(e.expected_bad_events_h1 / 1.6)
    assert e.expected_seconds_h0 == pytest.approx(e.expected_bad_events_h0 / 1.5)
    assert 150 < e.expected_seconds_h1 < 190


def test_expected_time_with_margin_null() -> None:
    base = dict(request_rate=50.0, canary_share=0.1, stable_bad_rate=0.03, canary_bad_rate=0.05)
    plain = expected_time(**base, alpha=0.01, beta=0.05)
    tolerant = expected_time(**base, alpha=0.01, beta=0.05, null_relative_risk=0.035 / 0.03)
    assert tolerant.theta0 > plain.theta0
    assert tolerant.expected_seconds_h1 > plain.expected_seconds_h1
    assert tolerant.bad_event_rate_h0 == pytest.approx(45 * 0.03 + 5 * 0.035)


def test_expected_time_rejects_bad_inputs() -> None:
    kwargs = dict(canary_share=0.1, stable_bad_rate=0.03, canary_bad_rate=0.05, alpha=0.01, beta=0.05)
    with pytest.raises(ValueError):
        expected_time(request_rate=0.0, **kwargs)
    with pytest.raises(ValueError):
        expected_time(request_rate=50.0, **{**kwargs, "canary_share": 1.0})
    with pytest.raises(ValueError):
        expected_time(request_rate=50.0, **{**kwargs, "canary_bad_rate": 0.03})


def _run_sprt(
    rng: random.Random, theta: float, *, theta0: float, theta1: float, alpha: float, beta: float
) -> tuple[bool, int]:
    """One SPRT on a Bernoulli(theta) stream: (rejected H0, number of events used)."""
    b = wald_boundaries(alpha, beta)
    up = math.log(theta1 / theta0)
    down = math.log((1 - theta1) / (1 - theta0))
    s, n = 0.0, 0
    while b.log_lower < s < b.log_upper:
        n += 1
        s += up if rng.random() < theta else down
    return s >= b.log_upper, n


@pytest.mark.slow
def test_wald_approximation_matches_simulated_sprt() -> None:
    """The formulas describe the real SPRT: error rates about alpha/beta, mean N near Wald's E[N].

    Wald's E[N] ignores the overshoot of the boundary, so the simulated mean is a little larger.
    """
    rng = random.Random(20240601)
    theta0, theta1, alpha, beta = 0.1, 0.15625, 0.01, 0.05
    runs = 1500
    h1 = [_run_sprt(rng, theta1, theta0=theta0, theta1=theta1, alpha=alpha, beta=beta) for _ in range(runs)]
    h0 = [_run_sprt(rng, theta0, theta0=theta0, theta1=theta1, alpha=alpha, beta=beta) for _ in range(runs)]
    power = sum(r for r, _ in h1) / runs
    false_alarm = sum(r for r, _ in h0) / runs
    mean_n1 = sum(n for _, n in h1) / runs
    mean_n0 = sum(n for _, n in h0) / runs
    e1 = expected_bad_events_h1(theta0, theta1, alpha, beta)
    e0 = expected_bad_events_h0(theta0, theta1, alpha, beta)
    print(
        f"SPRT power {power:.3f}, false alarms {false_alarm:.4f}, "
        f"N1 {mean_n1:.0f} vs {e1:.0f}, N0 {mean_n0:.0f} vs {e0:.0f}"
    )
    assert power >= 1 - beta - 3 * math.sqrt(beta * (1 - beta) / runs)
    assert false_alarm <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)
    assert 0.9 * e1 <= mean_n1 <= 1.25 * e1
    assert 0.9 * e0 <= mean_n0 <= 1.25 * e0
