"""What the demo prints while the rollout runs and when it is over.

On a terminal the status view of ``checkout-gates status`` (``cli/render.py``) is redrawn in place;
otherwise (a pipe, a log, a test) one plain line per change: phase, step, weight, verdict, and each
new history entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from checkout_gates.api.status import HistoryEntry
from checkout_gates.cli.output import colour_for, format_time, paint
from checkout_gates.cli.render import render_status, view_of
from checkout_gates_lab.demo.outcome import Facts

CLEAR = "\x1b[H\x1b[2J"


def clock(seconds: float) -> str:
    """``1m05s``, ``42s``, ``2.3s``."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    return f"{whole // 60}m{whole % 60:02d}s" if whole >= 60 else f"{whole}s"


class LiveView:
    """Shows one rollout as it changes. ``show(raw, header)`` once a second or so."""

    def __init__(self, out: TextIO, *, terminal: bool | None = None) -> None:
        self.out = out
        self.terminal = out.isatty() if terminal is None else terminal
        self.colour = colour_for(out)
        self._last_line = ""
        self._history_seen = 0
        self._notes: list[str] = []
        self._started = datetime.now(UTC)

    def show(self, raw: Mapping[str, Any], header: Sequence[str] = ()) -> None:
        if self.terminal:
            self._redraw(raw, header)
        else:
            self._lines(raw)

    def note(self, line: str) -> None:
        """A line that stays (an approval given, a page seen)."""
        if self.terminal:
            self._notes.append(line)
        else:
            self.out.write(f"{self._elapsed()}  {line}\n")
            self.out.flush()

    def _elapsed(self) -> str:
        seconds = (datetime.now(UTC) - self._started).total_seconds()
        return f"+{clock(seconds):>6}"

    def _redraw(self, raw: Mapping[str, Any], header: Sequence[str]) -> None:
        body = render_status(view_of(raw), now=datetime.now(UTC), colour=self.colour)
        notes = self._notes[-6:]
        text = "\n".join([*header, "", body, *(["", *notes] if notes else []), "", "(Ctrl-C stops the demo)"])
        self.out.write(CLEAR + text + "\n")
        self.out.flush()

    def _lines(self, raw: Mapping[str, Any]) -> None:
        view = view_of(raw)
        status = view.status
        history = status.history
        # History is bounded: if it was trimmed, show what is new by position from the end.
        new = history[self._history_seen :] if self._history_seen <= len(history) else history
        for entry in new:
            self.out.write(f"{self._elapsed()}  {history_line(entry)}\n")
        self._history_seen = len(history)
        total = len(view.steps)
        line = (
            f"{status.phase}  step {min(status.current_step, total)}/{total}  canary {status.weights.canary}%"
            f"  gates: {status.verdict or '-'}"
        )
        if line != self._last_line:
            self._last_line = line
            self.out.write(f"{self._elapsed()}  {line}\n")
        self.out.flush()


def history_line(entry: HistoryEntry) -> str:
    return f"{entry.action} by {entry.actor} at step {entry.step}, canary {entry.canary_weight}%: {entry.reason}"


def alert_lines(alert: Mapping[str, Any]) -> list[str]:
    labels: Mapping[str, str] = alert.get("labels") or {}
    annotations: Mapping[str, str] = alert.get("annotations") or {}
    order = ["alertname", "severity", "namespace", "rollout", "owner", "dedup_key"]
    names = [n for n in order if n in labels] + sorted(n for n in labels if n not in order)
    lines = ["  labels:"]
    lines += [f"    {name}: {labels[name]}" for name in names]
    lines.append(f"  summary: {annotations.get('summary', '-')}")
    for key in ("gate", "segment", "value", "baseline"):
        if annotations.get(key):
            lines.append(f"  {key}: {annotations[key]}")
    state = (alert.get("status") or {}).get("state", "")
    lines.append(f"  startsAt: {alert.get('startsAt', '-')}  state: {state or '-'}")
    return lines


def summary_lines(
    facts: Facts,
    *,
    expected: str,
    ok: bool,
    elapsed: float,
    fault_started: datetime | None,
    alerts: Sequence[Mapping[str, Any]],
    alertmanager: str,
    colour: bool = False,
    release: Sequence[str] = (),
) -> list[str]:
    """The closing summary: outcome against the expectation, history, timings and the alert."""
    status = facts.status
    verdict = paint("as expected", "Pass", colour) if ok else paint("NOT as expected", "Fail", colour)
    lines = ["", paint("== summary ==", "bold", colour)]
    where = f"step {facts.step}, canary {facts.weight}%"
    if facts.phase == "Aborted":
        where += " (now 0%)"
    lines.append(f"outcome:   {paint(facts.phase, facts.phase, colour)} at {where}: {verdict} (expected: {expected})")
    lines += release
    if facts.halted:
        lines.append(f"reason:    {status.halt_reason}")
        if facts.gate:
            lines.append(f"gate:      {facts.gate}  segment {facts.segment or 'all'}")
    took = facts.seconds()
    timing = f"rollout {clock(took)}" if took is not None else "rollout not decided"
    if fault_started is not None and facts.decided_at is not None and facts.halted:
        since = max(fault_started, facts.started_at) if facts.started_at else fault_started
        timing += f", halted {clock((facts.decided_at - since).total_seconds())} after the fault became active"
    lines.append(f"time:      {timing}; demo {clock(elapsed)} in all")
    lines.append("history:")
    for entry in status.history:
        lines.append(f"  {format_time(entry.time)}  {history_line(entry)}")
    if alerts:
        noun = "alert" if len(alerts) == 1 else "alerts"
        lines.append(f"page:      {len(alerts)} {noun} in Alertmanager ({alertmanager}/api/v2/alerts)")
        for alert in alerts:
            lines += alert_lines(alert)
    elif facts.halted:
        lines.append(f"page:      no alert in Alertmanager ({alertmanager})")
    else:
        lines.append("page:      none (nothing halted)")
    return lines
