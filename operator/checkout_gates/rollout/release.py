"""The workload's lifecycle, for a rollout with a ``workloadRef`` (docs/workloads.md).

The user's Deployment is the desired revision and, during a rollout, the canary; the operator's
stable copy runs the last promoted revision. From what the controller saw of both
(rollout/workload.py) this decides, on the draft of rollout/machine.py:

- adoption: the first revision found is copied to stable (nothing to compare it with), traffic
  goes to stable only once the copy is Ready, then the Deployment is scaled to 0;
- a new revision (its template hash is neither stable's nor the rollout's) starts a rollout: the
  canary is scaled up, and no step runs until it is Ready (a progress deadline halts and pages);
  a revision that changes mid-rollout restarts on the newest; one that goes back to stable's
  cancels the rollout;
- promotion (all steps passed): the stable copy takes the canary's revision and becomes Ready,
  then the weights go to 100% stable, then the canary is scaled to 0, and only then Promoted;
- between rollouts and after an abort, the canary is scaled to 0 once the router confirms it
  gets no traffic (``onAbort: keep`` keeps an aborted canary running);
- with an HPA (``autoscalerRef``), the replicas are the HPAs': the stable copy gets an HPA of its
  own with the same spec, the canary is only woken from 0 (an HPA leaves a Deployment at 0 alone)
  and put back to 0, and readiness asks for Ready pods, not for a count the HPA may change.

Every action states a target (replicas, a revision to copy) and is stated again on each pass
until the observation shows it done, so a pass repeated after a crash at any point doubles
nothing. Weights only ever fall here (to 0 for a restart, to 100% stable at promotion).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Protocol

from checkout_gates.api.spec import WorkloadRef
from checkout_gates.api.status import Revision, Revisions, UndoIntent, Weights
from checkout_gates.rollout.actions import (
    RestoreRevision,
    ScaleCanary,
    SetStableRevision,
    SetWeights,
    SyncStableAutoscaler,
)
from checkout_gates.rollout.draft import OPERATOR, Draft, abort, halt, weights_pending
from checkout_gates.rollout.workload import DeploymentState, WorkloadState

ERROR_LIMIT = 1024


def revisions(draft: Draft) -> Revisions:
    return draft.status.revisions or Revisions()


def adopting(draft: Draft) -> bool:
    """Whether the first revision is still being made stable (nothing to roll out yet)."""
    return draft.spec.workload_ref is not None and revisions(draft).stable is None


def steps_may_run(draft: Draft) -> bool:
    """Steps expose the canary: only a Ready canary of the rollout's revision, or a promotion."""
    if draft.spec.workload_ref is None:
        return True
    revs = revisions(draft)
    return revs.promoting or (revs.canary is not None and revs.canary_ready_at is not None)


def routes_yet(draft: Draft) -> bool:
    """Whether the weights may be stated: not while adopting, before the stable copy is Ready
    (100% to a stable Service with no pods behind it would be an outage); promote() states them."""
    return not adopting(draft)


def start(draft: Draft) -> None:
    """The first pass of a workload rollout: adopt the Deployment's revision as stable."""
    draft.update(
        phase="Progressing",
        current_step=len(draft.spec.steps),
        revisions=Revisions(promoting=True, waiting_since=draft.now),
    )
    ref = _ref(draft)
    draft.record("Started", f"adopting Deployment {ref.name}'s revision as stable (copied to {ref.stable_name})")
    draft.emit("Adopting", f"copying Deployment {ref.name} to {ref.stable_name} as the stable revision")


def follow(draft: Draft, observations: Observed) -> None:
    """Everything the workload asks of this decision before the steps run."""
    if draft.spec.workload_ref is None:
        return
    workload, error = observations.workload, observations.workload_error
    revs = revisions(draft)
    if error is None and workload is not None and workload.autoscaler_error:
        error = workload.autoscaler_error  # the Deployments are read; the HPA is not
    if error is not None:
        draft.update(revisions=revs.model_copy(update={"error": error[:ERROR_LIMIT]}))
    if adopting(draft):
        return  # promote() (the last "step") does the rest
    if observations.workload_missing and draft.status.weights.canary > 0 and draft.status.phase != "Aborted":
        # The canary's pods are gone with their Deployment: its share of checkout would fail.
        abort(draft, f"Deployment {_ref(draft).name} is gone: {error}", OPERATOR, page=True, slug="canary-gone")
        return
    if workload is not None and revs.undo is not None:
        _carry_undo(draft, workload)
        revs = revisions(draft)
    if workload is None:
        waiting = revs.canary is not None and revs.canary_ready_at is None and not revs.promoting
        if waiting and draft.status.phase == "Progressing" and _past_deadline(draft, _ref(draft)):
            _not_ready(draft, "the workload cannot be read")
        return
    desired = workload.canary
    revs = revisions(draft)
    stable = revs.stable
    assert stable is not None
    phase = draft.status.phase
    if revs.canary is None:
        if desired.revision == stable.hash or phase not in ("Promoted", "Aborted"):
            return
        why = f"revision {desired.revision} ({', '.join(desired.images)}) rolls out; stable runs {stable.hash}"
        _start_revision(draft, desired, why, action="Started")
    elif revs.promoting:
        if desired.revision != revs.canary.hash:
            _changed_while_promoting(draft, workload)
        return
    elif desired.revision == stable.hash and desired.revision != revs.canary.hash:
        _cancel(draft, stable.hash)
        return
    elif desired.revision != revs.canary.hash:
        why = f"revision {desired.revision} replaces {revs.canary.hash} mid-rollout: the rollout starts again on it"
        _start_revision(draft, desired, why)
    revs = revisions(draft)
    if revs.canary is not None and revs.canary_ready_at is None and draft.status.phase == "Progressing":
        _wait_ready(draft, workload)


def undo(draft: Draft, actor: str, reason: str) -> str | None:
    """On-call's undo: the Deployment goes back to the stable revision (mid-rollout), or on a
    promoted rollout to the stable revision before it, which then rolls out through the gates.
    None when taken; else why it is ignored."""
    ref = draft.spec.workload_ref
    if ref is None:
        return "undo needs a workloadRef (without one, the Deployments are someone else's to change)"
    revs = revisions(draft)
    if revs.stable is None:
        return "adopting the first revision: there is nothing to go back to"
    if revs.promoting:
        return "the promotion is under way; undo once it is promoted (the undo then rolls out through the gates)"
    if revs.canary is not None:
        target, now = revs.stable, revs.canary.hash
    elif revs.previous is not None:
        target, now = revs.previous, revs.stable.hash
    else:
        return "no earlier stable revision to go back to"
    intent = UndoIntent(to=target.hash, replacing=now, actor=actor, since=draft.now)
    draft.update(revisions=revs.model_copy(update={"undo": intent}))
    draft.record(
        "UndoRequested",
        f"{reason}: Deployment {ref.name} goes back to revision {target.hash} ({_images(target)})",
        actor,
    )
    draft.emit("UndoRequested", f"{actor}: Deployment {ref.name} goes back to revision {target.hash}")
    draft.actions.append(RestoreRevision(target.hash, f"undo by {actor}: back to revision {target.hash}", now))
    return None


def _carry_undo(draft: Draft, workload: WorkloadState) -> None:
    """Restate the undo until the Deployment has left the revision it replaces (it has the undone
    one then, or someone changed it since: either way the intent is spent)."""
    revs = revisions(draft)
    intent = revs.undo
    assert intent is not None
    if workload.canary.revision != intent.replacing:
        draft.update(revisions=revs.model_copy(update={"undo": None}))
        return
    ref = _ref(draft)
    if intent.since is not None and draft.now >= intent.since + timedelta(seconds=ref.progress_deadline_seconds):
        why = f"the undo by {intent.actor} to revision {intent.to} was not carried out within {ref.progress_deadline}"
        draft.update(revisions=revs.model_copy(update={"undo": None}))
        draft.record("UndoFailed", f"{why}{_error_note(draft)}; the Deployment is unchanged")
        draft.emit("UndoFailed", why, warning=True)
        return
    reason = f"undo by {intent.actor}: back to revision {intent.to}"
    draft.actions.append(RestoreRevision(intent.to, reason, intent.replacing))


def rearm(draft: Draft) -> None:
    """On-call retried: waits start again, and an aborted canary that was scaled down comes back."""
    if draft.spec.workload_ref is None:
        return
    revs = revisions(draft)
    update: dict[str, object] = {}
    if draft.status.phase == "Aborted" and not adopting(draft):
        update["promoting"] = False  # the retried rollout starts from step 0: no promotion under way
        update["capacity"] = 0
        if _ref(draft).on_abort == "scaleDown":
            update["canary_ready_at"] = None  # it was scaled down: wait until it is Ready again
    promoting_now = bool(update.get("promoting", revs.promoting))
    ready_at = update.get("canary_ready_at", revs.canary_ready_at)
    waiting = promoting_now or (revs.canary is not None and ready_at is None)
    # Only a wait that is on gets a fresh start; a stale one would halt the next wait at once.
    update["waiting_since"] = draft.now if waiting else None
    draft.update(revisions=revs.model_copy(update=update))


def promoting(draft: Draft) -> bool:
    """Whether the stable copy is taking a revision (all steps passed, or adopting)."""
    return draft.spec.workload_ref is not None and revisions(draft).promoting


def promote(draft: Draft, observations: Observed) -> None:
    """All steps passed (or adopting): the stable copy takes the revision, then the traffic."""
    workload = observations.workload
    revs = revisions(draft)
    if not revs.promoting:
        revs = revs.model_copy(update={"promoting": True, "waiting_since": draft.now})
        draft.update(revisions=revs)
        target = revs.canary.hash if revs.canary else "?"
        draft.record("Promoting", f"all {len(draft.spec.steps)} steps passed: the stable copy takes revision {target}")
    ref = _ref(draft)
    if workload is None:
        if _past_deadline(draft, ref):
            _promotion_not_ready(draft, revs.canary.hash if revs.canary else "?", "the workload cannot be read")
        return
    if revs.stable is None:
        revs = _pin_adoption(draft, workload)
    assert revs.canary is not None
    revision = revs.canary
    stable = workload.stable
    replicas = _stable_replicas(workload)
    scaled = autoscaled(draft)  # an HPA sizes the copy: only a floor is the operator's to set
    if scaled:
        revs = _pin_capacity(draft, workload)
        replicas = revs.capacity  # all of checkout is about to move to stable: room for all of it
    resized = stable is not None and (stable.replicas < replicas if scaled else stable.replicas != replicas)
    short = scaled and stable is not None and stable.ready_replicas < replicas
    if stable is None or stable.revision != revision.hash or not stable.ready or resized or short:
        if stable is None or stable.revision != revision.hash or resized:
            draft.actions.append(
                SetStableRevision(
                    revision.hash,
                    replicas,
                    f"stable copy {ref.stable_name} takes revision {revision.hash}",
                    keep_replicas=scaled,
                )
            )
        if _past_deadline(draft, ref):
            shown = "not created" if stable is None else f"{stable.ready_replicas}/{stable.replicas} Ready"
            _promotion_not_ready(draft, revision.hash, shown)
        return
    if draft.status.weights.canary != 0:
        draft.set_weight(0, f"promoted: stable runs revision {revision.hash}")
    elif weights_pending(draft.status) and not any(isinstance(a, SetWeights) for a in draft.actions):
        draft.actions.append(
            SetWeights(draft.status.weights, f"stable runs revision {revision.hash}: all traffic to it")
        )
    if weights_pending(draft.status) or not _route_shows_no_canary(observations):
        return  # the canary is scaled down only once the route, as read now, gives it no traffic
    if workload.canary.replicas != 0:
        draft.actions.append(ScaleCanary(0, f"revision {revision.hash} is stable: the canary is not needed"))
        return
    adopted = revs.stable is None
    draft.update(
        phase="Promoted",
        halt_reason="",
        exposure_ceiling=None,
        revisions=Revisions(
            stable=revision,
            replicas=stable.replicas if stable is not None else replicas,
            previous=revs.stable if revs.stable is not None and revs.stable.hash != revision.hash else revs.previous,
        ),
    )
    draft.resolve_page()
    if adopted:
        draft.record("Promoted", f"revision {revision.hash} ({_images(revision)}) adopted as stable")
    else:
        draft.record("Promoted", f"all {len(draft.spec.steps)} steps passed: revision {revision.hash} is stable")
    draft.emit("Promoted", f"{ref.stable_name} runs revision {revision.hash} and takes all traffic")


def tend(draft: Draft, observations: Observed) -> None:
    """Between rollouts, and after an abort, the canary runs no replicas once it has no traffic."""
    workload = observations.workload
    if workload is None or draft.spec.workload_ref is None or adopting(draft):
        return
    _keep_stable(draft, workload)
    revs = revisions(draft)
    idle = revs.canary is None and not revs.promoting
    aborted = draft.status.phase == "Aborted" and _ref(draft).on_abort == "scaleDown"
    if not (idle or aborted) or workload.canary.replicas == 0:
        return
    confirmed = draft.status.router_target
    if confirmed is None or confirmed.canary != 0 or draft.status.weights.canary != 0:
        return
    if not _route_shows_no_canary(observations) or any(isinstance(a, ScaleCanary | SetWeights) for a in draft.actions):
        return  # the route as read now must give it nothing (a GitOps sync may have put it back)
    if autoscaled(draft) and not _stable_has_room(draft, workload):
        return  # the canary's pods stay until stable's HPA-sized copy has room for all of checkout
    why = "aborted" if aborted and not idle else "no rollout in progress"
    draft.actions.append(ScaleCanary(0, f"{why}: the canary gets no traffic"))


def _pin_capacity(draft: Draft, workload: WorkloadState) -> Revisions:
    """The stable replicas a move of all traffic to stable waits for, under an HPA: what both
    sides run now (each sized by its HPA for its share), within the HPA's bounds; fixed when the
    move begins, so that scaling stable up does not raise the bar it is measured against."""
    revs = revisions(draft)
    if revs.capacity > 0:
        return revs
    now = (workload.stable.replicas if workload.stable is not None else 0) + workload.canary.replicas
    revs = revs.model_copy(update={"capacity": _bounded(workload, max(1, now))})
    draft.update(revisions=revs)
    return revs


def _stable_has_room(draft: Draft, workload: WorkloadState) -> bool:
    """After an abort under an HPA: stable (which took all traffic at once: stopping exposure
    does not wait) is scaled up to what both sides ran, and the canary's pods are kept until it is
    Ready with that many."""
    stable, revs = workload.stable, revisions(draft)
    if stable is None or revs.stable is None:
        return True  # nothing to grow (stable-missing is _keep_stable's)
    needed = _pin_capacity(draft, workload).capacity
    if stable.replicas < needed:
        draft.actions.append(
            SetStableRevision(
                revs.stable.hash, needed, f"stable takes all traffic: {needed} replicas first", keep_replicas=True
            )
        )
        return False
    return stable.ready and stable.ready_replicas >= needed


def autoscaled(draft: Draft) -> bool:
    """Whether an HPA sizes the Deployment (and the operator's mirror of it, the stable copy)."""
    ref = draft.spec.workload_ref
    return ref is not None and ref.autoscaler_ref is not None


def mirror_autoscaler(draft: Draft, observations: Observed) -> None:
    """Once the stable copy exists, it has an HPA with the Deployment's HPA's spec (restated until
    read back the same: the Deployment's HPA edited, or the mirror changed by hand, is synced)."""
    workload = observations.workload
    if workload is None or workload.stable is None or workload.autoscaler is None or not autoscaled(draft):
        return
    if adopting(draft):
        return  # not before the copy took all traffic: a new HPA has no history to slow a scale-down
    if not workload.autoscaler.stable_in_sync:
        ref = _ref(draft)
        draft.actions.append(
            SyncStableAutoscaler(
                f"the stable copy {ref.stable_name} scales like Deployment {ref.name} "
                f"({workload.autoscaler.min_replicas}-{workload.autoscaler.max_replicas} replicas)"
            )
        )


def _keep_stable(draft: Draft, workload: WorkloadState) -> None:
    """The stable copy deleted or changed behind the operator's back: stable's share of checkout
    has no pods (or the wrong ones). Re-create it from the Deployment while that still has the
    stable revision (between rollouts it does); otherwise halt and page: nothing can rebuild it."""
    revs = revisions(draft)
    stable, copy = revs.stable, workload.stable
    if stable is None or revs.promoting:
        return
    ref = _ref(draft)
    if copy is not None and copy.revision == stable.hash:
        if copy.replicas == 0 and autoscaled(draft):
            # Scaled to 0 by hand: an HPA never wakes a target at 0, and stable serves checkout.
            replicas = _bounded(workload, max(1, revs.replicas))
            draft.actions.append(
                SetStableRevision(stable.hash, replicas, f"{ref.stable_name} at 0 replicas: woken", keep_replicas=True)
            )
            draft.emit("StableCopyWoken", f"{ref.stable_name} was at 0 replicas: scaled to {replicas}", warning=True)
        return
    state = "is gone" if copy is None else f"runs revision {copy.revision or '(unknown)'}, not {stable.hash}"
    if workload.canary.revision == stable.hash:
        replicas = _bounded(workload, revs.replicas or max(1, workload.canary.replicas))
        draft.actions.append(
            SetStableRevision(
                stable.hash,
                replicas,
                f"stable copy {ref.stable_name} {state}: re-created",
                keep_replicas=autoscaled(draft),
            )
        )
        draft.emit(
            "StableCopyRestored", f"{ref.stable_name} {state}: re-created from Deployment {ref.name}", warning=True
        )
    elif draft.status.phase in ("Progressing", "AwaitingApproval"):
        halt(
            draft,
            f"the stable copy {ref.stable_name} {state}, and Deployment {ref.name} no longer has stable revision "
            f"{stable.hash} ({_images(stable)}) to re-create it from: stable's share of traffic has no pods of its "
            f"own; put Deployment {ref.name} back to those images (kubectl set image or undo) and the copy is "
            "re-created, then annotate retry",
            "stable-missing",
            hold=True,
        )


def settle_error(draft: Draft, workload: WorkloadState | None) -> None:
    """A read that succeeded with nothing left to write clears the last workload error; while a
    write is due, its own outcome says whether the error is still there."""
    revs = draft.status.revisions
    if workload is None or revs is None or not revs.error or workload.autoscaler_error:
        return
    if not any(
        isinstance(a, ScaleCanary | SetStableRevision | RestoreRevision | SyncStableAutoscaler) for a in draft.actions
    ):
        draft.update(revisions=revs.model_copy(update={"error": ""}))


def message(draft: Draft) -> str:
    """What the workload is waiting for, in words; empty when nothing."""
    if draft.spec.workload_ref is None:
        return ""
    revs = revisions(draft)
    ref = _ref(draft)
    if revs.stable is None:
        return f"adopting Deployment {ref.name} as the stable revision ({ref.stable_name})"
    if revs.promoting and revs.canary is not None:
        return f"promoting: {ref.stable_name} takes revision {revs.canary.hash}"
    if revs.canary is not None and revs.canary_ready_at is None:
        return f"waiting for revision {revs.canary.hash} to be Ready (progress deadline {ref.progress_deadline})"
    if revs.canary is None:
        return f"revision {revs.stable.hash} is stable; a new revision of Deployment {ref.name} starts a rollout"
    return ""


# --- the parts ----------------------------------------------------------------------------------


class Observed(Protocol):
    """What rollout/machine.py's Observations offer this module (a Protocol: no import cycle)."""

    @property
    def workload(self) -> WorkloadState | None: ...
    @property
    def workload_error(self) -> str | None: ...
    @property
    def workload_missing(self) -> bool: ...
    @property
    def router_weights(self) -> Weights | None: ...


def _route_shows_no_canary(observations: Observed) -> bool:
    """Whether the route, as read in this pass, gives the canary nothing (unreadable: not known)."""
    return observations.router_weights is not None and observations.router_weights.canary == 0


def _pin_adoption(draft: Draft, workload: WorkloadState) -> Revisions:
    """The revision being adopted: the Deployment's at first sight, and again if it changes before
    the copy has it (nothing was exposed yet); once the copy has it, a newer one waits its turn."""
    revs = revisions(draft)
    live = workload.canary
    pinned = revs.canary
    copied = workload.stable is not None and pinned is not None and workload.stable.revision == pinned.hash
    if pinned is None or (pinned.hash != live.revision and not copied):
        revs = revs.model_copy(update={"canary": _revision(live)})
        draft.update(revisions=revs)
    return revs


def _changed_while_promoting(draft: Draft, workload: WorkloadState) -> None:
    """The Deployment changed while the copy takes the rollout's revision. Not copied yet: the
    promotion is abandoned and the newest rolls out (or, back at stable's, it is cancelled). Copied:
    the promotion finishes on the vetted revision, the canary (running the unvetted newest) gets no
    traffic from now, and the newest rolls out after."""
    revs = revisions(draft)
    assert revs.canary is not None and revs.stable is not None
    desired = workload.canary
    copied = workload.stable is not None and workload.stable.revision == revs.canary.hash
    if not copied:
        draft.update(revisions=revs.model_copy(update={"promoting": False}))
        if desired.revision == revs.stable.hash:
            _cancel(draft, revs.stable.hash)
        else:
            why = f"revision {desired.revision} replaces {revs.canary.hash} before its promotion: it rolls out instead"
            _start_revision(draft, desired, why)
        return
    if draft.status.weights.canary > 0:
        draft.set_weight(0, f"revision {desired.revision} arrived during the promotion of {revs.canary.hash}")
        draft.record(
            "NewRevision",
            f"revision {desired.revision} arrived while the stable copy takes {revs.canary.hash}: the canary "
            "gets no traffic; it rolls out once the promotion is done",
        )


def _ref(draft: Draft) -> WorkloadRef:
    ref = draft.spec.workload_ref
    assert ref is not None
    return ref


def _stable_replicas(workload: WorkloadState) -> int:
    """The capacity stable keeps, and the canary gets: the copy's, or at first the Deployment's."""
    if workload.stable is not None and workload.stable.replicas > 0:
        return workload.stable.replicas
    return max(1, workload.canary.replicas)


def _revision(deployment: DeploymentState) -> Revision:
    return Revision(hash=deployment.revision, images=list(deployment.images), author=deployment.changed_by)


def _bounded(workload: WorkloadState, replicas: int) -> int:
    """``replicas`` within the HPA's bounds (unbounded while the HPA cannot be read)."""
    return workload.autoscaler.clamp(replicas) if workload.autoscaler is not None else replicas


def _images(revision: Revision) -> str:
    return ", ".join(revision.images) or "no images"


def _past_deadline(draft: Draft, ref: WorkloadRef) -> bool:
    since = revisions(draft).waiting_since or draft.now
    return draft.now >= since + timedelta(seconds=ref.progress_deadline_seconds)


def _error_note(draft: Draft) -> str:
    error = revisions(draft).error
    return f"; last error: {error}" if error else ""


def _start_revision(draft: Draft, desired: DeploymentState, reason: str, *, action: str = "NewRevision") -> None:
    """A rollout of ``desired`` from step 0: exposure 0 first, then wait until the canary is Ready."""
    revs = revisions(draft)
    if draft.status.weights.canary > 0:
        draft.set_weight(0, f"revision {desired.revision}: exposure starts again from 0")
    draft.update(
        revisions=revs.model_copy(
            update={
                "canary": _revision(desired),
                "canary_ready_at": None,
                "waiting_since": draft.now,
                "promoting": False,
                "capacity": 0,
            }
        ),
        gates=[],
        exposure_ceiling=None,
    )
    if action == "Started":
        draft.update(authors=[])  # a rollout from rest: the authors of the last one are done
    draft.start_step(0)
    draft.start_evidence()
    page = draft.status.page
    if page is not None and page.resolved_at is None:
        # What it paged about is superseded: someone deployed another revision. The next halt opens
        # a page of its own; this one must not be left open under it.
        draft.resolve_page()
        draft.record("Acknowledged", f"page {page.dedup_key} resolved: superseded by revision {desired.revision}")
    if draft.status.phase == "Paused":
        draft.record(action, f"{reason} (stays paused until on-call resumes)")
    else:
        # A halted or aborted rollout's open page stays open: only on-call resolves it.
        draft.update(phase="Progressing", halt_reason="", paused_from=None)
        draft.record(action, reason)
    draft.emit(action, reason)


def _cancel(draft: Draft, stable: str) -> None:
    """The Deployment went back to stable's revision mid-rollout: nothing left to roll out."""
    revs = revisions(draft)
    if draft.status.weights.canary > 0:
        draft.set_weight(0, f"the Deployment is back at stable revision {stable}")
    draft.update(
        phase="Promoted",
        halt_reason="",
        paused_from=None,
        exposure_ceiling=None,
        revisions=Revisions(stable=revs.stable, replicas=revs.replicas, previous=revs.previous),
    )
    reason = f"the Deployment went back to the stable revision {stable}: the rollout of {revs.canary.hash if revs.canary else '?'} is cancelled"
    draft.resolve_page()  # what it paged about is gone: someone took the Deployment back
    draft.record("Cancelled", reason)
    draft.emit("Cancelled", reason)


def canary_replicas(draft: Draft, workload: WorkloadState, weight: int) -> int:
    """The canary's replicas for ``weight``: stable's, or with scaleWithWeight its share (at least the floor)."""
    stable = _stable_replicas(workload)
    if workload.autoscaler is not None and autoscaled(draft):
        return workload.autoscaler.clamp(stable)  # woken at stable's size; the HPA takes it from there
    scaling = _ref(draft).scale_with_weight
    if scaling is None:
        return stable
    return min(max(scaling.min_replicas, math.ceil(stable * weight / 100)), max(stable, scaling.min_replicas))


def capacity_for(draft: Draft, workload: WorkloadState | None, weight: int) -> bool:
    """Whether the canary, on the rollout's revision, has the Ready replicas ``weight`` needs
    (stable's, or its share with scaleWithWeight): no weight grows onto pods that are gone or not
    Ready. If not, it is scaled up, the step waits, and past the progress deadline the rollout halts."""
    ref = draft.spec.workload_ref
    if ref is None:
        return True
    if workload is None:
        return False  # cannot know; the step waits for a readable workload
    revs = revisions(draft)
    canary, wanted = workload.canary, canary_replicas(draft, workload, weight)
    needed = wanted
    if autoscaled(draft):
        # The HPA sized the canary for the share it has now (it may shrink one at 5%): before a
        # larger share moves onto it, it needs its part of what stable runs for the rest, and is
        # scaled up to that (never down: above it, the count is the HPA's).
        stable = workload.stable.replicas if workload.stable is not None else wanted
        now = min(draft.status.weights.canary, 99)
        needed = wanted = _bounded(workload, max(1, math.ceil(stable * weight / (100 - now))))
    on_revision = revs.canary is not None and canary.revision == revs.canary.hash
    if on_revision and canary.replicas >= needed and canary.ready and canary.ready_replicas >= needed:
        if revs.waiting_since is not None:
            draft.update(revisions=revs.model_copy(update={"waiting_since": None}))
        return True
    if revs.waiting_since is None:
        draft.update(revisions=revs.model_copy(update={"waiting_since": draft.now}))
    if canary.replicas < needed:
        draft.actions.append(ScaleCanary(wanted, f"canary to {wanted} replicas before {weight}% of traffic"))
    elif _past_deadline(draft, ref):
        halt(
            draft,
            f"the canary did not grow to {wanted} Ready replicas for {weight}% of traffic within "
            f"{ref.progress_deadline} ({canary.ready_replicas}/{canary.replicas} Ready{_error_note(draft)}); "
            "exposure held where it was",
            "canary-capacity",
        )
    return False


def _wait_ready(draft: Draft, workload: WorkloadState) -> None:
    ref = _ref(draft)
    revs = revisions(draft)
    assert revs.canary is not None
    canary = workload.canary
    first = next((step.set_weight for step in draft.spec.steps if step.set_weight), 100)
    wanted = canary_replicas(draft, workload, first)
    # Under an HPA only a canary at 0 is scaled: once woken, its count is the HPA's.
    if canary.replicas != wanted and not (autoscaled(draft) and canary.replicas > 0):
        draft.actions.append(ScaleCanary(wanted, f"revision {revs.canary.hash} rolls out: canary at {wanted} replicas"))
    elif canary.ready and canary.revision == revs.canary.hash:
        draft.update(revisions=revs.model_copy(update={"canary_ready_at": draft.now, "waiting_since": None}))
        draft.start_step(draft.status.current_step)
        draft.start_evidence()  # the evidence counts from a Ready canary, not from its start-up
        draft.record("CanaryReady", f"revision {revs.canary.hash} Ready with {canary.ready_replicas} replicas")
        draft.emit("CanaryReady", f"revision {revs.canary.hash} Ready: exposure may start")
        return
    if _past_deadline(draft, ref):
        # The Deployment's own ProgressDeadlineExceeded is only the reason: it outlives a retry.
        ready = f"{canary.ready_replicas}/{canary.replicas} Ready after {ref.progress_deadline}"
        _not_ready(draft, f"{ready}; {canary.failure}" if canary.failure else ready)


def _not_ready(draft: Draft, why: str) -> None:
    ref, revs = _ref(draft), revisions(draft)
    revision = revs.canary.hash if revs.canary else "?"
    halt(
        draft,
        f"canary revision {revision} of Deployment {ref.name} did not become Ready: {why}"
        f"{_error_note(draft)} (it gets no traffic; fix the Deployment, or annotate retry to wait again)",
        "canary-not-ready",
    )


def _promotion_not_ready(draft: Draft, revision: str, shown: str) -> None:
    ref = _ref(draft)
    if adopting(draft):
        halt(
            draft,
            f"adopting Deployment {ref.name} as the stable revision ({ref.stable_name}) did not complete within "
            f"{ref.progress_deadline} ({shown}{_error_note(draft)}); no traffic was moved",
            "adoption-not-ready",
            hold=True,
        )
        return
    halt(
        draft,
        f"the stable copy {ref.stable_name} did not become Ready on revision {revision} within "
        f"{ref.progress_deadline} ({shown}{_error_note(draft)}); it still serves the earlier revision "
        "where it was not replaced",
        "promotion-not-ready",
        hold=True,
    )
