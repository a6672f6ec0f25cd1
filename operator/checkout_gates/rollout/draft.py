"""The decision being built, and the transitions every part of the state machine shares.

``Draft`` holds the status as it is replaced copy by copy and the actions in order; ``halt`` and
``abort`` are the two ways exposure stops (with the one page each opens). rollout/machine.py and
rollout/release.py (the workload's lifecycle) build on it; nothing here does I/O or reads a clock.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.api.spec import CheckoutRolloutSpec
from checkout_gates.api.status import HISTORY_LIMIT, CheckoutRolloutStatus, HistoryEntry, Weights
from checkout_gates.rollout import audit, pages
from checkout_gates.rollout.actions import Action, EmitEvent, SetWeights

OPERATOR = "checkout-gates"


class Draft:
    """The decision being built: status replaced copy by copy, actions appended in order."""

    def __init__(self, rollout: CheckoutRollout, now: datetime) -> None:
        self.rollout = rollout
        self.spec: CheckoutRolloutSpec = rollout.spec
        self.now = now
        self.status: CheckoutRolloutStatus = rollout.status
        self.actions: list[Action] = []

    def update(self, **fields: Any) -> None:
        self.status = self.status.model_copy(update=fields)

    def record(self, action: str, reason: str, actor: str = OPERATOR) -> None:
        """A transition: history entry plus a new epoch (which retires consumed annotations).
        The entry is numbered by that epoch and carries the gates' evidence and the canary
        revision of the moment: it is the audit record (rollout/audit.py)."""
        revisions = self.status.revisions
        revision = revisions.canary.hash if revisions is not None and revisions.canary is not None else ""
        entry = HistoryEntry(
            time=self.now,
            actor=actor,
            action=action,
            reason=reason[:1024],
            step=self.status.current_step,
            canary_weight=self.status.weights.canary,
            generation=self.rollout.metadata.generation,
            seq=self.status.epoch + 1,
            revision=revision,
            evidence=audit.evidence(self.status.gates),
        )
        history = [*self.status.history, entry][-HISTORY_LIMIT:]
        self.update(history=history, epoch=self.status.epoch + 1)

    def emit(self, reason: str, message: str, warning: bool = False) -> None:
        self.actions.append(EmitEvent(reason, message, "Warning" if warning else "Normal"))

    def set_weight(self, canary: int, reason: str) -> None:
        weights = Weights.canary_at(canary)
        self.update(weights=weights)
        self.actions.append(SetWeights(weights, reason))

    def start_step(self, index: int) -> None:
        self.update(
            current_step=index,
            step_started_at=self.now,
            failures=0,
            inconclusives=0,
            last_evaluated_at=None,
            approvals=[],
            gates=[gate.model_copy(update={"passing_since": None}) for gate in self.status.gates],
        )

    def start_evidence(self) -> None:
        """A new test: the rollout starts, restarts or on-call retries it; the carried evidence
        counts from now (a retry after a rejection must not meet the same rejection at once)."""
        self.update(evidence_since=self.now)

    def resolve_page(self) -> None:
        if self.status.page is not None and self.status.page.resolved_at is None:
            self.update(page=pages.resolve(self.status.page, self.now))


def abort(draft: Draft, reason: str, actor: str, *, page: bool, slug: str = "") -> None:
    draft.update(phase="Aborted", halt_reason=reason, paused_from=None)
    draft.set_weight(0, f"aborted: {reason}")
    draft.record("Aborted", reason, actor)
    draft.emit("Aborted", f"{actor}: {reason}", warning=True)
    if page:
        open_page(draft, slug, reason)
    else:
        draft.resolve_page()


def halt(draft: Draft, reason: str, slug: str, *, critical: bool = False, hold: bool = False) -> None:
    """Stop exposure growing and page. ``hold`` never aborts, whatever onHalt says: for halts where
    taking the canary's traffic away would send it to a side with no pods (adoption, a stable copy
    gone or half-way through a promotion)."""
    if not hold and (critical or draft.spec.on_halt == "abort"):
        abort(draft, reason, OPERATOR, page=True, slug=slug)
        return
    draft.update(phase="Halted", halt_reason=reason, paused_from=None)
    draft.record("Halted", reason)
    draft.emit("Halted", f"exposure held at {draft.status.weights.canary}%: {reason}", warning=True)
    open_page(draft, slug, reason)


def open_page(draft: Draft, slug: str, reason: str) -> None:
    meta = draft.rollout.metadata
    summary = (
        f"checkout-gates {meta.namespace}/{meta.name}: {draft.status.phase.lower()} at "
        f"{draft.status.weights.canary}% canary (step {draft.status.current_step}): {reason}"
    )
    draft.update(
        page=pages.open_page(
            draft.rollout,
            step=draft.status.current_step,
            reason_slug=slug,
            summary=summary,
            now=draft.now,
            epoch=draft.status.epoch,
        )
    )


def weights_pending(status: CheckoutRolloutStatus) -> bool:
    return status.router_target != status.weights
