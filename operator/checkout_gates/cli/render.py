"""Pure rendering of rollouts for people (text) and scripts (JSON): no cluster, no clock.

Input is a CheckoutRollout as the API server returns it (a dict) or the model; ``now`` comes in
as an argument, for ages. Used by ``status``, ``list``, the on-call commands and the demo.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.api.spec import SIGNALS
from checkout_gates.api.status import CheckoutRolloutStatus, GateStatus, HistoryEntry, PageState, Weights
from checkout_gates.cli.output import format_time, one_line, paint, table_lines
from checkout_gates.rollout.annotations import pending_requests

HISTORY_SHOWN = 5


@dataclass(frozen=True)
class RolloutView:
    """What the views show of one rollout, read tolerantly from its wire form."""

    namespace: str
    name: str
    created: datetime | None
    steps: tuple[str, ...]
    gate_kinds: Mapping[str, str]
    pending: tuple[tuple[str, str], ...]  # (command, actor) of on-call requests not consumed yet
    status: CheckoutRolloutStatus


def view_of(rollout: CheckoutRollout | Mapping[str, Any]) -> RolloutView:
    """The view of a rollout; ValueError (pydantic's) when its status cannot be read."""
    raw: Mapping[str, Any]
    if isinstance(rollout, CheckoutRollout):
        raw = rollout.model_dump(mode="json", by_alias=True, exclude_none=True)
    else:
        raw = rollout
    meta: Mapping[str, Any] = raw.get("metadata") or {}
    spec: Mapping[str, Any] = raw.get("spec") or {}
    annotations = {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}
    created = meta.get("creationTimestamp")
    return RolloutView(
        namespace=one_line(str(meta.get("namespace", ""))),
        name=one_line(str(meta.get("name", ""))),
        created=_parse_time(created) if isinstance(created, str) else None,
        steps=tuple(step_label(step) for step in spec.get("steps") or []),
        gate_kinds={str(g.get("name")): _gate_kind(g) for g in spec.get("gates") or [] if isinstance(g, dict)},
        pending=tuple((one_line(r.command), one_line(r.actor)) for r in pending_requests(annotations)),
        status=CheckoutRolloutStatus.model_validate(raw.get("status") or {}),
    )


def step_label(step: Any) -> str:
    """One step of the spec in a few words: ``setWeight 5%``, ``gate a, b for 10m``, ``approval``."""
    if not isinstance(step, Mapping):
        return one_line(str(step))
    if "setWeight" in step:
        return f"setWeight {step['setWeight']}%"
    if isinstance(step.get("gate"), Mapping):
        gate = step["gate"]
        return one_line(f"gate {', '.join(str(n) for n in gate.get('pass', []))} for {gate.get('window', '?')}")
    if "approval" in step:
        reason = (step.get("approval") or {}).get("reason", "")
        return one_line(f"approval ({reason})") if reason else "approval"
    if isinstance(step.get("pause"), Mapping):
        return one_line(f"pause {step['pause'].get('duration', '?')}")
    return json.dumps(step, sort_keys=True)


def _gate_kind(gate: Mapping[str, Any]) -> str:
    return next((kind for kind in SIGNALS if kind in gate), "")


# --- small formatters ---------------------------------------------------------------------------


def age(moment: datetime | None, now: datetime) -> str:
    """Like kubectl's AGE column: 45s, 12m, 5h, 3d."""
    if moment is None:
        return "-"
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 120 * 60:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def _when(moment: datetime | None, now: datetime) -> str:
    return "-" if moment is None else f"{format_time(moment)} ({age(moment, now)} ago)"


def _number(value: float | None, kind: str) -> str:
    if value is None:
        return "-"
    return f"{value * 100:.2f}%" if kind == "ratio" else f"{value:.4g}"


def _weights(weights: Weights | None) -> str:
    return "unknown" if weights is None else f"stable {weights.stable}%  canary {weights.canary}%"


# --- status -------------------------------------------------------------------------------------


def render_status(view: RolloutView, *, now: datetime, colour: bool = False) -> str:
    """The compact view of ``checkout-gates status``."""
    status = view.status
    total = len(view.steps)
    lines = [
        f"{paint(f'{view.namespace}/{view.name}', 'bold', colour)}  {paint(status.phase, status.phase, colour)}"
        f"  step {min(status.current_step, total)}/{total}  canary {status.weights.canary}%"
        f"  age {age(view.created, now)}"
    ]
    if status.message:
        lines.append(f"  {one_line(status.message)}")
    lines += [f"  pending: {command} by {actor}" for command, actor in view.pending]
    lines.append("steps:")
    for index, label in enumerate(view.steps):
        marker = ">" if index == status.current_step and status.phase != "Promoted" else " "
        lines.append(f"  {marker} {index:>2}  {label}")
    lines.append(f"weights:  {_weights(status.weights)}")
    lines.append(f"router:   {_weights(status.router_weights)}")
    lines += _revision_lines(status)
    lines += _gate_lines(view, now=now, colour=colour)
    lines += _page_lines(status.page, now=now)
    lines += _history_lines(status, now=now)
    return "\n".join(lines)


def _revision_lines(status: Any) -> list[str]:
    """Which revision each side runs, for a rollout with a workloadRef (nothing otherwise)."""
    revisions = status.revisions
    if revisions is None:
        return []

    def shown(revision: Any) -> str:
        return f"{revision.hash} ({', '.join(one_line(i) for i in revision.images) or 'no images'})"

    lines = [f"stable:   {shown(revisions.stable) if revisions.stable else 'none yet (adopting)'}"]
    if revisions.canary is not None:
        state = "promoting" if revisions.promoting else "Ready" if revisions.canary_ready_at else "not Ready yet"
        lines.append(f"canary:   {shown(revisions.canary)}, {state}")
    if revisions.error:
        lines.append(f"workload: {one_line(revisions.error)}")
    return lines


def _gate_lines(view: RolloutView, *, now: datetime, colour: bool) -> list[str]:
    gates = view.status.gates
    if not gates:
        return ["gates:    not evaluated yet"]
    rows: list[list[str]] = []
    for gate in gates:
        kind = view.gate_kinds.get(gate.name, "")
        rows.append(_gate_row(gate.name, gate.verdict, gate.segment, gate, kind, gate.reason))
        for segment in gate.segments:
            if segment.verdict != "Pass" and segment.segment != gate.segment:
                rows.append(_gate_row("", segment.verdict, segment.segment, segment, kind, segment.reason))
    evaluated = max(gate.evaluated_at for gate in gates)
    header = f"gates, evaluated {_when(evaluated, now)}:"
    headers = ("GATE", "VERDICT", "SEGMENT", "CANARY", "STABLE", "SAMPLES", "REASON")
    return [header, *table_lines(headers, rows, colour=colour, colour_column=1, indent="  ")]


def _gate_row(name: str, verdict: str, segment: str, numbers: Any, kind: str, reason: str) -> list[str]:
    samples = "-" if numbers.samples is None else f"{numbers.samples:.0f}"
    value, baseline = _number(numbers.value, kind), _number(numbers.baseline, kind)
    return [one_line(name), verdict, one_line(segment) or "-", value, baseline, samples, one_line(reason)]


def _page_lines(page: PageState | None, *, now: datetime) -> list[str]:
    if page is None:
        return ["page:     none"]
    state = "resolved" if page.resolved_at else "escalated" if page.escalated_at else "open"
    lines = [
        f"page:     {state}  key {one_line(page.dedup_key)}",
        f"  triggered {_when(page.triggered_at, now)}  escalated {_when(page.escalated_at, now)}"
        f"  resolved {_when(page.resolved_at, now)}",
        f"  {one_line(page.summary)}",
    ]
    for delivery in page.deliveries:
        if delivery.error:
            outcome = f"failed after {delivery.attempts} attempts: {one_line(delivery.error)}"
        else:
            outcome = f"delivered {format_time(delivery.delivered_at)}" if delivery.delivered_at else "not sent yet"
        lines.append(f"  {one_line(delivery.target)}: {outcome}")
    return lines


def _history_lines(status: CheckoutRolloutStatus, *, now: datetime) -> list[str]:
    entries = status.history[-HISTORY_SHOWN:]
    if not entries:
        return ["history:  none"]
    rows = [[format_time(e.time), one_line(e.actor), one_line(e.action), one_line(e.reason)] for e in reversed(entries)]
    title = f"history (newest first, {len(entries)} of {len(status.history)}):"
    return [title, *table_lines(("TIME", "ACTOR", "ACTION", "REASON"), rows, colour=False, indent="  ")]


def status_json(view: RolloutView, *, now: datetime) -> dict[str, Any]:
    """The same facts as render_status, as JSON-ready data (camelCase like the API)."""
    status = view.status
    return {
        "namespace": view.namespace,
        "name": view.name,
        "phase": status.phase,
        "message": status.message,
        "age": age(view.created, now),
        "currentStep": status.current_step,
        "steps": [
            {"index": i, "step": label, "current": i == status.current_step and status.phase != "Promoted"}
            for i, label in enumerate(view.steps)
        ],
        "weights": status.weights.to_wire(),
        "routerWeights": None if status.router_weights is None else status.router_weights.to_wire(),
        "verdict": status.verdict,
        "haltReason": status.halt_reason,
        "gates": [_gate_json(gate) for gate in status.gates],
        "page": None if status.page is None else status.page.to_wire(),
        "pending": [{"command": command, "actor": actor} for command, actor in view.pending],
        "history": [entry.to_wire() for entry in status.history[-HISTORY_SHOWN:]],
    }


def _gate_json(gate: GateStatus) -> dict[str, Any]:
    return gate.model_dump(mode="json", by_alias=True, exclude={"passing_since"})


# --- list ---------------------------------------------------------------------------------------

LIST_HEADERS = ("NAMESPACE", "NAME", "PHASE", "STEP", "CANARY", "VERDICT", "AGE")


def list_rows(views: Sequence[RolloutView], *, now: datetime) -> list[list[str]]:
    rows = []
    for view in sorted(views, key=lambda v: (v.namespace, v.name)):
        status = view.status
        step = f"{min(status.current_step, len(view.steps))}/{len(view.steps)}"
        verdict = one_line(status.verdict) or "-"
        rows.append([view.namespace, view.name, status.phase, step, f"{status.weights.canary}%", verdict])
        rows[-1].append(age(view.created, now))
    return rows


def render_list(views: Sequence[RolloutView], *, now: datetime, colour: bool = False) -> str:
    if not views:
        return "no CheckoutRollouts found"
    lines = table_lines(LIST_HEADERS, list_rows(views, now=now), colour=colour, colour_column=2, indent="  ")
    return "\n".join(line[2:] for line in lines)


def list_json(views: Sequence[RolloutView], *, now: datetime) -> list[dict[str, str]]:
    keys = ("namespace", "name", "phase", "step", "canary", "verdict", "age")
    return [dict(zip(keys, row, strict=True)) for row in list_rows(views, now=now)]


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- on-call outcomes ---------------------------------------------------------------------------

APPLIED_ACTIONS = frozenset(
    {
        "Approved",
        "ApprovalRecorded",
        "StepSkipped",
        "PromotedFull",
        "Aborted",
        "Retried",
        "Paused",
        "Resumed",
        "Acknowledged",
        "UndoRequested",
    }
)


@dataclass(frozen=True)
class Outcome:
    applied: bool
    line: str


def new_entries(before: Sequence[HistoryEntry], after: Sequence[HistoryEntry]) -> list[HistoryEntry]:
    """The entries of ``after`` recorded since ``before`` (history is bounded, so match, do not count)."""
    if not before:
        return list(after)
    last = before[-1]
    for index in range(len(after) - 1, -1, -1):
        if after[index] == last:
            return list(after[index + 1 :])
    return list(after)


def request_outcome(before: RolloutView, after: RolloutView, *, command: str, actor: str) -> Outcome:
    """What the operator did with ``command`` by ``actor``: the newest new history entry of that actor."""
    mine = [e for e in new_entries(before.status.history, after.status.history) if e.actor == actor]
    if not mine:
        return Outcome(
            False,
            f"Ignored: the {one_line(command)} by {one_line(actor)} repeated one already consumed; nothing changed",
        )
    entry = mine[-1]
    if entry.action not in APPLIED_ACTIONS:
        reason = entry.reason.removeprefix(f"{command} by {actor}: ")
        return Outcome(False, f"{one_line(entry.action)}: {one_line(reason)}")
    was, now = before.status, after.status
    steps = f"at step {now.current_step}"
    if was.current_step != now.current_step:
        steps = f"step {was.current_step} -> step {now.current_step}"
    canary = f"canary {now.weights.canary}%"
    if was.weights.canary != now.weights.canary:
        canary = f"canary {was.weights.canary}% -> {now.weights.canary}%"
    return Outcome(True, f"{one_line(entry.action)} by {one_line(actor)}: {steps}, {canary}; phase {now.phase}")
