r"""Anytime-valid sequential test of canary against stable on cumulative bad-event counts.

Pure: no I/O, no clock, standard library only.  The gate layer calls
:func:`sequential_evidence` at every analysis interval with the counts accumulated since
the gate step started, and fails the gate the first time :func:`rejects` is true.

The model
---------
Within one gate step the traffic weights are constant, so each request is routed to the
canary with a fixed probability ``s`` and is *bad* (a failed authorization, a duplicate
charge, ...) with probability ``q_c`` on the canary and ``q_s`` on stable.  Look only at
the bad events, in the order they happen.  Each one independently came from the canary
with probability

.. math::  \theta(\rho) = \frac{s\rho}{s\rho + 1 - s}, \qquad \rho = q_c / q_s,

whatever the (unknown, even drifting) baseline rate ``q_s`` is: the baseline cancels.
This is the classical conditioning of two Poisson counts on their sum (Lehmann & Romano,
*Testing Statistical Hypotheses*, sec. 4.6), and for bad events thinned out of an i.i.d.
request stream it holds exactly, event by event.  After ``n = x_c + x_s`` bad events of
which ``x_c`` came from the canary, the likelihood ratio of ``rho`` against ``rho0`` is

.. math::  L_n(\rho) = \left(\frac{\theta(\rho)}{\theta(\rho_0)}\right)^{x_c}
           \left(\frac{1-\theta(\rho)}{1-\theta(\rho_0)}\right)^{x_s}.

Null hypothesis ``H0: rho <= rho0``.  ``rho0 = 1`` means "the canary is no worse than
stable"; a tolerance such as ``maxDrop: 0.5pp`` on a success ratio becomes
``rho0 = (q_s + 0.005) / q_s`` (:func:`null_relative_risk_for_margin`), e.g. 1.1667 for a
3% stable failure rate.  Alternatives are a fixed grid of relative risks
``rho_k = rho0 * m_k`` with multipliers ``m_k > 1`` and prior weights ``w_k`` summing to
one; the e-value is the mixture likelihood ratio (the mSPRT of Johari, Pekelis & Walsh)

.. math::  E_n = \sum_k w_k L_n(\rho_k).

Why it is anytime-valid
-----------------------
For ``theta_k > theta0`` the one-event factor has expectation
``theta * theta_k/theta0 + (1-theta) (1-theta_k)/(1-theta0)``, which is increasing in the
true ``theta`` and equals 1 at ``theta = theta0``.  So under every ``rho <= rho0`` each
``L_n(rho_k)``, and hence the mixture ``E_n``, is a nonnegative supermartingale with
``E_0 = 1``.  Ville's inequality (Ville 1939; Robbins 1970, "Statistical methods related
to the law of the iterated logarithm") gives

.. math::  P_{H_0}\left(\sup_n E_n \ge 1/\alpha\right) \le \alpha,

so the gate may look after every scrape, as often as it likes, for as long as it likes,
and stop at the first ``E_n >= 1/alpha`` with false-alarm probability at most ``alpha``.
The gate must latch that failure: a later, smaller ``E_n`` does not undo it (the
guarantee is about the supremum).  ``E_n`` is an e-value and ``1/E_n`` an anytime-valid
p-value; inverting the test over ``rho0`` gives a confidence sequence for the relative
risk (Howard, Ramdas, McAuliffe & Sekhon 2021, "Time-uniform, nonparametric,
nonasymptotic confidence sequences").  The multinomial-count view (which arm served each
event) follows Lindon & Malek 2022, "Anytime-valid inference for multinomial count data",
who use a conjugate Dirichlet mixture; a finite grid is used here instead because the
one-sided composite null needs the mixing measure restricted to ``rho > rho0``, and a
truncated Beta mixture would need the incomplete beta function, which the standard
library lacks.  Wald 1945 ("Sequential tests of statistical hypotheses") is the
single-alternative special case (one grid point); see :mod:`bench.sprt`.

The price of not knowing the effect size
----------------------------------------
Against a true ``rho`` the test needs ``log E_n >= log(1/alpha)``; since
``E_n >= w_k L_n(rho_k)`` it is at most as slow as an SPRT for ``rho_k`` with the bar
raised by ``log(1/w_k)`` (here ``log 8 ~ 2.1`` nats for equal weights), and the nearest
grid point captures most of the Kullback-Leibler rate.  Grid and weights:
:data:`DEFAULT_GRID` / :data:`DEFAULT_WEIGHTS` (see there for the reasoning).

Practicalities
--------------
* With ``counts: increase`` (the default) counts come from Prometheus ``increase()``, which
  extrapolates and yields non-integer values; they are rounded to the nearest integer.  At a
  step's first evaluations that extrapolation can roughly double the evidence, so such a gate's
  false alarms run above alpha (issue 13 measured 0.55-1.75% at alpha 1%).  With ``counts:
  exact`` the adapter reads the counters' raw samples and counts every increment since the
  window began (``gates/counters.py``): integers, nothing extrapolated, which is what the
  supermartingale argument above assumes.  Tiny negatives from floating-point
  noise (>= -1e-9) count as 0; real negatives, NaN, Inf, zero exposure, or an unusable
  share give ``valid=False`` with a reason (never an exception) and a neutral e-value 1.
* The canary share ``s`` is the canary's fraction of *exposure* (requests served) since
  the step started.  Using the observed share instead of the configured weight adjusts
  for routers that only approximate the weight; its sampling error is negligible next to
  the bad-event noise because requests vastly outnumber bad events.  For count signals
  with no per-arm request total, pass ``canary_share`` (the configured weight) instead.
* Everything is computed in log space (log-odds for ``theta``, log-sum-exp for the
  mixture), stable for counts far beyond 10^7.  ``e_value`` saturates at ``exp(700)``;
  ``log_e_value`` is exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_WEIGHTS",
    "ArmCounts",
    "SequentialEvidence",
    "log_likelihood_ratios",
    "log_prior_weights",
    "null_relative_risk_for_margin",
    "rejects",
    "sequential_evidence",
]

DEFAULT_GRID: tuple[float, ...] = (1.1, 1.25, 1.5, 1.75, 2.0, 3.0, 5.0, 10.0)
"""Multipliers ``m_k`` of the null relative risk: alternatives ``rho_k = rho0 * m_k``.

Spacing is roughly geometric, denser between 1.25x and 2x where checkout regressions
that matter but are not obvious live (a 2pp drop on a 3% failure rate is 1.67x); 3x-10x
catch gross breakage within a handful of events, where speed hardly depends on the grid.
"""

DEFAULT_WEIGHTS: tuple[float, ...] | None = None
"""Prior weights of :data:`DEFAULT_GRID`; ``None`` means equal weights (``1/8`` each)."""

_NEGATIVE_TOLERANCE = 1e-9
_MAX_COUNT = float(2**53)
_MAX_LOG_E = 700.0


@dataclass(frozen=True)
class ArmCounts:
    """Cumulative counts for one arm since the gate step started.

    ``bad``: bad events (total - good for a ratio signal; the count for a rare-event signal).
    ``exposure``: requests served by the arm (used for the traffic share).
    """

    bad: float
    exposure: float


@dataclass(frozen=True)
class SequentialEvidence:
    """The sequential test's state of evidence after the counts seen so far.

    ``e_value`` is the mixture likelihood ratio (saturating at ``exp(700)``), ``log_e_value``
    its exact logarithm.  ``relative_risk_estimate`` is the maximum-likelihood ``q_c / q_s``
    (``None`` when there are no stable bad events; also saturating at ``exp(700)``).
    ``valid`` is False when the inputs could not be used; then the e-value is a neutral 1
    and ``reason`` says why.
    """

    log_e_value: float
    e_value: float
    canary_bad: int
    stable_bad: int
    canary_share: float
    relative_risk_estimate: float | None
    null_relative_risk: float
    valid: bool
    reason: str


@lru_cache(maxsize=64)
def _prepared_grid(
    grid: tuple[float, ...], weights: tuple[float, ...] | None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Validated ``(log multipliers, log normalised weights)``; raises ValueError on a bad grid."""
    if not grid:
        raise ValueError("the grid of alternatives must not be empty")
    for m in grid:
        if not (math.isfinite(m) and m > 1.0):
            raise ValueError(f"grid multipliers must be finite and > 1, got {m}")
    if weights is None:
        weights = tuple(1.0 for _ in grid)
    if len(weights) != len(grid):
        raise ValueError(f"{len(weights)} weights for {len(grid)} grid points")
    for w in weights:
        if not (math.isfinite(w) and w > 0.0):
            raise ValueError(f"weights must be finite and positive, got {w}")
    log_total = math.log(math.fsum(weights))
    return tuple(math.log(m) for m in grid), tuple(math.log(w) - log_total for w in weights)


def log_prior_weights(grid: tuple[float, ...], weights: tuple[float, ...] | None) -> tuple[float, ...]:
    """The normalised log prior weights of ``grid``; raises ValueError on a malformed grid."""
    return _prepared_grid(grid, weights)[1]


def log_likelihood_ratios(
    canary_bad: int, stable_bad: int, *, log_odds_share: float, null_relative_risk: float, grid: tuple[float, ...]
) -> tuple[float, ...]:
    """``log L(rho_k)`` of one batch of bad events for every grid point, at one canary share.

    ``log_odds_share`` is ``log(s / (1 - s))`` of the share the batch was served at; the null
    relative risk must be positive and finite.  A carried e-process adds these up interval by
    interval, each interval at its own share (gates/evidence.py).
    """
    log_multipliers, _ = _prepared_grid(grid, None)
    z0 = log_odds_share + math.log(null_relative_risk)
    log_theta0, log_not_theta0 = _log_sigmoid(z0), _log_sigmoid(-z0)
    return tuple(
        canary_bad * (_log_sigmoid(z0 + log_m) - log_theta0) + stable_bad * (_log_sigmoid(-z0 - log_m) - log_not_theta0)
        for log_m in log_multipliers
    )


def _log_sigmoid(z: float) -> float:
    """``log(1 / (1 + exp(-z)))`` without overflow."""
    if z >= 0.0:
        return -math.log1p(math.exp(-z))
    return z - math.log1p(math.exp(z))


def _log_sum_exp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(math.fsum(math.exp(v - top) for v in values))


def _count(value: float, what: str) -> tuple[int, str | None]:
    """Round a Prometheus ``increase()`` value to an event count, or explain why it is unusable."""
    if not math.isfinite(value):
        return 0, f"{what} is {value}, not a finite number"
    if value < 0.0:
        if value >= -_NEGATIVE_TOLERANCE:
            return 0, None
        return 0, f"{what} is negative ({value:g})"
    if value >= _MAX_COUNT:
        return 0, f"{what} ({value:g}) is beyond 2^53, not a plausible event count"
    return math.floor(value + 0.5), None


def _invalid(
    reason: str, canary_bad: int, stable_bad: int, canary_share: float, null_relative_risk: float
) -> SequentialEvidence:
    return SequentialEvidence(
        log_e_value=0.0,
        e_value=1.0,
        canary_bad=canary_bad,
        stable_bad=stable_bad,
        canary_share=canary_share,
        relative_risk_estimate=None,
        null_relative_risk=null_relative_risk if math.isfinite(null_relative_risk) else 0.0,
        valid=False,
        reason=f"invalid input: {reason}",
    )


def _format_e(log_e: float) -> str:
    if log_e > _MAX_LOG_E:
        return f"e^{log_e:.4g}"
    return f"{math.exp(log_e):.4g}"


def _canary_log_odds(
    canary: ArmCounts, stable: ArmCounts, canary_share: float | None
) -> tuple[float, float, str | None]:
    """``(log(s / (1 - s)), s, problem)`` from the override share or from the exposures."""
    if canary_share is not None:
        if not (math.isfinite(canary_share) and 0.0 < canary_share < 1.0):
            return 0.0, 0.0, f"canary share {canary_share} is not a fraction strictly between 0 and 1"
        return math.log(canary_share) - math.log1p(-canary_share), canary_share, None
    for arm, name in ((canary, "canary"), (stable, "stable")):
        if not math.isfinite(arm.exposure):
            return 0.0, 0.0, f"{name} exposure is {arm.exposure}, not a finite number"
        if arm.exposure < 0.0:
            return 0.0, 0.0, f"{name} exposure is negative ({arm.exposure:g})"
    if canary.exposure <= 0.0 or stable.exposure <= 0.0:
        return (
            0.0,
            0.0,
            f"no exposure on both arms yet (canary {canary.exposure:g}, stable {stable.exposure:g} requests)",
        )
    log_odds = math.log(canary.exposure) - math.log(stable.exposure)
    share = canary.exposure / (canary.exposure + stable.exposure)
    return log_odds, share, None


def sequential_evidence(
    canary: ArmCounts,
    stable: ArmCounts,
    *,
    null_relative_risk: float = 1.0,
    grid: tuple[float, ...] = DEFAULT_GRID,
    weights: tuple[float, ...] | None = DEFAULT_WEIGHTS,
    canary_share: float | None = None,
    alpha: float | None = None,
) -> SequentialEvidence:
    """Mixture-likelihood-ratio e-value of ``H0: q_canary / q_stable <= null_relative_risk``.

    ``canary`` and ``stable`` are cumulative counts since the gate step started.
    ``grid`` holds multipliers (> 1) of ``null_relative_risk`` that make up the alternatives,
    ``weights`` their prior weights (``None``: equal).  ``canary_share``, if given, overrides
    the share computed from exposures (count signals without per-arm request totals).
    ``alpha``, if given, only makes the reason state the comparison with ``1/alpha``.

    Never raises on bad counts: they yield ``valid=False``.  Raises ValueError only for a
    malformed ``grid``/``weights`` (a programming error, not a data problem).
    """
    log_multipliers, log_weights = _prepared_grid(grid, weights)

    canary_bad, canary_problem = _count(canary.bad, "canary bad count")
    stable_bad, stable_problem = _count(stable.bad, "stable bad count")
    log_odds_share, share, share_problem = _canary_log_odds(canary, stable, canary_share)
    rho0 = null_relative_risk
    problem = canary_problem or stable_problem or share_problem
    if problem is None and not (math.isfinite(rho0) and rho0 > 0.0):
        problem = f"null relative risk {rho0} is not a positive finite number (stable bad rate 0?)"
    if problem is not None:
        return _invalid(problem, canary_bad, stable_bad, share, rho0)

    # theta(rho) = sigmoid(logit(s) + log(rho)); log theta and log(1 - theta) via log-sigmoid.
    z0 = log_odds_share + math.log(rho0)
    log_theta0, log_not_theta0 = _log_sigmoid(z0), _log_sigmoid(-z0)
    terms: list[float] = []
    for log_m, log_w in zip(log_multipliers, log_weights, strict=True):
        zk = z0 + log_m
        log_lr = canary_bad * (_log_sigmoid(zk) - log_theta0) + stable_bad * (_log_sigmoid(-zk) - log_not_theta0)
        terms.append(log_w + log_lr)
    log_e = _log_sum_exp(terms)
    e_value = math.exp(min(log_e, _MAX_LOG_E))

    # Maximum-likelihood relative risk: odds of canary among bad events over odds of canary share.
    rho_hat: float | None = None
    if stable_bad > 0:
        rho_hat = 0.0
        if canary_bad > 0:
            log_rho_hat = math.log(canary_bad) - math.log(stable_bad) - log_odds_share
            rho_hat = math.exp(min(log_rho_hat, _MAX_LOG_E))

    return SequentialEvidence(
        log_e_value=log_e,
        e_value=e_value,
        canary_bad=canary_bad,
        stable_bad=stable_bad,
        canary_share=share,
        relative_risk_estimate=rho_hat,
        null_relative_risk=rho0,
        valid=True,
        reason=_reason(
            log_e,
            canary_bad=canary_bad,
            stable_bad=stable_bad,
            share=share,
            rho_hat=rho_hat,
            rho0=rho0,
            alpha=alpha,
        ),
    )


def _reason(
    log_e: float,
    *,
    canary_bad: int,
    stable_bad: int,
    share: float,
    rho_hat: float | None,
    rho0: float,
    alpha: float | None,
) -> str:
    e_text = f"e-value {_format_e(log_e)}"
    if alpha is not None and 0.0 < alpha < 1.0:
        bar = 1.0 / alpha
        e_text += f" {'≥' if log_e >= -math.log(alpha) else '<'} {bar:.4g} (1/alpha)"
    counts = f"{canary_bad} vs {stable_bad} bad events, canary share {share:.1%}"
    null = "" if rho0 == 1.0 else f"; tolerated up to {rho0:.3g}x"
    if canary_bad + stable_bad == 0:
        return f"{e_text}: no bad events yet on either arm (canary share {share:.1%}{null})"
    if rho_hat is None:
        return f"{e_text}: canary has {canary_bad} bad events, stable none (canary share {share:.1%}{null})"
    if rho_hat >= 1.0:
        how = f"canary fails {rho_hat:.3g}x as often as stable"
    else:
        how = f"canary fails {rho_hat:.3g}x as often as stable (better)"
    return f"{e_text}: {how} ({counts}{null})"


def rejects(evidence: SequentialEvidence, alpha: float) -> bool:
    """True when the evidence rejects the null at level ``alpha``: valid and ``e >= 1/alpha``.

    Anytime-valid: the gate may ask after every interval and must latch the first True.
    Raises ValueError if ``alpha`` is not in (0, 1) (a configuration error).
    """
    if not (0.0 < alpha < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return evidence.valid and evidence.log_e_value >= -math.log(alpha)


def null_relative_risk_for_margin(stable_bad_rate: float, margin: float) -> float:
    """Null relative risk for "canary bad rate may exceed stable's by ``margin``" (absolute).

    ``maxDrop: 0.5pp`` on a success ratio is ``margin = 0.005`` on the failure rate:
    ``rho0 = (q_s + margin) / q_s``, e.g. 1.1667 for ``q_s = 0.03``.  A relative tolerance
    (``maxRise: 20%`` on a count) needs no helper: ``rho0 = 1.2``.

    The stable rate is a plug-in estimate (stable bad / stable exposure so far), so the null
    moves a little with the data and Ville's bound is no longer exact; the stable arm has
    ~9x the canary's traffic at a 10% step, and simulation of a canary sitting exactly at
    the tolerance (tests/unit/test_sequential.py) shows false-rejection rates well below
    alpha.  With no stable bad events yet the relative bound is undefined (see below): the
    gate stays inconclusive until stable has at least one.

    Never raises on data: returns ``math.inf`` when ``stable_bad_rate`` is 0 and
    ``margin > 0`` (no finite relative bound), and ``math.nan`` for a non-finite or
    out-of-range stable rate or a bound ``q_s + margin <= 0``; :func:`sequential_evidence`
    reports either as invalid.  Raises ValueError only for a non-finite ``margin``
    (a configuration error).
    """
    if not math.isfinite(margin):
        raise ValueError(f"margin must be finite, got {margin}")
    if not (math.isfinite(stable_bad_rate) and 0.0 <= stable_bad_rate <= 1.0):
        return math.nan
    bound = stable_bad_rate + margin
    if bound <= 0.0:
        return math.nan
    if stable_bad_rate == 0.0:
        return math.inf
    return bound / stable_bad_rate
