"""Four eyes on an approval step: N distinct approvers, never the author of the change.

The chart's admission policy refuses an approval by the author at the API server (with the
reason); this is the same rule in the core, so that it also holds where no admission policy runs
and for an author it cannot see (a Deployment's template stamped after the annotation was set).
An approval is counted once per person; each is kept in ``status.approvals`` with who, when and
why until the step changes, and the history records each one.
"""

from __future__ import annotations

from collections.abc import Callable

from checkout_gates.api.status import Approval
from checkout_gates.rollout.annotations import spec_author
from checkout_gates.rollout.draft import Draft

REASON_LIMIT = 512


AUTHORS_LIMIT = 16


def authors(draft: Draft) -> set[str]:
    """Who made the change under rollout, as admission recorded it: everyone who changed the
    rollout's spec or the Deployment to a revision of it since the rollout started from rest (not
    only the last: a restart by someone else must not launder the first author's change)."""
    found = {*draft.status.authors, spec_author(draft.rollout.metadata.annotations)}
    revisions = draft.status.revisions
    if draft.spec.workload_ref is not None and revisions is not None and revisions.canary is not None:
        found.add(revisions.canary.author)
    return found - {""}


def remember_authors(draft: Draft) -> None:
    """Keep the authors of this decision's state in status (the oldest kept first when full)."""
    known = list(draft.status.authors)
    for author in sorted(authors(draft) - set(known)):
        known.append(author)
    if known != draft.status.authors:
        draft.update(authors=known[-AUTHORS_LIMIT:])


def forget_authors(draft: Draft) -> None:
    """A rollout starts from rest (first start, or a new revision after a promotion or an abort)."""
    draft.update(authors=[])


def keep_on_resume(draft: Draft, resume: Callable[[], None]) -> None:
    """Resume (pause over) without dropping the approvals given or restarting the approval
    step's deadline: a pause must not be a way to wait out, or wipe, four eyes."""
    steps, index = draft.spec.steps, draft.status.current_step
    waiting = index < len(steps) and steps[index].approval is not None
    given, since = draft.status.approvals, draft.status.step_started_at
    resume()
    if waiting:
        draft.update(approvals=given, step_started_at=since)


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
