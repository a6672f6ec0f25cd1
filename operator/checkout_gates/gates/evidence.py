r"""Evidence carried across a rollout's steps, and one false-halt budget for the whole rollout.

Pure: no I/O, no clock, standard library only.

One e-process per gate and segment, for the whole rollout
---------------------------------------------------------
:mod:`checkout_gates.gates.sequential` tests one batch of counts at one canary share.  A rollout
changes the share at every ``setWeight``, and throwing the evidence away at each step wastes what
1% and 5% exposure saw, exactly where small segments need it.  So the counts come per interval
(the adapter cuts the time since the rollout's evidence began into analysis intervals, and counts
every counter increment exactly in each, gates/counters.py), and each interval's bad events are
weighed with *that interval's* canary share ``s_i`` (its exposure on the canary over both arms):

.. math::  \log L_n(\rho_k) = \sum_{i \le n} x_{c,i} \log\frac{\theta_i(\rho_k)}{\theta_i(\rho_0)}
           + x_{s,i} \log\frac{1-\theta_i(\rho_k)}{1-\theta_i(\rho_0)},
           \qquad \theta_i(\rho) = \frac{s_i\rho}{s_i\rho + 1 - s_i}.

Given interval ``i``'s exposures, each of its bad events came from the canary with probability
``theta_i(rho)``, so each interval's factor has conditional expectation at most 1 under
``rho <= rho0`` and the product stays a test supermartingale across share changes (the state is
one running sum per grid point: an O(1) update).  The operator keeps no checkpoint: every
evaluation folds the intervals again from the raw samples since the evidence began, so a restart
gives the same numbers (an e-process continued from an older, higher checkpoint would not be one).
The null of a tolerance written as a margin (``maxDrop: 0.5pp``) is a relative risk worked out
from stable's rate over its last :data:`TRAILING_INTERVALS` intervals (a plug-in, see
sequential.py), re-estimated at every interval so that it follows a drifting baseline.

One budget per rollout
----------------------
Every gate and segment tested at its own alpha adds up: nine segments of three gates at 1% each is
a union bound of 27%.  Here the halt is one test of the global null "the canary is no worse than
stable (within tolerance) in any gate or segment", which is exactly what a false halt is:

.. math::  E^{\mathrm{gate}} = \tfrac12 E^{\mathrm{pooled}} + \tfrac12 \bar E^{\mathrm{segments}},
           \qquad E^{\mathrm{rollout}} = \frac1G \sum_{g} E^{\mathrm{gate}}_g,

and the rollout halts the first time ``E_rollout >= 1/alpha``.  An average of test
supermartingales on one filtration is one, whatever their dependence, so Ville's inequality
bounds the false halts of the whole rollout, all gates, segments and steps, by ``alpha``.  The
pooled half finds a regression spread over many segments, the segment half one confined to a
small segment.  The pooled test is stratified: for each alternative, the product of the segments'
interval likelihood ratios, each at its own share and null (segments are disjoint streams of
requests, so the product is a likelihood ratio of them all).  Summing each arm over the segments
instead would compare mixtures of different base rates served at different shares, and halt a
canary that is no worse anywhere (Simpson's paradox; found in review).  ``G`` is the number of budgeted gates the spec
declares, fixed in advance; a gate not read at an evaluation (not watched at this step) counts 0,
which only lowers the average, so the bound holds.

Segments are not known in advance: a segment enters the average when it first has exposure on
both arms, and it enters at the average's current value (its e-process is scaled by it).  That
keeps the average a supermartingale as segments arrive (a newcomer at 1 beside segments whose
e-values have fallen below 1 would lift it), at the price that a late segment carries the others'
evidence; the segment named is the one whose own e-value is largest.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from checkout_gates.gates.observations import ArmSteps, Segment, segment_name
from checkout_gates.gates.sequential import (
    DEFAULT_GRID,
    DEFAULT_WEIGHTS,
    log_likelihood_ratios,
    log_prior_weights,
)

__all__ = [
    "ArmSteps",
    "GateEvidence",
    "NullRisk",
    "RolloutEvidence",
    "SegmentEvidence",
    "gate_evidence",
    "gate_evidence_path",
    "relative_risk_lower_bound",
    "relative_risk_lower_bound_stratified",
    "rollout_evidence",
]

NullRisk = Callable[[float | None], float]
"""The null relative risk given stable's bad rate so far (None: not known yet); NaN when the
tolerance cannot be stated yet, ``inf`` when it allows anything (the interval then adds nothing)."""

TRAILING_INTERVALS = 20
"""Stable's bad rate behind a margin's null is taken over its last this many intervals (10 minutes
at 30 s), the current one included: a baseline that drifts (a provider's declines falling from 6%
to 2%) moves the null with it; a rate since the rollout began would lag it and over-reject."""

_MAX_COUNT = float(2**53)
_NEGATIVE_TOLERANCE = 1e-9


@dataclass(frozen=True)
class SegmentEvidence:
    """One e-process (a segment's, or the gate's pooled) after every interval so far.

    ``log_e_value`` is the segment's own log e-value, ``log_start`` the log of the wealth it entered
    the segment average at (0 for the pooled process).  ``skipped`` counts intervals with counts
    that could not be used (``problem`` says the first); ``used`` the intervals that added evidence.
    """

    segment: str
    log_e_value: float
    canary_bad: int
    stable_bad: int
    canary_exposure: float
    stable_exposure: float
    null_relative_risk: float
    used: int
    skipped: int = 0
    problem: str | None = None
    log_start: float = 0.0

    @property
    def relative_risk_estimate(self) -> float | None:
        """``q_c / q_s`` over everything seen (None without stable bad events or exposure)."""
        if self.stable_bad == 0 or self.canary_exposure <= 0.0 or self.stable_exposure <= 0.0:
            return None
        return (self.canary_bad / self.canary_exposure) / (self.stable_bad / self.stable_exposure)


@dataclass(frozen=True)
class GateEvidence:
    """A gate's carried evidence: its pooled and per-segment e-processes and the gate's e-value
    ``log_e_value = log(1/2 E_pooled + 1/2 mean of segments)`` (the pooled one alone when the gate
    has no segments)."""

    gate: str
    log_e_value: float
    pooled: SegmentEvidence
    segments: Mapping[Segment, SegmentEvidence] = field(default_factory=dict)
    segmented: bool = False
    # The counts folded, per compared segment (canary, stable): kept for the confidence bound.
    steps: Mapping[Segment, tuple[ArmSteps, ArmSteps]] = field(default_factory=dict)
    log_segment_mean: float = 0.0  # log of the segment average (the newcomer-scaled wealths)

    @property
    def entered(self) -> int:
        """Segments that have entered the average (an interval with exposure on both arms)."""
        return sum(1 for one in self.segments.values() if one.used > 0)

    def lower_bound(self, segment: Segment | None, alpha: float) -> float | None:
        """The anytime-valid lower confidence bound of ``segment``'s relative risk (None: the
        pooled counts); see :func:`relative_risk_lower_bound`."""
        if segment is not None:
            found = self.steps.get(segment)
            return None if found is None else relative_risk_lower_bound(*found, alpha=alpha)
        if not self.steps:
            return None
        return relative_risk_lower_bound_stratified(list(self.steps.values()), alpha=alpha)

    def blamed(self) -> tuple[Segment | None, SegmentEvidence]:
        """What carries the gate's evidence: None and the pooled test when its half weighs more than
        the segments' half (a regression spread over the segments), else the entered segment whose
        own e-value is largest."""
        entered = [s for s, one in self.segments.items() if one.used > 0]
        if not self.segmented or not entered or self.pooled.log_e_value > self.log_segment_mean:
            return None, self.pooled
        segment = max(entered, key=lambda s: (self.segments[s].log_e_value, segment_name(s)))
        return segment, self.segments[segment]


@dataclass(frozen=True)
class RolloutEvidence:
    """The average over the budgeted gates, and whether it rejects at the rollout's alpha."""

    log_e_value: float
    alpha: float
    budgeted_gates: int
    by_gate: Mapping[str, GateEvidence]

    @property
    def rejects(self) -> bool:
        return self.log_e_value >= -math.log(self.alpha)

    @property
    def e_text(self) -> str:
        return format_e(self.log_e_value)

    def blamed_gate(self) -> GateEvidence | None:
        """The gate that contributes most (None when no gate was read)."""
        if not self.by_gate:
            return None
        return max(self.by_gate.values(), key=lambda g: (g.log_e_value, g.gate))


def format_e(log_e: float) -> str:
    return f"e^{log_e:.4g}" if log_e > 700.0 else f"{math.exp(log_e):.4g}"


# --- one e-process ------------------------------------------------------------------------------


class _Process:
    """The running sums of one e-process (mutable, local to a fold)."""

    def __init__(self, log_weights: tuple[float, ...]) -> None:
        self.log_terms = list(log_weights)
        # Stable's recent intervals (bad, exposure): the plug-in rate follows a drifting baseline.
        self.recent: deque[tuple[int, float]] = deque(maxlen=TRAILING_INTERVALS)
        self.last: tuple[float, ...] | None = None  # the log-likelihood ratios of the last interval added
        self.canary_bad = 0
        self.stable_bad = 0
        self.canary_exposure = 0.0
        self.stable_exposure = 0.0
        self.null = 1.0
        self.used = 0
        self.skipped = 0
        self.problem: str | None = None

    @property
    def log_e(self) -> float:
        return _log_sum_exp(self.log_terms)

    def _skip(self, problem: str) -> bool:
        self.last = None
        self.skipped += 1
        if self.problem is None:
            self.problem = problem
        return False

    def add(
        self, counts: tuple[float, float, float, float], *, null_for: NullRisk, grid: tuple[float, ...], where: str
    ) -> bool:
        """Fold one interval ``(canary bad, canary exposure, stable bad, stable exposure)``; True if it
        added evidence."""
        canary_bad, canary_exposure, stable_bad, stable_exposure = counts
        checked: list[float] = []
        for raw, what in (
            (canary_bad, "canary bad count"),
            (canary_exposure, "canary exposure"),
            (stable_bad, "stable bad count"),
            (stable_exposure, "stable exposure"),
        ):
            if not math.isfinite(raw) or raw >= _MAX_COUNT:
                return self._skip(f"{where}: {what} is {raw:g}, not a usable count")
            if raw < -_NEGATIVE_TOLERANCE:
                return self._skip(f"{where}: {what} is negative ({raw:g})")
            checked.append(max(raw, 0.0))
        canary_bad, canary_exposure, stable_bad, stable_exposure = checked
        x_c, x_s = math.floor(canary_bad + 0.5), math.floor(stable_bad + 0.5)
        self.last = None
        if canary_exposure <= 0.0 or stable_exposure <= 0.0:
            if (x_c and canary_exposure <= 0.0) or (x_s and stable_exposure <= 0.0):
                return self._skip(f"{where}: bad events in an interval with no exposure on their arm")
            return False  # nothing served on one arm: no comparison, nothing lost
        self.canary_bad += x_c
        self.stable_bad += x_s
        self.canary_exposure += canary_exposure
        self.stable_exposure += stable_exposure
        self.recent.append((x_s, stable_exposure))
        null = null_for(_rate(sum(b for b, _ in self.recent), math.fsum(e for _, e in self.recent)))
        if not (null > 0.0) or math.isnan(null):
            return self._skip(f"{where}: the tolerance cannot be stated yet (no stable bad rate)")
        self.null = null
        if math.isinf(null) or x_c + x_s == 0:
            self.used += 1
            self.last = (0.0,) * len(self.log_terms)
            return True
        ratios = log_likelihood_ratios(
            x_c,
            x_s,
            log_odds_share=math.log(canary_exposure) - math.log(stable_exposure),
            null_relative_risk=null,
            grid=grid,
        )
        self.add_ratios(ratios)
        self.used += 1
        self.last = ratios
        return True

    def add_ratios(self, ratios: Sequence[float]) -> None:
        self.log_terms = [term + ratio for term, ratio in zip(self.log_terms, ratios, strict=True)]

    def evidence(self, segment: str, *, log_start: float = 0.0) -> SegmentEvidence:
        return SegmentEvidence(
            segment=segment,
            log_e_value=self.log_e,
            canary_bad=self.canary_bad,
            stable_bad=self.stable_bad,
            canary_exposure=self.canary_exposure,
            stable_exposure=self.stable_exposure,
            null_relative_risk=self.null if math.isfinite(self.null) else 0.0,
            used=self.used,
            skipped=self.skipped,
            problem=self.problem,
            log_start=log_start,
        )


def _rate(bad: int, exposure: float) -> float | None:
    """Stable's bad rate so far; with no bad event yet, half an event (a margin stays a finite ratio)."""
    if not exposure > 0.0:
        return None
    return (bad if bad > 0 else 0.5) / exposure


def _log_sum_exp(values: Sequence[float]) -> float:
    top = max(values)
    if math.isinf(top):
        return top
    return top + math.log(math.fsum(math.exp(v - top) for v in values))


def _log_mean(values: Sequence[float]) -> float:
    return _log_sum_exp(values) - math.log(len(values))


# --- a gate -------------------------------------------------------------------------------------


def _interval(arm: ArmSteps | None, index: int) -> tuple[float, float]:
    if arm is None or index >= len(arm.bad) or index >= len(arm.exposure):
        return 0.0, 0.0
    return arm.bad[index], arm.exposure[index]


def gate_evidence(
    gate: str,
    canary: Mapping[Segment, ArmSteps],
    stable: Mapping[Segment, ArmSteps],
    *,
    null_for: NullRisk,
    segmented: bool,
    grid: tuple[float, ...] = DEFAULT_GRID,
    weights: tuple[float, ...] | None = DEFAULT_WEIGHTS,
) -> GateEvidence:
    """Fold every interval of every segment of one gate: segment e-processes, the pooled one
    (stratified: the segments' likelihood ratios multiplied) and the gate's e-value.  ``segmented``: the gate names segment
    labels (else the pooled test is the whole gate).  Never raises on data; unusable intervals are
    skipped and counted.  Raises ValueError for a malformed grid (a programming error)."""
    return gate_evidence_path(gate, canary, stable, null_for=null_for, segmented=segmented, grid=grid, weights=weights)[
        0
    ]


def gate_evidence_path(
    gate: str,
    canary: Mapping[Segment, ArmSteps],
    stable: Mapping[Segment, ArmSteps],
    *,
    null_for: NullRisk,
    segmented: bool,
    grid: tuple[float, ...] = DEFAULT_GRID,
    weights: tuple[float, ...] | None = DEFAULT_WEIGHTS,
) -> tuple[GateEvidence, tuple[float, ...]]:
    """:func:`gate_evidence`, and the gate's log e-value after each interval: what an operator
    evaluating at every interval end would have seen (the same fold, one pass)."""
    path: list[float] = []
    log_weights = log_prior_weights(grid, weights)
    arms = [*canary.values(), *stable.values()]
    intervals = max((max(len(arm.bad), len(arm.exposure)) for arm in arms), default=0)
    compared = sorted(set(canary) & set(stable))
    processes = {segment: _Process(log_weights) for segment in compared}
    pooled = _Process(log_weights)
    entered: dict[Segment, float] = {}  # log wealth a segment entered the average at

    for index in range(intervals):
        before = _log_mean([entered[s] + processes[s].log_e for s in entered]) if entered else 0.0
        for segment in compared:
            c_bad, c_exposure = _interval(canary[segment], index)
            s_bad, s_exposure = _interval(stable[segment], index)
            added = processes[segment].add(
                (c_bad, c_exposure, s_bad, s_exposure),
                null_for=null_for,
                grid=grid,
                where=f"{segment_name(segment)} interval {index + 1}",
            )
            if added and segment not in entered:
                entered[segment] = before
        # The pooled test is stratified: for each alternative, the product of the segments'
        # likelihood ratios, each at its own share and null. Summing the arms over segments
        # instead would compare mixtures of different base rates at different shares (Simpson).
        pooled_ratios = [0.0] * len(log_weights)
        contributed = False
        for segment in compared:
            ratios = processes[segment].last
            if ratios is not None:
                contributed = True
                pooled_ratios = [a + b for a, b in zip(pooled_ratios, ratios, strict=True)]
        if contributed:
            pooled.add_ratios(pooled_ratios)
            pooled.used += 1
        path.append(_gate_log_e(pooled.log_e, [entered[s] + processes[s].log_e for s in entered], segmented))

    pooled_evidence = _pooled_evidence(pooled, [processes[s] for s in compared])
    segments = {
        segment: processes[segment].evidence(segment_name(segment), log_start=entered.get(segment, 0.0))
        for segment in compared
    }
    wealth = [entered[s] + processes[s].log_e for s in entered]
    log_e = _gate_log_e(pooled.log_e, wealth, segmented)
    steps = {segment: (canary[segment], stable[segment]) for segment in compared}
    mean = _log_mean(wealth) if wealth else 0.0
    found = GateEvidence(
        gate, log_e, pooled_evidence, segments, segmented=segmented, steps=steps, log_segment_mean=mean
    )
    return found, tuple(path)


def _pooled_evidence(pooled: _Process, parts: Sequence[_Process]) -> SegmentEvidence:
    """The pooled process's evidence with the compared segments' counts summed (for the message)."""
    return SegmentEvidence(
        segment="all",
        log_e_value=pooled.log_e,
        canary_bad=sum(p.canary_bad for p in parts),
        stable_bad=sum(p.stable_bad for p in parts),
        canary_exposure=math.fsum(p.canary_exposure for p in parts),
        stable_exposure=math.fsum(p.stable_exposure for p in parts),
        null_relative_risk=parts[0].null if len(parts) == 1 else 0.0,
        used=pooled.used,
        skipped=sum(p.skipped for p in parts),
        problem=next((p.problem for p in parts if p.problem), None),
    )


def relative_risk_lower_bound(
    canary: ArmSteps,
    stable: ArmSteps,
    *,
    alpha: float,
    grid: tuple[float, ...] = DEFAULT_GRID,
    weights: tuple[float, ...] | None = DEFAULT_WEIGHTS,
) -> float | None:
    """The largest relative risk ``rho0`` whose null "q_canary / q_stable <= rho0" the carried test
    rejects at ``alpha``: an anytime-valid lower confidence bound for the canary's relative risk
    (the e-value falls as ``rho0`` grows, so the rejected nulls are an interval from 0; their
    union over time misses the truth with probability at most ``alpha``).  None when not even
    ``rho0 = 0.001`` is rejected.  Found by bisection on ``log rho0`` (30 folds of the counts)."""
    return relative_risk_lower_bound_stratified([(canary, stable)], alpha=alpha, grid=grid, weights=weights)


def relative_risk_lower_bound_stratified(
    strata: Sequence[tuple[ArmSteps, ArmSteps]],
    *,
    alpha: float,
    grid: tuple[float, ...] = DEFAULT_GRID,
    weights: tuple[float, ...] | None = DEFAULT_WEIGHTS,
) -> float | None:
    """:func:`relative_risk_lower_bound` for a relative risk common to several segments (the pooled
    test's: each segment's likelihood ratio at its own share, multiplied)."""
    bar = -math.log(alpha)
    keys: list[Segment] = [(("stratum", str(i)),) for i in range(len(strata))]
    canary = {key: pair[0] for key, pair in zip(keys, strata, strict=True)}
    stable = {key: pair[1] for key, pair in zip(keys, strata, strict=True)}

    def log_e(log_rho0: float) -> float:
        # The gate's own fold at a fixed null: its pooled process is the stratified test.
        rho0 = math.exp(log_rho0)
        folded = gate_evidence(
            "", canary, stable, null_for=lambda rate: rho0, segmented=False, grid=grid, weights=weights
        )
        return folded.pooled.log_e_value

    low, high = math.log(1e-3), math.log(1e3)
    if log_e(low) < bar:
        return None
    if log_e(high) >= bar:
        return math.exp(high)
    for _ in range(30):
        middle = (low + high) / 2.0
        if log_e(middle) >= bar:
            low = middle
        else:
            high = middle
    return math.exp(low)


def _gate_log_e(pooled: float, segment_wealth: Sequence[float], segmented: bool) -> float:
    """``log(1/2 E_pooled + 1/2 mean segment wealth)``; the pooled alone for a gate without segments."""
    if not segmented:
        return pooled
    average = _log_mean(segment_wealth) if segment_wealth else 0.0
    return _log_sum_exp([pooled, average]) - math.log(2.0)


def rollout_evidence(by_gate: Mapping[str, GateEvidence], *, budgeted_gates: int, alpha: float) -> RolloutEvidence:
    """The average of the gates' e-values over the ``budgeted_gates`` the spec declares (a gate not
    read counts 0).  Raises ValueError when fewer gates are declared than read, or alpha is not in (0, 1)."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if budgeted_gates < max(1, len(by_gate)):
        raise ValueError(f"{len(by_gate)} budgeted gates read but {budgeted_gates} declared")
    if not by_gate:
        return RolloutEvidence(-math.inf, alpha, budgeted_gates, {})
    log_e = _log_sum_exp([g.log_e_value for g in by_gate.values()]) - math.log(budgeted_gates)
    return RolloutEvidence(log_e, alpha, budgeted_gates, dict(by_gate))
