r"""The power planner: how long a rollout must hold before its gates can find a regression.

Pure: a spec, the traffic of each budgeted gate's segments on stable (requests per second and
stable's bad rate) and the regression to find, in; per segment the power within the rollout's
plan and the time by which the regression is found with 95% power, out.

How.  A carried gate's e-value is a mixture over the grid of alternatives ``rho_k = rho0 m_k``
(gates/sequential.py).  For one alternative, the log-likelihood ratio of an interval is
``x_c a_k + x_s b_k`` with ``a_k = log(theta_k / theta_0)``, ``b_k = log((1 - theta_k) /
(1 - theta_0))`` at the interval's canary share, and ``x_c``, ``x_s`` the two arms' bad events,
Poisson with means ``lambda_c = n_c q_c`` and ``lambda_s = n_s q_s``; so its mean is
``lambda_c a_k + lambda_s b_k`` and its variance ``lambda_c a_k^2 + lambda_s b_k^2``, summed over
the intervals of every phase of the plan.  The mixture is at least ``w_k`` times any one term, so
the rollout halts as soon as ``S_k + log w_k`` reaches the bar for some ``k``; the planner takes the
best ``k`` with a normal approximation of ``S_k``. Taking one term and one look at a time leaves out
crossings that fall back, the mixture's other terms and the pooled half's help, so the power it states
errs low; the normal approximation is not exact for a handful of events, so it is no proof of a
lower bound (tests/unit/test_power_planner.py checks it against the production fold).

The bar.  A regression confined to one segment of a gate with ``S`` segments, among ``G``
budgeted gates, must lift that segment's own e-value to ``2 S G / alpha`` (half the gate is the
segment mean; the rollout is the mean of the gates); one spread over a whole gate lifts the pooled
test to ``2 G / alpha``.  An unsegmented gate needs ``G / alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from checkout_gates.api.spec import CheckoutRolloutSpec, Gate
from checkout_gates.gates.budget import budgeted
from checkout_gates.gates.evaluate import null_relative_risk
from checkout_gates.gates.sequential import DEFAULT_GRID, DEFAULT_WEIGHTS, log_prior_weights
from checkout_gates.rollout.plan import watched_gate_names

POWER = 0.95
_NORMAL = NormalDist()
_EDGE = 1e-12
CHECKS_PER_PHASE = 400
# After the plan's last gate step, how much longer the planner looks (held at that step's weight)
# to say how long 95% power would take: a day.
LOOK_BEYOND_SECONDS = 86_400.0


@dataclass(frozen=True)
class Phase:
    """A stretch of the plan at one canary weight: a gate step held for its window, a pause."""

    step: int
    weight: float  # the canary's share of requests, 0..1
    seconds: float
    watched: bool  # the gate is judged here (its gate steps, and always if critical)


@dataclass(frozen=True)
class Traffic:
    """One segment of a gate on stable: its requests per second (both arms together) and bad rate."""

    segment: str
    rate: float
    bad: float


@dataclass(frozen=True)
class SegmentPower:
    segment: str
    stable_bad: float
    canary_bad: float  # under the regression planned for
    bar: float  # the e-value this segment's test must reach
    power: float  # found within the plan (its gate steps held for exactly their windows)
    found_after: float | None  # seconds from the start by which it is found with 95% power (None: not within a day)
    found_at_step: int | None  # the step that is
    beyond_plan: float  # seconds the last gate step would have to be held beyond its window (0: none)


def phases(spec: CheckoutRolloutSpec, gate: Gate) -> list[Phase]:
    """The plan as the gate sees it: every gate step held for exactly its window, pauses for their
    duration, approvals given at once, setWeight steps confirmed at once."""
    out: list[Phase] = []
    weight = 0.0
    for index, step in enumerate(spec.steps):
        if step.set_weight is not None:
            weight = step.set_weight / 100.0
            continue
        seconds = step.gate.window_seconds if step.gate is not None else 0.0
        if step.pause is not None:
            seconds = step.pause.duration_seconds
        if seconds > 0.0 and weight > 0.0:
            out.append(Phase(index, weight, seconds, gate.name in watched_gate_names(spec, index)))
    return out


def regressed_rate(gate: Gate, stable_bad: float, regression: str | None) -> float:
    """The canary's bad rate to find: ``regression`` ("1pp" more bad events, or "2x" the rate); by
    default the tolerated excess once more beyond the tolerance (a 0.5pp margin: 1pp more; 50%:
    2x), or, for a gate that tolerates nothing, 1pp more (ratio) or twice the rate (count, tail)."""
    if regression is not None:
        text = regression.strip()
        if text.endswith("pp"):
            return min(1.0, stable_bad + float(text[:-2]) / 100.0)
        return min(1.0, stable_bad * float(text.removesuffix("x")))
    null = null_relative_risk(gate, stable_bad)
    if math.isfinite(null) and null > 1.0:
        return min(1.0, stable_bad * (2.0 * null - 1.0))
    return min(1.0, stable_bad + 0.01) if gate.ratio is not None else min(1.0, 2.0 * stable_bad)


def _interval_moments(canary: float, stable: float, q_c: float, q_s: float, null: float) -> list[tuple[float, float]]:
    """(mean, variance) of one interval's log-likelihood ratio per grid point, for ``canary`` and
    ``stable`` requests with bad rates ``q_c`` and ``q_s``, against the null relative risk."""
    share = canary / (canary + stable)

    def theta(rho: float) -> float:  # kept off 0 and 1: a huge tolerance must not divide by zero
        return min(max(share * rho / (share * rho + 1.0 - share), _EDGE), 1.0 - _EDGE)

    theta0 = theta(null)
    moments = []
    for m in DEFAULT_GRID:
        theta_k = theta(null * m)
        a, b = math.log(theta_k / theta0), math.log((1.0 - theta_k) / (1.0 - theta0))
        lam_c, lam_s = canary * q_c, stable * q_s
        moments.append((lam_c * a + lam_s * b, lam_c * a * a + lam_s * b * b))
    return moments


def segment_power(
    gate: Gate,
    traffic: Traffic,
    plan: Sequence[Phase],
    *,
    interval: float,
    log_bar: float,
    canary_bad: float,
) -> SegmentPower:
    """The power of one segment's test within ``plan``, and when it reaches 95%: looking up to a
    day beyond the gate's last watched phase, held at its weight (later phases, where the gate is
    not judged, are left out: their evidence would be credited to a step that never sees it)."""
    null = null_relative_risk(gate, traffic.bad)
    weights = log_prior_weights(DEFAULT_GRID, DEFAULT_WEIGHTS)
    means = [0.0] * len(DEFAULT_GRID)
    variances = [0.0] * len(DEFAULT_GRID)
    # Stable's rate may be 0 (no duplicate charge yet): a canary's events alone are evidence then.
    usable = math.isfinite(null) and null > 0.0 and traffic.rate > 0.0 and traffic.bad >= 0.0
    last = max((i for i, p in enumerate(plan) if p.watched), default=None)
    if last is None:
        return SegmentPower(traffic.segment, traffic.bad, canary_bad, math.exp(log_bar), 0.0, None, None, 0.0)
    tail = plan[last]
    stretches = [*plan[: last + 1], Phase(tail.step, tail.weight, LOOK_BEYOND_SECONDS, True)]
    plan_end = sum(p.seconds for p in plan[: last + 1])
    elapsed, power = 0.0, 0.0
    found: tuple[float, int] | None = None
    for phase in stretches:
        canary = traffic.rate * phase.weight * interval
        stable = traffic.rate * (1.0 - phase.weight) * interval
        moments = _interval_moments(canary, stable, canary_bad, traffic.bad, null) if usable and stable > 0 else []
        intervals = max(1, round(phase.seconds / interval))
        # At most CHECKS_PER_PHASE looks per phase: the moments are the same in every interval of
        # it, so a look every few intervals only rounds the time found up by a little.
        per_look = max(1, math.ceil(intervals / CHECKS_PER_PHASE))
        done = 0
        while done < intervals:
            count = min(per_look, intervals - done)
            done += count
            elapsed += count * interval
            for k, (mean, variance) in enumerate(moments):
                means[k] += count * mean
                variances[k] += count * variance
            if not phase.watched or not moments:
                continue
            best = max(
                _NORMAL.cdf((means[k] + weights[k] - log_bar) / math.sqrt(variances[k])) if variances[k] > 0 else 0.0
                for k in range(len(means))
            )
            if elapsed <= plan_end + 1e-9:
                power = max(power, best)
            if best >= POWER:
                found = (elapsed, phase.step)
                break
        if found is not None:
            break
    return SegmentPower(
        segment=traffic.segment,
        stable_bad=traffic.bad,
        canary_bad=canary_bad,
        bar=math.exp(log_bar),
        power=power,
        found_after=found[0] if found is not None else None,
        found_at_step=found[1] if found is not None else None,
        beyond_plan=max(0.0, found[0] - plan_end) if found is not None else LOOK_BEYOND_SECONDS,
    )


def log_bar(spec: CheckoutRolloutSpec, gate: Gate, *, segments: int, pooled: bool) -> float:
    """The log e-value one segment (or the pooled test) must reach to halt the rollout alone."""
    gates = max(1, sum(1 for g in spec.gates if budgeted(g)))
    bar = gates / spec.analysis.alpha
    if gate.segment_by:
        bar *= 2.0 if pooled else 2.0 * max(1, segments)
    return math.log(bar)
