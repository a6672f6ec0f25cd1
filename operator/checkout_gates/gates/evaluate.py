"""Gate evaluation: one gate's reading (both variants, every segment) -> one verdict.

Pure: no I/O, no clock, standard library only.  The metrics adapters produce a
:class:`~checkout_gates.gates.observations.SignalReading` per gate; :func:`evaluate_gate`
judges every canary segment on its own against the stable segment with the same labels,
and the worst segment decides (Fail > Inconclusive > Pass).

Rules, in the order they are applied to a segment
-------------------------------------------------
* A query error makes the whole gate Inconclusive ("query failed: ..."), whatever
  ``onMissingData`` says; no canary series at all follows ``onMissingData`` ("no data for canary").
* Unusable numbers (None, NaN, Inf, negative counts/ratios/samples, a ratio above 1) make the
  segment Inconclusive with a reason; they never raise.
* Samples are a ratio's total, otherwise ``Sample.samples`` (the gate's ``samples`` or
  ``exposure`` query).  Below ``minSamples``, or unknown while ``minSamples > 0``, a segment is
  never Pass.  A threshold gate is then Inconclusive outright (a fixed rule on too little data
  is noise).  A sequential gate may still *Fail* below ``minSamples`` when its test rejects,
  because the test is valid at every sample size and an early halt limits the blast radius;
  otherwise it is Inconclusive too.  Absolute bounds are only judged at ``minSamples``.
* Absolute bounds ``min`` / ``max`` on the canary value: outside is Fail.  They are judged even
  when the stable segment is missing, so a canary that breaks ``max: 0`` fails regardless.
* ``compare`` (threshold method): ``maxDrop`` fails when canary < ``limit_below(stable)``,
  ``maxRise`` when canary > ``limit_above(stable)``; a value exactly at its limit passes.
  Count signals compare normalized rates: count / exposure when both arms have one, else
  count / traffic share (``canary_share`` vs ``1 - canary_share``).  A missing stable segment
  makes the segment Inconclusive unless an absolute bound already fails.
* Sequential method (ratio and count): the anytime-valid test of
  :mod:`checkout_gates.gates.sequential` on the cumulative bad-event counts (ratio:
  ``total - good`` over ``total``; count: the count over the exposure, or the traffic share).
  The tolerated relative risk comes from ``maxDrop`` for a ratio and ``maxRise`` for a count
  (the other direction is not tested sequentially); without one it is 1 (no worse than stable).
  Absolute bounds apply on top.  The caller must latch a sequential Fail for the rest of the
  step: the guarantee is about the first crossing, a later smaller e-value does not undo it.

Severity ranks failing segments: the excess past the limit relative to the limit (in the
signal's unit when the limit is 0), or the log e-value for a sequential rejection.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from checkout_gates.api.quantities import Tolerance, parse_tolerance
from checkout_gates.api.spec import Gate
from checkout_gates.gates.evidence import GateEvidence, SegmentEvidence, format_e, gate_evidence_path
from checkout_gates.gates.observations import SCALAR, Sample, Segment, SignalReading, segment_name
from checkout_gates.gates.sequential import (
    ArmCounts,
    null_relative_risk_for_margin,
    rejects,
    sequential_evidence,
)
from checkout_gates.gates.verdicts import SEVERITY, GateVerdict, SegmentResult, VerdictName

__all__ = [
    "MAX_SEGMENTS",
    "carried",
    "carried_gate_evidence",
    "carried_gate_evidence_path",
    "evaluate_gate",
    "evaluate_gates",
    "judge_gate",
    "query_window_seconds",
    "rejected_verdict",
]

MAX_SEGMENTS = 20
"""At most this many segment results are kept in a verdict, worst first."""

# Floating-point noise: tiny negatives count as 0, a value this close to its limit is at it.
_EPS = 1e-9

_MISSING_DATA: dict[str, VerdictName] = {"inconclusive": "Inconclusive", "pass": "Pass", "fail": "Fail"}


# --- public API ---------------------------------------------------------------------------------


def evaluate_gate(gate: Gate, reading: SignalReading, *, canary_share: float, alpha: float = 0.01) -> GateVerdict:
    """The verdict of ``gate`` on ``reading``; ``canary_share`` is the canary's weight / 100.

    ``alpha`` is the rollout's (``spec.analysis.alpha``), used where the gate sets none.  A gate
    with carried evidence (``counts: exact``) fails here only on its absolute bounds or its own
    ``alpha`` override: the rollout's budget is spent in :mod:`checkout_gates.gates.budget`.
    Never raises on the data in ``reading``: unusable numbers make a segment Inconclusive.
    """
    return judge_gate(gate, reading, canary_share=canary_share, alpha=alpha)[0]


def judge_gate(
    gate: Gate, reading: SignalReading, *, canary_share: float, alpha: float = 0.01
) -> tuple[GateVerdict, GateEvidence | None]:
    """:func:`evaluate_gate`, and the gate's carried evidence when it has some."""
    if reading.error is not None:
        error = reading.error.strip() or "unknown error"
        return GateVerdict(gate.name, "Inconclusive", f"query failed: {error}", critical=gate.critical), None
    if not reading.canary:
        missing = _MISSING_DATA.get(gate.on_missing_data, "Inconclusive")
        return GateVerdict(gate.name, missing, "no data for canary", critical=gate.critical), None

    kind = judged_kind(gate)
    evidence = carried_gate_evidence(gate, reading)
    if carried(gate) and evidence is None:
        # Never the per-step test at the rollout's alpha in its place: that would spend alpha the
        # budget does not account for.
        return (
            GateVerdict(
                gate.name,
                "Inconclusive",
                "counts exact needs the counts interval by interval, and this source gave totals only "
                "(a recording has no raw samples: judge it against Prometheus)",
                critical=gate.critical,
            ),
            None,
        )
    gate_alpha = gate.alpha if gate.alpha is not None else alpha
    judgements = sorted(
        (
            _judge_segment(
                gate,
                kind,
                segment,
                sample,
                reading.stable.get(segment),
                canary_share=canary_share,
                alpha=gate_alpha,
                evidence=evidence,
            )
            for segment, sample in reading.canary.items()
        ),
        key=_worst_first,
    )
    verdict = _verdict(gate, judgements)
    if evidence is not None and gate.alpha is not None and evidence.log_e_value >= -math.log(gate.alpha):
        # An alpha override: this gate spends its own budget, on its own pooled-and-segments e-value.
        verdict = rejected_verdict(gate, verdict, evidence, log_e=evidence.log_e_value, alpha=gate.alpha, scope="gate")
    return about(verdict, reading), evidence


def null_relative_risk(gate: Gate, stable_bad_rate: float) -> float:
    """The relative risk a gate's sequential test takes as its null at stable's bad rate (1: no
    tolerance; NaN when it cannot be stated, e.g. a margin over a rate of 0)."""
    return _null_for_rate(gate, judged_kind(gate), stable_bad_rate)


def judged_kind(gate: Gate) -> str:
    """The signal kind the gate is judged as: a tail signal is a count of slow requests per request."""
    return "count" if gate.signal_kind == "tail" else gate.signal_kind


def about(verdict: GateVerdict, reading: SignalReading) -> GateVerdict:
    """``verdict`` with the reading's subject (e.g. a tail's bound) in front of its reason."""
    if reading.subject is None or verdict.reason.startswith(reading.subject):
        return verdict
    return replace(verdict, reason=f"{reading.subject}: {verdict.reason}")


def _verdict(gate: Gate, judgements: list[_Judgement]) -> GateVerdict:
    decider = judgements[0]
    result = decider.result
    return GateVerdict(
        gate=gate.name,
        verdict=result.verdict,
        reason=decider.headline + _tally(judgements),
        segment=result.segment,
        value=result.value,
        baseline=result.baseline,
        samples=result.samples,
        critical=gate.critical,
        segments=tuple(j.result for j in judgements[:MAX_SEGMENTS]),
    )


def rejected_verdict(
    gate: Gate,
    verdict: GateVerdict,
    evidence: GateEvidence,
    *,
    log_e: float,
    alpha: float,
    scope: str,
    budget_share: float = 1.0,
) -> GateVerdict:
    """``verdict`` turned into the rejection of ``evidence`` at ``alpha`` (``scope``: "rollout" or
    "gate"), naming what carried it: the pooled test, or the segment whose own e-value is largest.

    The relative risk's lower bound is stated at the share of alpha the named test had
    (``budget_share`` of the budget is this gate's; half of it the pooled test's, half split
    between the segments), so it holds although the segment was picked after the fact."""
    segment, blamed = evidence.blamed()
    pooled = segment is None and evidence.segmented
    name = segment_name(segment) if segment is not None else ("all segments (pooled)" if pooled else "")
    bar = 1.0 / alpha
    what = "this rollout" if scope == "rollout" else f"gate {gate.name}"
    head = f"e-value {format_e(log_e)} ≥ {bar:.4g} (false halts ≤ {alpha:.4g} for {what})"
    level = alpha * budget_share
    if evidence.segmented:
        level /= 2.0 if segment is None else 2.0 * max(1, evidence.entered)
    bound = evidence.lower_bound(segment, level)
    floor = f"; canary's relative risk ≥ {bound:.3g}x ({1 - level:.4g} anytime-valid bound)" if bound else ""
    reason = f"{head}: {name + ': ' if name else ''}{_evidence_text(blamed)}{floor}"
    name = "all" if pooled else name
    results = list(verdict.segments)
    found = next((r for r in results if r.segment == name), None) if name else None
    value, baseline, samples = (
        (found.value, found.baseline, found.samples) if found else (verdict.value, verdict.baseline, verdict.samples)
    )
    failing = SegmentResult(
        segment=name or (results[0].segment if results else ""),
        verdict="Fail",
        reason=reason,
        value=value,
        baseline=baseline,
        samples=samples,
        severity=_finite(log_e),
    )
    others = [r for r in results if r.segment != failing.segment]
    return GateVerdict(
        gate=gate.name,
        verdict="Fail",
        reason=reason,
        segment=failing.segment,
        value=value,
        baseline=baseline,
        samples=samples,
        critical=gate.critical,
        segments=(failing, *others)[:MAX_SEGMENTS],
    )


def evaluate_gates(
    gates: Sequence[Gate], readings: Mapping[str, SignalReading], *, canary_share: float, alpha: float = 0.01
) -> dict[str, GateVerdict]:
    """Every gate's verdict by name, in the order of ``gates``, each on its own (the rollout's
    budget over carried evidence is :func:`checkout_gates.gates.budget.judge_gates`); a gate with
    no reading is Inconclusive."""
    verdicts: dict[str, GateVerdict] = {}
    for gate in gates:
        reading = readings.get(gate.name)
        if reading is None:
            verdicts[gate.name] = GateVerdict(gate.name, "Inconclusive", "not evaluated", critical=gate.critical)
        else:
            verdicts[gate.name] = evaluate_gate(gate, reading, canary_share=canary_share, alpha=alpha)
    return verdicts


def query_window_seconds(gate: Gate, *, interval_seconds: float, step_elapsed_seconds: float) -> float:
    """The range a gate's queries should cover.

    Threshold: the gate's ``window``, or the analysis interval.  Sequential: everything since the
    gate step started (the test works on cumulative counts), but at least one interval.
    """
    if gate.method == "sequential":
        return max(interval_seconds, step_elapsed_seconds)
    window = gate.window_seconds
    return interval_seconds if window is None else window


def carried(gate: Gate) -> bool:
    """Whether the gate's evidence is carried across steps: a sequential gate on exact counts."""
    return gate.method == "sequential" and gate.counts == "exact"


def carried_gate_evidence(gate: Gate, reading: SignalReading) -> GateEvidence | None:
    """The gate's e-processes folded over the reading's intervals; None unless the gate carries
    evidence and every canary segment came with its intervals."""
    found = carried_gate_evidence_path(gate, reading)
    return None if found is None else found[0]


def carried_gate_evidence_path(gate: Gate, reading: SignalReading) -> tuple[GateEvidence, tuple[float, ...]] | None:
    """:func:`carried_gate_evidence` and the gate's log e-value after each interval (what an
    evaluation at each interval's end saw: gates/evidence.py ``gate_evidence_path``)."""
    if not carried(gate) or reading.error is not None or not reading.canary:
        return None
    kind = judged_kind(gate)
    canary = {segment: sample.steps for segment, sample in reading.canary.items() if sample.steps is not None}
    stable = {segment: sample.steps for segment, sample in reading.stable.items() if sample.steps is not None}
    if len(canary) != len(reading.canary):
        return None
    return gate_evidence_path(
        gate.name,
        canary,
        stable,
        null_for=lambda rate: _null_for_rate(gate, kind, rate),
        segmented=bool(gate.segment_by),
    )


# --- segment results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Judgement:
    result: SegmentResult
    # Orders segments of the same verdict, higher first: a Fail's severity; for a Pass the
    # (negative) normalized distance past its closest limit, so the nearest miss comes first.
    rank: float
    # The gate-level reason when this segment decides: names the segment.
    headline: str


def _worst_first(judgement: _Judgement) -> tuple[int, float, str]:
    result = judgement.result
    return (-SEVERITY[result.verdict], -judgement.rank, result.segment)


def _tally(judgements: list[_Judgement]) -> str:
    total = len(judgements)
    if total < 2:
        return ""
    verdict = judgements[0].result.verdict
    same = sum(1 for j in judgements if j.result.verdict == verdict)
    if verdict == "Pass":
        return f"; all {total} segments pass"
    word = "fail" if verdict == "Fail" else "inconclusive"
    return f"; {same} of {total} segments {word}"


def _judgement(
    segment: Segment,
    verdict: VerdictName,
    reason: str,
    *,
    value: float | None = None,
    baseline: float | None = None,
    samples: float | None = None,
    severity: float = 0.0,
    rank: float = 0.0,
    names_segment: bool = False,
) -> _Judgement:
    name = segment_name(segment)
    headline = reason if names_segment or segment == SCALAR else f"{name}: {reason}"
    result = SegmentResult(
        segment=name,
        verdict=verdict,
        reason=reason,
        value=value,
        baseline=baseline,
        samples=samples,
        severity=_finite(severity) if verdict == "Fail" else 0.0,
    )
    return _Judgement(result=result, rank=_finite(rank), headline=headline)


def _no_baseline(segment: Segment) -> str:
    if segment == SCALAR:
        return "no stable baseline (stable returned no data)"
    return f"no stable baseline for segment {segment_name(segment)}"


# --- reading one arm ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Arm:
    """One variant's usable numbers for one segment (validated: finite, non-negative where needed)."""

    value: float
    samples: float | None
    good: float | None = None
    total: float | None = None


def _number(raw: float | None, what: str, *, non_negative: bool) -> tuple[float | None, str | None]:
    """``(number, None)``, ``(None, None)`` when absent, or ``(None, problem)``."""
    if raw is None:
        return None, None
    try:
        number = float(raw)
    except (TypeError, ValueError, OverflowError):
        return None, f"{what} is not a number ({raw!r})"
    if math.isnan(number):
        return None, f"{what} is NaN"
    if math.isinf(number):
        return None, f"{what} is {'+' if number > 0 else '-'}Inf"
    if non_negative and number < 0.0:
        if number >= -_EPS:
            return 0.0, None
        return None, f"{what} is negative ({number:g})"
    return number, None


def _read_arm(kind: str, sample: Sample, side: str) -> _Arm | str:
    """The arm's numbers, or the reason they cannot be used."""
    if kind == "ratio":
        total, problem = _number(
            sample.total if sample.total is not None else sample.samples, f"{side} total", non_negative=True
        )
        if problem is not None:
            return problem
        good, problem = _number(sample.good, f"{side} good count", non_negative=True)
        if problem is not None:
            return problem
        if total == 0.0:
            return f"no {side} traffic in this segment (total 0)"
        if good is not None and total is not None and good > total * (1.0 + _EPS) + _EPS:
            return f"{side} good count {good:g} exceeds total {total:g}"
        value, problem = _number(sample.value, f"{side} ratio", non_negative=True)
        if problem is not None:
            return problem
        if value is None:
            if good is None or total is None:
                return f"no {side} value"
            value = good / total
        if value > 1.0 + _EPS:
            return f"{side} ratio {value:g} is above 1 (good > total?)"
        value = min(value, 1.0)
        if good is None and total is not None:
            good = value * total
        if good is not None:
            good = min(good, total) if total is not None else good
        return _Arm(value=value, samples=total, good=good, total=total)

    what = "count" if kind == "count" else "value"
    value, problem = _number(sample.value, f"{side} {what}", non_negative=kind == "count")
    if problem is not None:
        return problem
    if value is None:
        return f"no {side} value"
    samples, problem = _number(
        sample.samples, f"{side} {'exposure' if kind == 'count' else 'samples'}", non_negative=True
    )
    if problem is not None:
        return problem
    return _Arm(value=value, samples=samples)


def _samples_problem(gate: Gate, samples: float | None) -> str | None:
    """Why the canary has too few samples to pass, or None."""
    if gate.min_samples <= 0:
        return None
    if samples is None:
        return f"number of samples unknown (no samples query) and minSamples is {gate.min_samples:,}"
    if samples < gate.min_samples:
        return f"{math.floor(samples):,} samples < minSamples {gate.min_samples:,}"
    return None


# --- formatting ---------------------------------------------------------------------------------


def _format(value: float, style: str, precision: int) -> str:
    if style == "percent":
        return f"{value * 100:.{precision}f}%"
    if value.is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:.{precision + 3}g}"


def _formatted(style: str, subject: float, *others: float, limit: float) -> list[str]:
    """``subject, *others, limit`` formatted alike, with enough digits to tell subject from limit."""
    precision = 1
    while True:
        texts = [_format(x, style, precision) for x in (subject, *others, limit)]
        if texts[0] != texts[-1] or subject == limit or precision >= 6:
            return texts
        precision += 1


def _count_text(value: float) -> str:
    return f"{int(value):,}" if value.is_integer() and abs(value) < 1e15 else f"{value:,.1f}"


def _samples_text(samples: float | None) -> str:
    return "" if samples is None else f", {_count_text(samples)} samples"


def _share_text(share: float) -> str:
    return f"{share * 100:.3g}%"


def _finite(x: float) -> float:
    """Severities end up in status (JSON): no NaN or Inf."""
    if math.isnan(x):
        return 0.0
    return max(-sys.float_info.max, min(sys.float_info.max, x))


def _excess(value: float, limit: float, *, below: bool) -> float:
    """How far ``value`` is past ``limit`` (positive) or short of it (negative), relative to the
    limit, or in the signal's unit when the limit is 0.  ``below``: the limit is a lower bound."""
    scale = abs(limit) if limit != 0.0 else 1.0
    difference = limit - value if below else value - limit
    return _finite(difference / scale)


def _past(value: float, limit: float, *, below: bool) -> bool:
    slack = _EPS * max(1.0, abs(limit))
    return value < limit - slack if below else value > limit + slack


# --- threshold rules ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Check:
    failed: bool
    excess: float  # > 0: past the limit; <= 0: within it (normalized)
    text: str
    value: float
    baseline: float | None


def _bound_checks(gate: Gate, kind: str, value: float) -> list[_Check]:
    style = "percent" if kind == "ratio" else "number"
    checks: list[_Check] = []
    if gate.min is not None:
        failed = _past(value, gate.min, below=True)
        v, m = _formatted(style, value, limit=gate.min)
        text = f"{gate.name} {v} is below min {m}" if failed else f"{gate.name} {v} is at or above min {m}"
        checks.append(_Check(failed, _excess(value, gate.min, below=True), text, value, None))
    if gate.max is not None:
        failed = _past(value, gate.max, below=False)
        v, m = _formatted(style, value, limit=gate.max)
        text = f"{gate.name} {v} is above max {m}" if failed else f"{gate.name} {v} is at or below max {m}"
        checks.append(_Check(failed, _excess(value, gate.max, below=False), text, value, None))
    return checks


@dataclass(frozen=True)
class _Compared:
    """The two values a compare rule is applied to, and how to describe them."""

    canary: float
    stable: float
    style: str
    label: str  # "auth-approval", "duplicate-orders rate"
    canary_detail: str = ""  # " per request (3 in 2,500 requests)"
    stable_detail: str = ""


def _compared_values(gate: Gate, kind: str, canary: _Arm, stable: _Arm, canary_share: float) -> _Compared | str:
    if kind != "count":
        return _Compared(canary.value, stable.value, "percent" if kind == "ratio" else "number", gate.name)
    if canary.samples is not None and stable.samples is not None:
        if canary.samples <= 0.0:
            return "canary exposure is 0: no rate to compare"
        if stable.samples <= 0.0:
            return "stable exposure is 0: no rate to compare"
        canary_rate, stable_rate = canary.value / canary.samples, stable.value / stable.samples
        canary_detail = f" per request ({_count_text(canary.value)} in {_count_text(canary.samples)})"
        stable_detail = f" ({_count_text(stable.value)} in {_count_text(stable.samples)})"
        label = f"{gate.name} rate"
    else:
        if not (math.isfinite(canary_share) and 0.0 < canary_share < 1.0):
            return (
                f"canary share {canary_share:g} cannot normalize counts (it must be strictly between 0 and 1 "
                "when the gate has no exposure query)"
            )
        canary_rate, stable_rate = canary.value / canary_share, stable.value / (1.0 - canary_share)
        canary_detail = f" ({_count_text(canary.value)} at {_share_text(canary_share)} of traffic)"
        stable_detail = f" ({_count_text(stable.value)} at {_share_text(1.0 - canary_share)})"
        label = f"{gate.name} at full traffic"
    if not (math.isfinite(canary_rate) and math.isfinite(stable_rate)):
        return "normalized rates are not finite (exposure too small?)"
    return _Compared(canary_rate, stable_rate, "number", label, canary_detail, stable_detail)


def _compare_checks(gate: Gate, compared: _Compared) -> list[_Check]:
    checks: list[_Check] = []
    if gate.compare is None:
        return checks
    c, s = compared.canary, compared.stable
    for text, below in ((gate.compare.max_drop, True), (gate.compare.max_rise, False)):
        if text is None:
            continue
        tolerance = parse_tolerance(text)
        limit = tolerance.limit_below(s) if below else tolerance.limit_above(s)
        failed = _past(c, limit, below=below)
        fc, fs, fl = _formatted(compared.style, c, s, limit=limit)
        verb = ("is below" if below else "is above") if failed else "is within"
        sign = "-" if below else "+"
        description = (
            f"{compared.label} {fc}{compared.canary_detail} {verb} stable {fs}{compared.stable_detail} "
            f"{sign} {tolerance} (limit {fl})"
        )
        checks.append(_Check(failed, _excess(c, limit, below=below), description, c, s))
    return checks


def _conclude(segment: Segment, checks: list[_Check], samples: float | None) -> _Judgement:
    if not checks:
        return _judgement(segment, "Inconclusive", "the gate has no rule (min, max or compare)", samples=samples)
    failed = [check for check in checks if check.failed]
    if failed:
        worst = max(failed, key=lambda check: check.excess)
        return _judgement(
            segment,
            "Fail",
            worst.text + _samples_text(samples),
            value=worst.value,
            baseline=worst.baseline,
            samples=samples,
            severity=worst.excess,
            rank=worst.excess,
        )
    closest = max(checks, key=lambda check: check.excess)
    return _judgement(
        segment,
        "Pass",
        closest.text + _samples_text(samples),
        value=closest.value,
        baseline=closest.baseline,
        samples=samples,
        rank=min(closest.excess, 0.0),
    )


def _judge_segment(
    gate: Gate,
    kind: str,
    segment: Segment,
    sample: Sample,
    stable_sample: Sample | None,
    *,
    canary_share: float,
    alpha: float,
    evidence: GateEvidence | None,
) -> _Judgement:
    canary = _read_arm(kind, sample, "canary")
    if isinstance(canary, str):
        traffic = sample.total if sample.total is not None else sample.samples
        if evidence is not None and traffic == 0.0 and _samples_problem(gate, evidence.pooled.canary_exposure) is None:
            # No canary traffic in this segment yet: nothing to judge, and nothing to hold the
            # step for; what it sees later is carried into the next step.
            return _judgement(
                segment, "Pass", f"{gate.name}: no canary traffic in this segment yet, its evidence carried"
            )
        return _judgement(segment, "Inconclusive", canary)
    if evidence is not None:
        return _judge_carried(
            gate, kind, segment, canary, stable_sample, evidence.segments.get(segment), evidence.pooled.canary_exposure
        )
    if gate.method == "sequential":
        return _judge_sequential(gate, kind, segment, canary, stable_sample, canary_share=canary_share, alpha=alpha)
    return _judge_threshold(gate, kind, segment, canary, stable_sample, canary_share=canary_share)


def _judge_threshold(
    gate: Gate, kind: str, segment: Segment, canary: _Arm, stable_sample: Sample | None, *, canary_share: float
) -> _Judgement:
    too_few = _samples_problem(gate, canary.samples)
    if too_few is not None:
        return _judgement(segment, "Inconclusive", too_few, value=canary.value, samples=canary.samples)
    checks = _bound_checks(gate, kind, canary.value)
    if gate.compare is not None:
        problem: str | None = None
        if stable_sample is None:
            problem = _no_baseline(segment)
        else:
            stable = _read_arm(kind, stable_sample, "stable")
            compared = stable if isinstance(stable, str) else _compared_values(gate, kind, canary, stable, canary_share)
            if isinstance(compared, str):
                problem = compared
            else:
                checks += _compare_checks(gate, compared)
        if problem is not None:
            if any(check.failed for check in checks):
                return _conclude(segment, checks, canary.samples)
            return _judgement(
                segment,
                "Inconclusive",
                problem,
                value=canary.value,
                samples=canary.samples,
                names_segment=stable_sample is None,
            )
    return _conclude(segment, checks, canary.samples)


# --- sequential rule ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _SequentialInput:
    canary: ArmCounts
    stable: ArmCounts
    share: float | None  # the override share (count signals without exposure), else None
    canary_value: float  # what the verdict reports: a ratio, or a normalized rate
    stable_value: float
    # The stable bad rate in the unit the tolerance is written in (ratio: per request;
    # count: per request, or per full traffic when normalized by share); None if undefined.
    stable_rate: float | None


def _sequential_input(kind: str, canary: _Arm, stable: _Arm, canary_share: float) -> _SequentialInput | str:
    if kind == "ratio":
        if canary.good is None or canary.total is None or stable.good is None or stable.total is None:
            return "the sequential test needs good and total counts on both arms"
        canary_bad = max(canary.total - canary.good, 0.0)
        stable_bad = max(stable.total - stable.good, 0.0)
        stable_rate = _rate(stable_bad, stable.total)
        return _SequentialInput(
            ArmCounts(canary_bad, canary.total),
            ArmCounts(stable_bad, stable.total),
            None,
            canary.value,
            stable.value,
            stable_rate,
        )
    if canary.samples is not None and stable.samples is not None:
        return _SequentialInput(
            ArmCounts(canary.value, canary.samples),
            ArmCounts(stable.value, stable.samples),
            None,
            canary.value / canary.samples if canary.samples > 0 else math.nan,
            stable.value / stable.samples if stable.samples > 0 else math.nan,
            _rate(stable.value, stable.samples),
        )
    usable = math.isfinite(canary_share) and 0.0 < canary_share < 1.0
    return _SequentialInput(
        ArmCounts(canary.value, canary_share if usable else 0.0),
        ArmCounts(stable.value, 1.0 - canary_share if usable else 0.0),
        canary_share,
        canary.value / canary_share if usable else math.nan,
        stable.value / (1.0 - canary_share) if usable else math.nan,
        _rate(stable.value, 1.0 - canary_share) if usable else None,
    )


def _rate(bad: float, exposure: float) -> float | None:
    """Plug-in bad rate; with no bad events yet, half an event (so a margin stays a finite ratio)."""
    if not (math.isfinite(exposure) and exposure > 0.0):
        return None
    rate = (bad if bad > 0.0 else 0.5) / exposure
    return rate if math.isfinite(rate) else None


def _tolerance_for_sequential(gate: Gate, kind: str) -> Tolerance | None:
    if gate.compare is None:
        return None
    text = gate.compare.max_drop if kind == "ratio" else gate.compare.max_rise
    return None if text is None else parse_tolerance(text)


def _null_relative_risk(gate: Gate, kind: str, data: _SequentialInput) -> float:
    """The relative risk of bad events the tolerance allows; NaN when it cannot be worked out."""
    return _null_for_rate(gate, kind, data.stable_rate)


def _null_for_rate(gate: Gate, kind: str, rate: float | None) -> float:
    """The null relative risk given stable's bad rate (None: undefined); NaN when it cannot be worked out."""
    tolerance = _tolerance_for_sequential(gate, kind)
    if tolerance is None or tolerance.value == 0.0:
        return 1.0
    if tolerance.kind == "relative" and kind != "ratio":
        return 1.0 + tolerance.value / 100.0
    if rate is None:
        return math.nan
    if kind == "ratio":
        # A drop of the success ratio is a rise of the bad rate by the same absolute margin.
        rate = min(rate, 1.0)
        stable_ratio = 1.0 - rate
        margin = stable_ratio - tolerance.limit_below(stable_ratio)
        if not math.isfinite(margin):
            return math.inf
        if margin <= 0.0:
            return 1.0
        return null_relative_risk_for_margin(rate, margin)
    if rate <= 0.0:
        return math.nan  # no stable events yet: a tolerance relative to nothing cannot be stated
    limit = tolerance.limit_above(rate)
    return limit / rate if math.isfinite(limit) else math.inf


def _judge_sequential(
    gate: Gate,
    kind: str,
    segment: Segment,
    canary: _Arm,
    stable_sample: Sample | None,
    *,
    canary_share: float,
    alpha: float,
) -> _Judgement:
    too_few = _samples_problem(gate, canary.samples)
    checks = [] if too_few is not None else _bound_checks(gate, kind, canary.value)
    if any(check.failed for check in checks):
        return _conclude(segment, checks, canary.samples)
    if stable_sample is None:
        return _judgement(
            segment,
            "Inconclusive",
            _no_baseline(segment),
            value=canary.value,
            samples=canary.samples,
            names_segment=True,
        )
    stable = _read_arm(kind, stable_sample, "stable")
    data = stable if isinstance(stable, str) else _sequential_input(kind, canary, stable, canary_share)
    if isinstance(data, str):
        return _judgement(segment, "Inconclusive", data, value=canary.value, samples=canary.samples)

    evidence = sequential_evidence(
        data.canary,
        data.stable,
        null_relative_risk=_null_relative_risk(gate, kind, data),
        canary_share=data.share,
        alpha=alpha,
    )
    value = data.canary_value if math.isfinite(data.canary_value) else None
    baseline = data.stable_value if math.isfinite(data.stable_value) else None
    if not evidence.valid:
        return _judgement(
            segment,
            "Inconclusive",
            f"sequential test not possible: {evidence.reason}",
            value=value,
            baseline=baseline,
            samples=canary.samples,
        )
    if kind == "ratio":
        fc, fs = _formatted("percent", data.canary_value, limit=data.stable_value)
        subject = f"{gate.name} {fc} vs stable {fs}"
    else:
        subject = gate.name
    description = f"{subject}: {evidence.reason}"
    if rejects(evidence, alpha):
        return _judgement(
            segment,
            "Fail",
            description + _samples_text(canary.samples),
            value=value,
            baseline=baseline,
            samples=canary.samples,
            severity=evidence.log_e_value,
            rank=evidence.log_e_value,
        )
    if too_few is not None:
        return _judgement(
            segment,
            "Inconclusive",
            f"{too_few} ({description})",
            value=value,
            baseline=baseline,
            samples=canary.samples,
        )
    # Closeness to rejection, normalized like a threshold excess: 0 at the bar, -1 at e-value 1.
    bar = -math.log(alpha)
    closeness = (evidence.log_e_value - bar) / bar
    rank = max([closeness, *(check.excess for check in checks)])
    return _judgement(
        segment,
        "Pass",
        description + _samples_text(canary.samples),
        value=value,
        baseline=baseline,
        samples=canary.samples,
        rank=min(rank, 0.0),
    )


# --- carried evidence ---------------------------------------------------------------------------


def _evidence_text(evidence: SegmentEvidence) -> str:
    """``canary fails 1.8x as often as stable (41 vs 230 bad events ...)`` with its own e-value."""
    counts = (
        f"{evidence.canary_bad:,} vs {evidence.stable_bad:,} bad events in "
        f"{_count_text(evidence.canary_exposure)} vs {_count_text(evidence.stable_exposure)} requests"
    )
    rho = evidence.relative_risk_estimate
    null = "" if evidence.null_relative_risk in (0.0, 1.0) else f"; tolerated up to {evidence.null_relative_risk:.3g}x"
    if evidence.canary_bad + evidence.stable_bad == 0:
        how = "no bad events yet on either arm"
    elif rho is None:
        how = f"canary has {evidence.canary_bad:,} bad events, stable none"
    else:
        how = f"canary fails {rho:.3g}x as often as stable"
    skipped = f"; {evidence.skipped} intervals unusable ({evidence.problem})" if evidence.skipped else ""
    return f"{how} ({counts}{null}), own e-value {format_e(evidence.log_e_value)}{skipped}"


def _judge_carried(
    gate: Gate,
    kind: str,
    segment: Segment,
    canary: _Arm,
    stable_sample: Sample | None,
    evidence: SegmentEvidence | None,
    pooled_samples: float,
) -> _Judgement:
    """A segment of a gate with carried evidence: its absolute bounds here; the rejection is the
    budget's (the gate's, with an alpha override), judged over all segments.

    ``minSamples`` counts the canary's traffic of the whole gate since the evidence began: a small
    segment that has seen little canary traffic yet must not hold a step for ever (at 1% exposure a
    2% segment sees a request a minute); its evidence is carried into the next step and it is in
    the pooled test meanwhile.  Its absolute bounds are judged once it has ``minSamples`` itself."""
    too_few = _samples_problem(gate, pooled_samples)
    own_too_few = _samples_problem(gate, canary.samples)
    checks = [] if own_too_few is not None else _bound_checks(gate, kind, canary.value)
    if any(check.failed for check in checks):
        return _conclude(segment, checks, canary.samples)
    if stable_sample is None or evidence is None:
        return _judgement(
            segment,
            "Inconclusive",
            _no_baseline(segment),
            value=canary.value,
            samples=canary.samples,
            names_segment=True,
        )
    stable = _read_arm(kind, stable_sample, "stable")
    baseline = stable.value if not isinstance(stable, str) else None
    if kind == "count" and not isinstance(stable, str):
        value = canary.value / canary.samples if canary.samples else None
        baseline = stable.value / stable.samples if stable.samples else None
    else:
        value = canary.value
    description = f"{gate.name}: {_evidence_text(evidence)}"
    if too_few is not None:
        return _judgement(
            segment,
            "Inconclusive",
            f"the gate's canary traffic so far: {too_few} ({description})",
            value=value,
            baseline=baseline,
            samples=canary.samples,
        )
    # A segment with little or no canary traffic yet does not hold the step: it is in the pooled
    # test and the segment average, and its evidence goes on into the next step.
    note = ""
    if evidence.used == 0:
        note = "; no interval with traffic on both arms yet: nothing to compare, its evidence carried"
    elif own_too_few is not None:
        note = f"; this segment: {own_too_few}, its evidence carried"
    # Passes are ranked nearest miss first: the larger the own e-value, the nearer to 0.
    rank = max([-1.0 / (1.0 + max(evidence.log_e_value, 0.0)), *(c.excess for c in checks)])
    return _judgement(
        segment,
        "Pass",
        description + note + _samples_text(canary.samples),
        value=value,
        baseline=baseline,
        samples=canary.samples,
        rank=min(rank, 0.0),
    )
