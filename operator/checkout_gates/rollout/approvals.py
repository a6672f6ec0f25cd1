"""Four eyes on an approval step: N distinct approvers, never the author of the change.

The chart's admission policy refuses an approval by the author at the API server (with the
reason); this is the same rule in the core, so that it also holds where no admission policy runs
and for an author it cannot see (a Deployment's template stamped after the annotation was set).
An approval is counted once per person; each is kept in ``status.approvals`` with who, when and
why until the step changes, and the history records each one.
"""

from __future__ import annotations

from checkout_gates.api.status import Approval
from checkout_gates.rollout.annotations import spec_author
from checkout_gates.rollout.draft import Draft

REASON_LIMIT = 512


def authors(draft: Draft) -> set[str]:
    """Who made the change under rollout, as admission recorded it: whoever last changed the
    rollout's spec and, with a workloadRef, whoever changed the Deployment to the canary revision."""
    found = {spec_author(draft.rollout.metadata.annotations)}
    revisions = draft.status.revisions
    if draft.spec.workload_ref is not None and revisions is not None and revisions.canary is not None:
        found.add(revisions.canary.author)
    return found - {""}


def needed(draft: Draft) -> int:
    """How many distinct approvers the current step asks for (1 outside an approval step)."""
    steps, index = draft.spec.steps, draft.status.current_step
    step = steps[index].approval if index < len(steps) else None
    return step.approvers if step is not None else 1


def approve(draft: Draft, actor: str, reason: str) -> str | None:
    """Count ``actor``'s approval of the approval step the rollout waits at. Returns why it does
    not count (the caller records it as ignored), or None; the step opens once enough counted."""
    if actor in authors(draft):
        return (
            f"{actor} made the change under rollout (as admission recorded it): the author of a change "
            "cannot approve it; another approver must"
        )
    required = needed(draft)
    given = list(draft.status.approvals)
    if any(approval.actor == actor for approval in given):
        return f"{actor} approved already ({len(given)} of {required}): one person counts once"
    given.append(Approval(actor=actor, at=draft.now, reason=reason[:REASON_LIMIT]))
    index = draft.status.current_step
    if len(given) < required:
        draft.update(approvals=given)
        draft.record("ApprovalRecorded", f"{reason} ({len(given)} of {required} approvers)", actor)
        draft.emit(
            "ApprovalRecorded", f"{actor} approved step {index}: {len(given)} of {required}, another approver must"
        )
        return None
    names = ", ".join(approval.actor for approval in given)
    draft.record("Approved", reason if required == 1 else f"{reason} (approved by {names})", actor)
    draft.emit("Approved", f"{names} approved step {index}")
    draft.update(phase="Progressing")
    draft.start_step(index + 1)
    return None
