"""``spec.paused``: a declarative pause, for GitOps, beside on-call's pause annotation.

A new generation of the spec normally restarts the rollout from step 0 (rollout/machine.py); one
that only toggles ``paused`` must not, or pausing a rollout from Git would send exposure back to
0. So the status keeps a fingerprint of the spec without ``paused``: the same fingerprint under a
new generation is only a pause or a resume. The pause holds like the annotation's (no step opens;
gates, halts and aborts go on); false again resumes it, but never a pause on-call made.
"""

from __future__ import annotations

import hashlib
import json

from checkout_gates.api.spec import CheckoutRolloutSpec
from checkout_gates.rollout import approvals
from checkout_gates.rollout.annotations import spec_changed_by
from checkout_gates.rollout.draft import Draft

FINGERPRINT_LENGTH = 16


def fingerprint(spec: CheckoutRolloutSpec) -> str:
    document = spec.model_dump(mode="json", by_alias=True, exclude={"paused"})
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:FINGERPRINT_LENGTH]


def only_paused_changed(draft: Draft) -> bool:
    """A new generation whose spec differs from the observed one in ``paused`` alone."""
    status = draft.status
    return (
        status.phase != "Pending"
        and status.observed_generation not in (0, draft.rollout.metadata.generation)
        and bool(status.observed_spec)
        and status.observed_spec == fingerprint(draft.spec)
    )


def take_generation(draft: Draft) -> None:
    """The new generation is taken without a restart; the history says what changed."""
    before, generation = draft.status.observed_generation, draft.rollout.metadata.generation
    actor = spec_changed_by(draft.rollout.metadata.annotations)
    draft.update(observed_generation=generation)
    state = "true" if draft.spec.paused else "false"
    draft.record(
        "SpecChanged",
        f"spec changed by {actor} (generation {before} -> {generation}) in nothing but spec.paused ({state}): "
        "no restart",
        actor,
    )


def follow(draft: Draft) -> None:
    """Pause while spec.paused is true; resume the pause it made once it is false."""
    status = draft.status
    actor = spec_changed_by(draft.rollout.metadata.annotations)
    if draft.spec.paused and status.phase in ("Progressing", "AwaitingApproval"):
        draft.update(phase="Paused", paused_from=status.phase, paused_by_spec=True)
        draft.record("Paused", "spec.paused is true", actor)
        draft.emit("Paused", f"spec.paused: held at step {status.current_step}")
    elif not draft.spec.paused and status.phase == "Paused" and status.paused_by_spec:
        phase = status.paused_from or "Progressing"
        draft.update(phase=phase, paused_from=None, paused_by_spec=False)
        approvals.keep_on_resume(draft, lambda: draft.start_step(status.current_step))
        draft.record("Resumed", "spec.paused is false", actor)
        draft.emit("Resumed", f"spec.paused false: step {status.current_step} runs again")


def refusal_to_resume(draft: Draft) -> str | None:
    """Why on-call's approve does not resume this pause (spec.paused holds it), or None."""
    if draft.spec.paused and draft.status.phase == "Paused":
        return "spec.paused is true: set it to false to resume (the spec, and Git, say paused)"
    return None
