"""The rollout's one false-halt budget, spent over every gate whose evidence is carried.

Pure: no I/O, no clock.  :func:`judge_gates` judges the watched gates one by one
(:mod:`checkout_gates.gates.evaluate`), then averages the carried gates' e-values over the number
the spec declares (:func:`checkout_gates.gates.evidence.rollout_evidence`) and, when the average
reaches ``1/alpha``, fails the gate that contributes most, naming its segment.  Gates outside the
budget (an ``alpha`` of their own, or ``counts: increase``) are judged at their own alpha, and the
guarantee says so: their alphas add to the rollout's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from checkout_gates.api.spec import Gate
from checkout_gates.gates.evaluate import about, carried, judge_gate, rejected_verdict
from checkout_gates.gates.evidence import GateEvidence, RolloutEvidence, rollout_evidence
from checkout_gates.gates.observations import SignalReading
from checkout_gates.gates.verdicts import GateVerdict

__all__ = ["Judgement", "budgeted", "guarantee", "judge_gates"]


def budgeted(gate: Gate) -> bool:
    """Whether the gate spends the rollout's alpha: carried evidence and no alpha of its own."""
    return carried(gate) and gate.alpha is None


@dataclass(frozen=True)
class Judgement:
    """The watched gates' verdicts by name, and the rollout's evidence (None without budgeted gates)."""

    verdicts: Mapping[str, GateVerdict]
    rollout: RolloutEvidence | None


def judge_gates(
    declared: Sequence[Gate],
    watched: Sequence[Gate],
    readings: Mapping[str, SignalReading],
    *,
    canary_share: float,
    alpha: float,
) -> Judgement:
    """Verdicts of the ``watched`` gates (a gate with no reading is Inconclusive) under the budget
    of the ``declared`` ones.  Never raises on data."""
    verdicts: dict[str, GateVerdict] = {}
    evidence: dict[str, GateEvidence] = {}
    for gate in watched:
        reading = readings.get(gate.name)
        if reading is None:
            verdicts[gate.name] = GateVerdict(gate.name, "Inconclusive", "not evaluated", critical=gate.critical)
            continue
        verdict, gate_evidence = judge_gate(gate, reading, canary_share=canary_share, alpha=alpha)
        verdicts[gate.name] = verdict
        if gate_evidence is not None and budgeted(gate):
            evidence[gate.name] = gate_evidence
    count = sum(1 for gate in declared if budgeted(gate))
    if count == 0:
        return Judgement(verdicts, None)
    rollout = rollout_evidence(evidence, budgeted_gates=max(count, len(evidence)), alpha=alpha)
    blamed = rollout.blamed_gate()
    if rollout.rejects and blamed is not None:
        gate = next(g for g in watched if g.name == blamed.gate)
        verdicts[gate.name] = rejected_verdict(
            gate,
            verdicts[gate.name],
            blamed,
            log_e=rollout.log_e_value,
            alpha=alpha,
            scope="rollout",
            budget_share=1.0 / rollout.budgeted_gates,
        )
        reading = readings.get(gate.name)
        if reading is not None:
            verdicts[gate.name] = about(verdicts[gate.name], reading)
    return Judgement(verdicts, rollout)


def guarantee(declared: Sequence[Gate], *, alpha: float) -> str:
    """What the false-halt bound is, and over which gates, in one line for the status."""
    inside = [gate for gate in declared if budgeted(gate)]
    own = [gate for gate in declared if carried(gate) and gate.alpha is not None]
    stepwise = [gate for gate in declared if gate.method == "sequential" and not carried(gate)]
    thresholds = [gate.name for gate in declared if gate.method != "sequential"]
    bounded = [gate.name for gate in inside if gate.min is not None or gate.max is not None]
    parts: list[str] = []
    if inside:
        parts.append(
            f"false halts ≤ {alpha:.4g} for this rollout over {', '.join(g.name for g in inside)} "
            "(every segment and step, evidence carried across steps)"
        )
    if own:
        extra = sum(gate.alpha or 0.0 for gate in own)
        parts.append(f"plus up to {extra:.4g} from {', '.join(g.name for g in own)} (alpha of their own)")
    if stepwise:
        names = ", ".join(gate.name for gate in stepwise)
        parts.append(f"{names} (counts: increase) spend their alpha again in every step and segment")
    if bounded:
        parts.append(f"the min/max bounds of {', '.join(bounded)} are point checks outside the bound")
    if thresholds:
        parts.append(f"threshold gates {', '.join(thresholds)} carry no error bound")
    return "; ".join(parts) or "no gates"
