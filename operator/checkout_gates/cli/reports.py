"""Reports of a dry run: gate verdicts (table, JSON, JUnit XML, Markdown) and replays (table, JSON)."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.api.spec import Gate
from checkout_gates.api.status import GateStatus
from checkout_gates.cli.common import EXIT_FAIL, EXIT_INCONCLUSIVE, EXIT_PASS
from checkout_gates.cli.output import Style, format_time, one_line, table
from checkout_gates.gates.verdicts import GateVerdict, VerdictName
from checkout_gates.rollout.replay import ReplayResult

# --- one evaluation -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GateEvaluation:
    """One gate judged once: the verdict, and the context it was judged in."""

    gate: Gate
    verdict: GateVerdict
    window_seconds: float
    canary_share: float
    step: int | None  # the gate step whose window and weight were used, if any


@dataclass(frozen=True)
class Evaluation:
    rollout: CheckoutRollout
    at: datetime
    source: str  # the Prometheus URL
    step: int | None
    gates: tuple[GateEvaluation, ...]

    @property
    def counts(self) -> Counter[VerdictName]:
        return Counter(g.verdict.verdict for g in self.gates)

    @property
    def verdict(self) -> VerdictName:
        counts = self.counts
        return "Fail" if counts["Fail"] else "Inconclusive" if counts["Inconclusive"] else "Pass"

    @property
    def exit_code(self) -> int:
        return {"Pass": EXIT_PASS, "Fail": EXIT_FAIL, "Inconclusive": EXIT_INCONCLUSIVE}[self.verdict]

    def rows(self) -> list[Row]:
        return [row for gate in self.gates for row in _rows(gate)]


@dataclass(frozen=True)
class Row:
    """One gate and segment."""

    gate: str
    segment: str
    canary: str
    stable: str
    samples: str
    rule: str
    verdict: VerdictName
    reason: str


def rule_text(gate: Gate) -> str:
    parts = []
    if gate.min is not None:
        parts.append(f"min {gate.min:g}")
    if gate.max is not None:
        parts.append(f"max {gate.max:g}")
    if gate.compare is not None:
        if gate.compare.max_drop is not None:
            parts.append(f"maxDrop {gate.compare.max_drop}")
        if gate.compare.max_rise is not None:
            parts.append(f"maxRise {gate.compare.max_rise}")
    if gate.min_samples:
        parts.append(f"minSamples {gate.min_samples:,}")
    if gate.method == "sequential":
        if gate.alpha is not None:
            parts.append(f"sequential, own alpha {gate.alpha:g}")
        elif gate.counts == "exact":
            parts.append("sequential, rollout's alpha")
        else:
            parts.append("sequential")
    if gate.critical:
        parts.append("critical")
    return ", ".join(parts)


def _value(value: float | None, *, ratio: bool) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value * 100:.2f}%" if ratio else f"{value:.4g}"


def _samples(samples: float | None) -> str:
    if samples is None or not math.isfinite(samples):
        return "-"
    return f"{math.floor(samples):,}"


def _rows(evaluation: GateEvaluation) -> list[Row]:
    gate, verdict = evaluation.gate, evaluation.verdict
    ratio = gate.signal_kind in ("ratio", "tail")  # a tail value is the share of slow requests
    rule = rule_text(gate)
    if not verdict.segments:
        return [
            Row(
                gate.name,
                verdict.segment or "all",
                _value(verdict.value, ratio=ratio),
                _value(verdict.baseline, ratio=ratio),
                _samples(verdict.samples),
                rule,
                verdict.verdict,
                one_line(verdict.reason),
            )
        ]
    return [
        Row(
            gate.name,
            s.segment,
            _value(s.value, ratio=ratio),
            _value(s.baseline, ratio=ratio),
            _samples(s.samples),
            rule,
            s.verdict,
            one_line(s.reason),
        )
        for s in verdict.segments
    ]


def summary_line(evaluation: Evaluation) -> str:
    counts = evaluation.counts
    meta = evaluation.rollout.metadata
    segments = len(evaluation.rows())
    text = (
        f"{meta.namespace}/{meta.name} at {format_time(evaluation.at)}: {len(evaluation.gates)} gates, "
        f"{segments} segments: {counts['Pass']} pass, {counts['Fail']} fail, {counts['Inconclusive']} inconclusive"
    )
    worst = [g.verdict for g in evaluation.gates if g.verdict.verdict == evaluation.verdict]
    if evaluation.verdict != "Pass" and worst:
        named = ", ".join(f"{v.gate} {v.segment}".strip() for v in worst)
        text += f" -> {evaluation.verdict}: {named}"
    else:
        text += " -> Pass"
    return text


HEADERS = ("GATE", "SEGMENT", "CANARY", "STABLE", "SAMPLES", "RULE", "VERDICT", "REASON")


def evaluation_table(evaluation: Evaluation, style: Style) -> str:
    rows = [(r.gate, r.segment, r.canary, r.stable, r.samples, r.rule, r.verdict, r.reason) for r in evaluation.rows()]
    body = table(HEADERS, rows, style=style, colour_column=6)
    return f"{body}\n\n{style.paint(summary_line(evaluation), evaluation.verdict)}\n"


def evaluation_json(evaluation: Evaluation) -> str:
    meta = evaluation.rollout.metadata
    counts = evaluation.counts
    document = {
        "rollout": f"{meta.namespace}/{meta.name}",
        "prometheus": evaluation.source,
        "at": format_time(evaluation.at),
        "step": evaluation.step,
        "verdict": evaluation.verdict,
        "exitCode": evaluation.exit_code,
        "summary": {
            "gates": len(evaluation.gates),
            "segments": len(evaluation.rows()),
            "pass": counts["Pass"],
            "fail": counts["Fail"],
            "inconclusive": counts["Inconclusive"],
        },
        "gates": [_gate_json(g) for g in evaluation.gates],
    }
    return json.dumps(document, indent=2) + "\n"


def _number(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _gate_json(evaluation: GateEvaluation) -> dict[str, Any]:
    gate, verdict = evaluation.gate, evaluation.verdict
    return {
        "name": gate.name,
        "verdict": verdict.verdict,
        "reason": verdict.reason,
        "segment": verdict.segment,
        "value": _number(verdict.value),
        "baseline": _number(verdict.baseline),
        "samples": _number(verdict.samples),
        "critical": gate.critical,
        "signal": gate.signal_kind,
        "method": gate.method,
        "rule": rule_text(gate),
        "step": evaluation.step,
        "windowSeconds": evaluation.window_seconds,
        "canaryShare": evaluation.canary_share,
        "segments": [
            {
                "segment": s.segment,
                "verdict": s.verdict,
                "reason": s.reason,
                "value": _number(s.value),
                "baseline": _number(s.baseline),
                "samples": _number(s.samples),
            }
            for s in verdict.segments
        ],
    }


def evaluation_junit(evaluation: Evaluation) -> str:
    """JUnit XML: one testcase per gate and segment; Fail is a failure, Inconclusive is skipped."""
    meta = evaluation.rollout.metadata
    rows = evaluation.rows()
    failures = sum(1 for r in rows if r.verdict == "Fail")
    skipped = sum(1 for r in rows if r.verdict == "Inconclusive")
    suites = ET.Element(
        "testsuites", name="checkout-gates evaluate", tests=str(len(rows)), failures=str(failures), errors="0"
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"checkout-gates evaluate {meta.namespace}/{meta.name}",
        tests=str(len(rows)),
        failures=str(failures),
        skipped=str(skipped),
        errors="0",
        time="0",
        timestamp=format_time(evaluation.at),
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("prometheus", evaluation.source),
        ("at", format_time(evaluation.at)),
        ("step", "" if evaluation.step is None else str(evaluation.step)),
    ):
        ET.SubElement(properties, "property", name=name, value=value)
    for row in rows:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"checkout-gates.{meta.namespace}.{meta.name}.{row.gate}",
            name=f"{row.gate} [{row.segment}]",
            time="0",
        )
        detail = (
            f"gate {row.gate}, segment {row.segment}\ncanary {row.canary}, stable {row.stable}, "
            f"samples {row.samples}\nrule: {row.rule}\n{row.reason}"
        )
        if row.verdict == "Fail":
            failure = ET.SubElement(case, "failure", message=row.reason, type="GateFailed")
            failure.text = detail
        elif row.verdict == "Inconclusive":
            ET.SubElement(case, "skipped", message=f"Inconclusive: {row.reason}")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


_MARKS = {"Pass": "✅ Pass", "Fail": "❌ Fail", "Inconclusive": "⚠️ Inconclusive"}


def _md(text: str) -> str:
    return one_line(text).replace("|", "\\|")


def evaluation_markdown(evaluation: Evaluation) -> str:
    """A table for a CI job summary (e.g. ``$GITHUB_STEP_SUMMARY``)."""
    meta = evaluation.rollout.metadata
    counts = evaluation.counts
    step = "" if evaluation.step is None else f", gate step {evaluation.step}"
    lines = [
        f"### checkout-gates evaluate: `{meta.namespace}/{meta.name}` {_MARKS[evaluation.verdict]}",
        "",
        f"{counts['Pass']} pass, {counts['Fail']} fail, {counts['Inconclusive']} inconclusive "
        f"({len(evaluation.gates)} gates, {len(evaluation.rows())} segments) at {format_time(evaluation.at)} "
        f"against {_md(evaluation.source)}{step}.",
        "",
        "| Gate | Segment | Canary | Stable | Samples | Rule | Verdict | Reason |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in evaluation.rows():
        cells = (r.gate, r.segment, r.canary, r.stable, r.samples, r.rule, _MARKS[r.verdict], r.reason)
        lines.append("| " + " | ".join(_md(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def render_evaluation(evaluation: Evaluation, output: str, style: Style) -> str:
    if output == "json":
        return evaluation_json(evaluation)
    if output == "junit":
        return evaluation_junit(evaluation)
    if output == "markdown":
        return evaluation_markdown(evaluation)
    return evaluation_table(evaluation, style)


# --- a replay or backtest -----------------------------------------------------------------------

REPLAY_EXIT = {"promoted": EXIT_PASS, "halted": EXIT_FAIL, "aborted": EXIT_FAIL, "in-progress": EXIT_INCONCLUSIVE}
_OUTCOME_STYLE = {"promoted": "Pass", "halted": "Fail", "aborted": "Fail", "in-progress": "Inconclusive"}


def replay_exit_code(result: ReplayResult) -> int:
    return REPLAY_EXIT[result.outcome]


def _weights(canary: int) -> str:
    return f"{100 - canary}/{canary}"


def final_verdict(result: ReplayResult) -> str:
    """One line: when the rollout was promoted or halted, and on which gate and segment."""
    status = result.status
    at = format_time(result.decided_at)
    if result.outcome == "promoted":
        return f"promoted at {at} (all {len(result.rollout.spec.steps)} steps passed)"
    if result.outcome in ("halted", "aborted"):
        gate = result.deciding_gate
        where = f" on gate {gate.name}" + (f", segment {gate.segment}" if gate.segment else "") if gate else ""
        return (
            f"{result.outcome} at {at}{where} (step {status.current_step}, canary {status.weights.canary}%)\n"
            f"  reason: {one_line(status.halt_reason)}"
        )
    last = format_time(result.last_time)
    return (
        f"still in progress at {last}: phase {status.phase}, step {status.current_step}, "
        f"canary {status.weights.canary}%" + (f"; {one_line(status.message)}" if status.message else "")
    )


def replay_table(result: ReplayResult, style: Style, *, title: str) -> str:
    rows = [
        (format_time(t.time), str(t.step), t.action, _weights(t.canary_weight), t.actor, one_line(t.reason))
        for t in result.transitions
    ]
    parts = [title, "", table(("TIME", "STEP", "ACTION", "WEIGHTS", "ACTOR", "REASON"), rows, style=style)]
    if result.status.gates:
        gate_rows = [_gate_row(g) for g in result.status.gates]
        parts += [
            "",
            f"last verdicts ({format_time(max(g.evaluated_at for g in result.status.gates))}):",
            table(("GATE", "VERDICT", "SEGMENT", "REASON"), gate_rows, style=style, colour_column=1),
        ]
    counted = (
        f"{result.decisions} decisions, {result.evaluations} evaluations from {format_time(result.first_time)} "
        f"to {format_time(result.last_time)}"
    )
    parts += ["", counted, style.paint(final_verdict(result), _OUTCOME_STYLE[result.outcome])]
    return "\n".join(parts) + "\n"


def _gate_row(gate: GateStatus) -> tuple[str, str, str, str]:
    return (gate.name, gate.verdict, gate.segment or "all", one_line(gate.reason))


def replay_json(result: ReplayResult, *, source: dict[str, Any]) -> str:
    status = result.status
    meta = result.rollout.metadata
    gate = result.deciding_gate
    document = {
        "rollout": f"{meta.namespace}/{meta.name}",
        **source,
        "outcome": result.outcome,
        "exitCode": replay_exit_code(result),
        "phase": status.phase,
        "step": status.current_step,
        "weights": {"stable": status.weights.stable, "canary": status.weights.canary},
        "decidedAt": format_time(result.decided_at) if result.decided_at else None,
        "gate": gate.name if gate else None,
        "segment": gate.segment if gate else None,
        "reason": status.halt_reason or status.message,
        "verdict": final_verdict(result),
        "from": format_time(result.first_time) if result.first_time else None,
        "to": format_time(result.last_time) if result.last_time else None,
        "decisions": result.decisions,
        "evaluations": result.evaluations,
        "transitions": [
            {
                "time": format_time(t.time),
                "step": t.step,
                "action": t.action,
                "actor": t.actor,
                "weights": {"stable": 100 - t.canary_weight, "canary": t.canary_weight},
                "phase": t.phase,
                "reason": t.reason,
            }
            for t in result.transitions
        ],
        "gates": [g.model_dump(mode="json", by_alias=True, exclude_none=True) for g in status.gates],
    }
    return json.dumps(document, indent=2) + "\n"
