"""What became of a rollout, read from its status: the outcome, where and why it stopped, when."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from checkout_gates.api.status import CheckoutRolloutStatus, HistoryEntry

DECIDED = ("Promoted", "Halted", "Aborted")
_GATE_IN_REASON = (
    re.compile(r"^(?:critical )?gate (?P<gate>[a-z0-9-]+) failed"),
    re.compile(r"^no conclusive evidence after \d+ evaluations: (?P<gate>[a-z0-9-]+):"),
)


@dataclass(frozen=True)
class Facts:
    namespace: str
    name: str
    status: CheckoutRolloutStatus
    started_at: datetime | None  # the rollout's Started entry
    decided_at: datetime | None  # when it was promoted, halted or aborted (None: not yet)
    step: int  # the step it was promoted, halted or aborted at (else the current step)
    weight: int  # the highest canary weight it reached (before an abort took it to 0)
    gate: str  # the gate named by the halt ("" when promoted, or a halt by hand or drift)
    segment: str  # that gate's deciding segment

    @property
    def phase(self) -> str:
        return self.status.phase

    @property
    def decided(self) -> bool:
        return self.decided_at is not None

    @property
    def halted(self) -> bool:
        return self.phase in ("Halted", "Aborted")

    def seconds(self, since: datetime | None = None) -> float | None:
        """Seconds from ``since`` (default: the start) to the decision; None if undecided."""
        origin = since or self.started_at
        if self.decided_at is None or origin is None:
            return None
        return (self.decided_at - origin).total_seconds()

    def weight_at(self, moment: datetime) -> int:
        """The canary weight in force at ``moment``, from the history (0 before the first step)."""
        weight = 0
        for entry in self.status.history:
            if entry.time > moment:
                break
            if entry.action not in ("Aborted",):
                weight = entry.canary_weight
        return weight


def gate_of(reason: str) -> str:
    """The gate a halt reason names ("" if none)."""
    for pattern in _GATE_IN_REASON:
        match = pattern.match(reason)
        if match:
            return match.group("gate")
    return ""


def facts(rollout: Mapping[str, Any]) -> Facts:
    meta: Mapping[str, Any] = rollout.get("metadata") or {}
    status = CheckoutRolloutStatus.model_validate(rollout.get("status") or {})
    history: list[HistoryEntry] = list(status.history)
    # The latest rollout's start: with a workloadRef the first Started is the adoption of the first
    # revision, and each new revision starts a rollout of its own.
    started = next((e.time for e in reversed(history) if e.action == "Started"), None)
    started = started or next((e.time for e in history if e.action == "Restarted"), None)
    decision = next((e for e in reversed(history) if e.action in DECIDED), None)
    if status.phase not in DECIDED:
        decision = None
    before = [e for e in history if decision is None or e.time <= decision.time]
    weight = max((e.canary_weight for e in before if e.action != "Aborted"), default=status.weights.canary)
    gate = gate_of(status.halt_reason) if decision is not None and decision.action != "Promoted" else ""
    segment = next((g.segment for g in status.gates if g.name == gate), "") if gate else ""
    return Facts(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        status=status,
        started_at=started,
        decided_at=decision.time if decision else None,
        step=decision.step if decision else status.current_step,
        weight=weight,
        gate=gate,
        segment=segment,
    )
