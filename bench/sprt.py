"""Wald's sequential probability ratio test (SPRT): the reference optimum for gate speed.

This module is pure (no I/O, no clock) and is used by the tests and by the benchmark in
``bench/`` as the yardstick "the Wald SPRT optimum for the same error rates".

The stream
----------
The sequential gate (:mod:`checkout_gates.gates.sequential`) looks only at *bad* events
(failed authorizations, duplicate charges, ...) and asks, for each one, which arm served
it.  With canary share ``s`` of the traffic and bad rates ``q_c`` (canary) and ``q_s``
(stable), a bad event comes from the canary with probability

    theta = s * q_c / (s * q_c + (1 - s) * q_s) = s * rho / (s * rho + 1 - s),

where ``rho = q_c / q_s`` is the relative risk.  So the stream is Bernoulli(theta), and
the hypotheses "rho = rho0" and "rho = rho1" become the simple hypotheses
``theta = theta0`` and ``theta = theta1``.  Wald's SPRT on that same stream is the
optimum the mixture test is measured against (Wald & Wolfowitz 1948: among all tests with
error rates at most alpha and beta, the SPRT minimises the expected sample size under
both hypotheses).

Formulas (Wald 1945; Wald, *Sequential Analysis*, 1947, ch. 3 and 4)
---------------------------------------------------------------------
Boundaries on the likelihood ratio ``Lambda_n``: reject H0 when ``Lambda_n >= A``,
accept H0 when ``Lambda_n <= B``, with Wald's approximations

    A = (1 - beta) / alpha,            B = beta / (1 - alpha).

Per-event log-likelihood-ratio increment ``Z = X log(theta1/theta0) +
(1 - X) log((1-theta1)/(1-theta0))`` has means ``E1[Z] = KL(theta1 || theta0)`` and
``E0[Z] = -KL(theta0 || theta1)``, where for Bernoulli laws

    KL(p || q) = p log(p/q) + (1 - p) log((1-p)/(1-q)).

Ignoring the overshoot of the boundaries, Wald's identity ``E[S_N] = E[N] E[Z]`` gives
the expected number of bad events to a decision:

    E1[N] = ((1 - beta) log A + beta log B) / KL(theta1 || theta0)
    E0[N] = ((1 - alpha) log(1/B) - alpha log A) / KL(theta0 || theta1)

(the second is ``(alpha log A + (1 - alpha) log B) / E0[Z]`` rearranged to be positive).
These are approximations: the true SPRT stops slightly later because of overshoot, so
they are a slightly optimistic ("best possible") yardstick.

Expected time
-------------
Bad events arrive (Poisson) at rate ``lambda * (s * q_c + (1 - s) * q_s)`` per second for
total request rate ``lambda``.  By Wald's identity for the compound process, the expected
time to a decision is ``E[N] / bad_event_rate``.  Example: 50 req/s, 10% canary, stable
bad rate 0.03, canary 0.05 (a 2 percentage-point drop in success): bad events arrive at
``45 * 0.03 + 5 * 0.05 = 1.6`` per second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "SprtBoundaries",
    "SprtExpectation",
    "bernoulli_kl",
    "canary_bad_probability",
    "expected_bad_events_h0",
    "expected_bad_events_h1",
    "expected_time",
    "wald_boundaries",
]


@dataclass(frozen=True)
class SprtBoundaries:
    """Wald's boundaries on the likelihood ratio: reject H0 at ``upper`` (A), accept at ``lower`` (B)."""

    upper: float
    lower: float

    @property
    def log_upper(self) -> float:
        return math.log(self.upper)

    @property
    def log_lower(self) -> float:
        return math.log(self.lower)


@dataclass(frozen=True)
class SprtExpectation:
    """Wald's expected sample size and time for one bad-event stream (see module docstring)."""

    theta0: float
    theta1: float
    alpha: float
    beta: float
    expected_bad_events_h1: float
    expected_bad_events_h0: float
    bad_event_rate_h1: float
    bad_event_rate_h0: float

    @property
    def expected_seconds_h1(self) -> float:
        """Expected time to reject H0 when the canary really is worse (under H1)."""
        return self.expected_bad_events_h1 / self.bad_event_rate_h1

    @property
    def expected_seconds_h0(self) -> float:
        """Expected time to accept H0 when the canary is as good as the null allows."""
        return self.expected_bad_events_h0 / self.bad_event_rate_h0


def _check_error_rates(alpha: float, beta: float) -> None:
    if not (0.0 < alpha < 1.0 and 0.0 < beta < 1.0 and alpha + beta < 1.0):
        raise ValueError(f"need 0 < alpha, beta < 1 and alpha + beta < 1, got alpha={alpha}, beta={beta}")


def _check_probability(name: str, p: float) -> None:
    if not (0.0 < p < 1.0):
        raise ValueError(f"{name} must be in (0, 1), got {p}")


def wald_boundaries(alpha: float, beta: float) -> SprtBoundaries:
    """Wald's approximate boundaries ``A = (1 - beta) / alpha`` and ``B = beta / (1 - alpha)``."""
    _check_error_rates(alpha, beta)
    return SprtBoundaries(upper=(1.0 - beta) / alpha, lower=beta / (1.0 - alpha))


def bernoulli_kl(p: float, q: float) -> float:
    """Kullback-Leibler divergence ``KL(Bernoulli(p) || Bernoulli(q))`` in nats.

    ``p`` may be 0 or 1 (with the convention ``0 log 0 = 0``); ``q`` must be in (0, 1).
    """
    if not (0.0 <= p <= 1.0):
        raise ValueError(f"p must be in [0, 1], got {p}")
    _check_probability("q", q)
    total = 0.0
    if p > 0.0:
        total += p * math.log(p / q)
    if p < 1.0:
        total += (1.0 - p) * math.log((1.0 - p) / (1.0 - q))
    return total


def canary_bad_probability(canary_share: float, relative_risk: float) -> float:
    """Probability that a bad event came from the canary: ``s*rho / (s*rho + 1 - s)``."""
    _check_probability("canary_share", canary_share)
    if not (relative_risk > 0.0 and math.isfinite(relative_risk)):
        raise ValueError(f"relative_risk must be positive and finite, got {relative_risk}")
    return canary_share * relative_risk / (canary_share * relative_risk + 1.0 - canary_share)


def _check_thetas(theta0: float, theta1: float) -> None:
    _check_probability("theta0", theta0)
    _check_probability("theta1", theta1)
    if theta0 == theta1:
        raise ValueError("theta0 and theta1 must differ")


def expected_bad_events_h1(theta0: float, theta1: float, alpha: float, beta: float) -> float:
    """Wald's ``E1[N] = ((1-beta) log A + beta log B) / KL(theta1 || theta0)`` (events to reject H0)."""
    _check_thetas(theta0, theta1)
    bounds = wald_boundaries(alpha, beta)
    numerator = (1.0 - beta) * bounds.log_upper + beta * bounds.log_lower
    return numerator / bernoulli_kl(theta1, theta0)


def expected_bad_events_h0(theta0: float, theta1: float, alpha: float, beta: float) -> float:
    """Wald's ``E0[N] = ((1-alpha) log(1/B) - alpha log A) / KL(theta0 || theta1)`` (events to accept H0)."""
    _check_thetas(theta0, theta1)
    bounds = wald_boundaries(alpha, beta)
    numerator = -(1.0 - alpha) * bounds.log_lower - alpha * bounds.log_upper
    return numerator / bernoulli_kl(theta0, theta1)


def expected_time(
    *,
    request_rate: float,
    canary_share: float,
    stable_bad_rate: float,
    canary_bad_rate: float,
    alpha: float,
    beta: float,
    null_relative_risk: float = 1.0,
) -> SprtExpectation:
    """Wald's expected bad events and seconds to a decision for a canary-vs-stable comparison.

    ``request_rate`` is the total rate (req/s) over both arms, ``canary_share`` the canary's
    fraction of it, ``stable_bad_rate`` and ``canary_bad_rate`` the per-request bad rates
    under the alternative (e.g. 0.03 and 0.05 for success 0.97 -> 0.95).  The null is
    ``q_canary = null_relative_risk * q_stable``; the alternative is the given canary rate.
    """
    if not (request_rate > 0.0 and math.isfinite(request_rate)):
        raise ValueError(f"request_rate must be positive and finite, got {request_rate}")
    _check_probability("stable_bad_rate", stable_bad_rate)
    _check_probability("canary_bad_rate", canary_bad_rate)
    null_canary_rate = null_relative_risk * stable_bad_rate
    _check_probability("null canary bad rate (null_relative_risk * stable_bad_rate)", null_canary_rate)
    theta0 = canary_bad_probability(canary_share, null_relative_risk)
    theta1 = canary_bad_probability(canary_share, canary_bad_rate / stable_bad_rate)
    stable_rate = request_rate * (1.0 - canary_share) * stable_bad_rate
    return SprtExpectation(
        theta0=theta0,
        theta1=theta1,
        alpha=alpha,
        beta=beta,
        expected_bad_events_h1=expected_bad_events_h1(theta0, theta1, alpha, beta),
        expected_bad_events_h0=expected_bad_events_h0(theta0, theta1, alpha, beta),
        bad_event_rate_h1=stable_rate + request_rate * canary_share * canary_bad_rate,
        bad_event_rate_h0=stable_rate + request_rate * canary_share * null_canary_rate,
    )
