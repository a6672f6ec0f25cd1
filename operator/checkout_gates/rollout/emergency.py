"""Emergency controls: skip the current step, promote at once past every remaining step, or break
the CheckoutFreeze that holds the rollout.

Each overrides what the gates, approvers or change control would decide, so each needs an
approver (the chart's admission policy) who is not the change's author, and a reason
(``gates.checkout.dev/reason``: the core refuses one without it); each is recorded with who and
why, and sent to every page target of the owner at severity warning (a notice of the override:
there is no halt to resolve): an override nobody hears of is how a payments incident starts.
None runs on a Promoted, Aborted or adopting rollout, nor while a promotion is under way; skip
and promote are refused in a freeze (they would run unattended when it ends: break it first).
"""

from __future__ import annotations

from checkout_gates.rollout import approvals, freeze, notices, release
from checkout_gates.rollout.draft import Draft

OVERRIDABLE = ("Progressing", "AwaitingApproval", "Halted", "Paused")
REASON_LIMIT = 512


def override(draft: Draft, command: str, actor: str, reason: str | None) -> str | None:
    """Carry out ``skip-step`` or ``promote-full`` by ``actor``; why not, or None when done."""
    if not (reason or "").strip():
        return f"{command} needs a reason: set gates.checkout.dev/reason in the same request (--reason)"
    why = (reason or "").strip()[:REASON_LIMIT]
    if actor in approvals.authors(draft):
        return f"{actor} made the change under rollout: the author of a change cannot override its gates"
    phase = draft.status.phase
    if phase not in OVERRIDABLE:
        return f"cannot {command} in phase {phase}"
    if command == "break-freeze":
        state = draft.status.freeze
        refused = freeze.break_glass(draft, actor, why)
        if refused is not None or state is None:
            return refused
        until = draft.status.freeze_breaks[-1].until
        what = f"freeze {state.name or '(unreadable)'} broken by {actor} until {until.isoformat()}: {why}"
        draft.record("FreezeBroken", what, actor)
        draft.emit("FreezeBroken", what, warning=True)
        notices.override(draft, "FreezeBroken", what)
        return None
    if freeze.holds(draft):
        # An override now would run unattended once the window ends: break the freeze first.
        return (
            f"a CheckoutFreeze holds exposure: {command} would wait for its end; break-freeze first (with its reason)"
        )
    if release.adopting(draft) or release.promoting(draft):
        return "the stable copy is taking a revision: nothing is left to skip"
    steps, index = draft.spec.steps, draft.status.current_step
    if index >= len(steps) and command == "skip-step":
        return "no step is left to skip"
    target = index + 1 if command == "skip-step" else len(steps)
    for later in range(index, target):
        approval = steps[later].approval
        if approval is not None and approval.approvers > 1:
            return (
                f"step {later} asks for {approval.approvers} approvers: one person's {command} cannot stand in "
                "for them (get the approvals, or abort)"
            )
    if command == "skip-step":
        what = f"step {index} skipped ({_kind(draft, index)}) by {actor}: {why}"
        action = "StepSkipped"
    else:
        what = f"promoted by {actor} past steps {index}..{len(steps) - 1}: {why}"
        action = "PromotedFull"
    draft.resolve_page()  # what it paged about is overridden; the override pages on its own
    draft.update(phase="Progressing", halt_reason="", paused_from=None)
    if command == "promote-full":
        draft.update(exposure_ceiling=None)  # the override vouches for the exposure: said and paged
    draft.start_step(target)
    draft.record(action, what, actor)
    draft.emit(action, what, warning=True)
    notices.override(draft, action, what)
    return None


def _kind(draft: Draft, index: int) -> str:
    step = draft.spec.steps[index]
    if step.set_weight is not None:
        return f"setWeight {step.set_weight}"
    if step.gate is not None:
        return f"gate {', '.join(step.gate.pass_)}"
    if step.approval is not None:
        return f"approval for {step.approval.approvers}"
    return "pause"
