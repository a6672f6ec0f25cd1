"""The rollout state machine: ``decide(rollout, observations, now) -> Decision``.

Pure: the spec, the status (the only state there is), fresh observations and the time come in;
a new status and actions as data go out. The operator and the CLI's dry run both run it.

Phases: Pending -> Progressing <-> AwaitingApproval / Paused -> Promoted, or -> Halted (hold at the
current weight, page) / Aborted (weight 0, page). Rules the property tests hold it to:

- the same inputs give the same outputs, and feeding a decision's status back with nothing new
  changes nothing (so a re-decision after a crash or a conflict is harmless);
- canary weight only grows, except to 0 on abort or on a restart for a new generation;
- Inconclusive never advances a step; a failing critical gate aborts at once;
- a halt opens one page with one dedup key; nothing else opens one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.api.spec import ApprovalStep, Gate
from checkout_gates.api.status import (
    SEGMENT_LIMIT,
    TERMINAL_PHASES,
    CheckoutRolloutStatus,
    ConsumedAnnotation,
    GateStatus,
    Phase,
    SegmentVerdict,
    Weights,
)
from checkout_gates.gates.budget import guarantee, judge_gates
from checkout_gates.gates.observations import SignalReading
from checkout_gates.gates.verdicts import GateVerdict
from checkout_gates.rollout import approvals, emergency, freeze, notices, pages, paused, release
from checkout_gates.rollout.actions import (
    ConsumeAnnotation,
    Decision,
    RestoreRevision,
    SetWeights,
    Severity,
)
from checkout_gates.rollout.annotations import (
    REASON_KEY,
    Request,
    already_consumed,
    pending_requests,
    reason_fingerprint,
    request_reason,
    spec_changed_by,
)
from checkout_gates.rollout.conditions import set_condition
from checkout_gates.rollout.draft import OPERATOR, Draft, abort, halt, weights_pending
from checkout_gates.rollout.freeze import Freeze
from checkout_gates.rollout.plan import evaluation_due, watched_gate_names
from checkout_gates.rollout.workload import WorkloadState

# Router reads or writes that may fail in a row before the rollout halts: with the route unreadable
# the operator cannot know what customers get, so exposure must not grow on what it last believed.
ROUTER_ERROR_LIMIT = 3


@dataclass(frozen=True)
class Observations:
    """What the controller saw before deciding: gate readings (only when an evaluation was due),
    the weights the router reports (None when it could not be read) and why it could not."""

    readings: Mapping[str, SignalReading] = field(default_factory=dict)
    router_weights: Weights | None = None
    router_error: str | None = None
    # For a rollout with a workloadRef: its Deployment and stable copy (None when unread), and why not;
    # ``workload_missing`` when the read found no Deployment at all.
    workload: WorkloadState | None = None
    workload_error: str | None = None
    workload_missing: bool = False
    # The CheckoutFreezes as read (cluster-scoped), and why they could not be (then growth is held).
    freezes: tuple[Freeze, ...] = ()
    freezes_error: str | None = None


def decide(rollout: CheckoutRollout, observations: Observations, now: datetime) -> Decision:
    draft = Draft(rollout, now)
    leftovers = [r for r in pending_requests(rollout.metadata.annotations) if already_consumed(draft.status, r)]
    if leftovers:
        # Finish consuming before anything else moves the epoch and makes the leftover look new.
        consume = [ConsumeAnnotation(r.key, r.value) for r in leftovers]
        reason = rollout.metadata.annotations.get(REASON_KEY)
        if reason is not None:
            consume.append(ConsumeAnnotation(REASON_KEY, reason))
        return Decision(draft.status, tuple(consume))

    # Before the requests: a break-freeze given as the window begins finds the freeze it breaks.
    freeze.follow(draft, observations.freezes, observations.freezes_error)
    forged = _untrustworthy(rollout)
    if forged is not None:
        if draft.status.phase != "Aborted" or draft.status.halt_reason != forged:
            # Nothing it says can be acted on: take exposure to 0 (weights first) and page.
            # Taken as this generation's, so the abort is the whole story and on-call's retry (or
            # acknowledgement) is handled on the next pass like any other.
            draft.update(
                current_step=min(draft.status.current_step, len(draft.spec.steps)),
                observed_generation=rollout.metadata.generation,
            )
            abort(draft, forged, OPERATOR, page=True, slug="status-untrusted")
    elif draft.status.phase == "Pending" or (
        draft.status.observed_generation != rollout.metadata.generation and not paused.only_paused_changed(draft)
    ):
        _start(draft)
    else:
        if draft.status.observed_generation != rollout.metadata.generation:
            paused.take_generation(draft)  # a pause or resume from the spec: no restart
        # The workload first: a new revision restarts the rollout, and an abort given at the same
        # time must still win (it is applied next, to the restarted rollout).
        release.follow(draft, observations)
        _handle_requests(draft)
        _track_router_errors(draft, observations)
        _watch(draft, observations)
        _check_router(draft, observations)
    paused.follow(draft)
    freeze.follow(draft, observations.freezes, observations.freezes_error)
    _run_steps(draft, observations)
    release.tend(draft, observations)
    release.mirror_autoscaler(draft, observations)
    release.settle_error(draft, observations.workload)
    _reassert_weights(draft)
    _page(draft)
    notices.follow(draft, rollout.status, _notice_details(draft))
    _summarize(draft)
    _remember_consumed(draft)
    approvals.remember_authors(draft)
    if draft.status.observed_generation == rollout.metadata.generation:
        draft.update(observed_spec=paused.fingerprint(draft.spec))
    return Decision(draft.status, tuple(draft.actions))


# --- a status the operator cannot have written ----------------------------------------------------


def _untrustworthy(rollout: CheckoutRollout) -> str | None:
    """Why this status cannot be the operator's own (a forged ``status.currentStep: 99`` once
    promoted to 100% with a false history entry); None when nothing is out of place."""
    status, steps = rollout.status, len(rollout.spec.steps)
    # A step counts in the spec it was written for; a new generation restarts at step 0 anyway.
    if status.observed_generation == rollout.metadata.generation and status.current_step > steps:
        return f"status names step {status.current_step} of a {steps}-step rollout: it was not written by the operator"
    if status.observed_generation > rollout.metadata.generation:
        return (
            f"status claims generation {status.observed_generation} of a spec at generation "
            f"{rollout.metadata.generation}: it was not written by the operator"
        )
    return None


# --- start and restart --------------------------------------------------------------------------


def _start(draft: Draft) -> None:
    generation = draft.rollout.metadata.generation
    if draft.status.observed_generation not in (0, generation) and draft.status.phase != "Pending":
        _restart(draft)
    elif draft.spec.workload_ref is not None and (
        draft.status.revisions is None or draft.status.revisions.stable is None
    ):
        draft.update(observed_generation=generation, halt_reason="", paused_from=None, gates=[])
        release.start(draft)
    else:
        draft.update(phase="Progressing", observed_generation=generation, halt_reason="", paused_from=None, gates=[])
        approvals.forget_authors(draft)
        draft.start_step(0)
        draft.start_evidence()
        draft.record("Started", f"rollout of {draft.spec.canary.service} started ({len(draft.spec.steps)} steps)")
        draft.emit("Progressing", f"rollout started with {len(draft.spec.steps)} steps")
    # Annotations set before the start still count (an abort before the first step must win).
    _handle_requests(draft)


def _restart(draft: Draft) -> None:
    """A new generation of the spec mid-rollout: exposure starts again from 0 on the new steps.

    A spec edit must not skip what it replaces: the new generation may not expose the canary beyond
    what the earlier one had reached until one of its own gate steps passes (``exposureCeiling``);
    an open page stays open (only on-call resolves it); a halted, aborted or paused rollout stays
    so until on-call acts; and the history names who changed the spec, as admission recorded it.
    """
    before = draft.status
    generation = draft.rollout.metadata.generation
    actor = spec_changed_by(draft.rollout.metadata.annotations)
    change = f"spec changed by {actor} (generation {before.observed_generation} -> {generation})"
    if draft.spec.workload_ref is not None and (before.revisions is None or before.revisions.stable is None):
        # The rollout gained a workloadRef (or was adopting): adopt the Deployment first.
        draft.update(observed_generation=generation, halt_reason="", paused_from=None, gates=[])
        release.start(draft)
        return
    if before.phase == "Promoted" or (before.revisions is not None and before.revisions.promoting):
        # Promotion is done (or under way): traffic is where it belongs, and a spec edit is no
        # reason to send it back to an older version. Only a new revision starts exposure again.
        draft.update(observed_generation=generation)
        if before.phase != "Promoted":
            draft.update(current_step=len(draft.spec.steps))
        draft.record("SpecChanged", f"{change}: {before.phase.lower()}, so no weight changes", actor)
        draft.emit("SpecChanged", f"generation {generation} by {actor}: weights unchanged")
        return
    ceiling = before.weights.canary if before.exposure_ceiling is None else before.exposure_ceiling
    if before.weights.canary > 0:
        draft.set_weight(0, f"generation {generation}: exposure starts again from 0")
    draft.update(observed_generation=generation, gates=[], exposure_ceiling=ceiling if ceiling > 0 else None)
    draft.start_step(0)
    draft.start_evidence()
    if before.phase in ("Halted", "Aborted", "Paused"):
        draft.record("SpecChanged", f"{change}: stays {before.phase.lower()} until on-call acts", actor)
        draft.emit("SpecChanged", f"generation {generation} by {actor}: still {before.phase.lower()}")
        return
    draft.update(phase="Progressing", halt_reason="", paused_from=None)
    draft.record("Restarted", change, actor)
    draft.emit("Restarted", f"generation {generation} by {actor}: the rollout starts again from step 0")


# --- on-call requests ---------------------------------------------------------------------------


def _handle_requests(draft: Draft) -> None:
    requests = pending_requests(draft.rollout.metadata.annotations)
    if not requests:
        return
    chosen, *superseded = requests
    _apply_request(draft, chosen)
    for request in superseded:
        draft.record("Ignored", f"{request.command} by {request.actor} superseded by {chosen.command}", request.actor)
    draft.actions.extend(ConsumeAnnotation(r.key, r.value) for r in requests)
    reason = draft.rollout.metadata.annotations.get(REASON_KEY)
    if reason is not None:  # it went with these requests; it must not ride along with a later one
        draft.actions.append(ConsumeAnnotation(REASON_KEY, reason))


def _remember_consumed(draft: Draft) -> None:
    """Record consumed annotations at the decision's final epoch, so a leftover is known as one."""
    requests = [a for a in draft.actions if isinstance(a, ConsumeAnnotation) and a.key != REASON_KEY]
    if not requests:
        return
    reason = reason_fingerprint(draft.rollout.metadata.annotations.get(REASON_KEY, ""))
    consumed = [ConsumedAnnotation(key=r.key, value=r.value, epoch=draft.status.epoch, reason=reason) for r in requests]
    kept = [c for c in draft.status.consumed if c.key not in {r.key for r in requests}]
    draft.update(consumed=kept + consumed)


def _apply_request(draft: Draft, request: Request) -> None:
    phase = draft.status.phase
    reason = request_reason(draft.rollout.metadata.annotations, request)
    actor = request.actor

    def ignore(why: str) -> None:
        draft.record("Ignored", f"{request.command} by {actor}: {why}", actor)

    if request.command == "abort":
        refusal = ""
        if release.adopting(draft):
            refusal = "adopting the first revision as stable: the canary gets no traffic"
        elif release.promoting(draft):
            refusal = (
                "all steps passed and the stable copy is taking the new revision: an abort would send all "
                "traffic to a copy already half on it; wait for Promoted, then undo"
            )
        if refusal:
            if draft.status.page is not None and draft.status.page.resolved_at is None:
                # On-call still acknowledges the page; exposure stays where it is.
                draft.resolve_page()
                draft.record("Acknowledged", f"{reason} (the page only: {refusal})", actor)
            else:
                ignore(refusal)
            return
        if phase == "Promoted":
            undo = "checkout-gates undo goes back" if draft.spec.workload_ref else "apply a new spec"
            ignore(f"already promoted ({undo} to roll back)")
            return
        if phase == "Aborted":
            if draft.status.page is not None and draft.status.page.resolved_at is None:
                draft.resolve_page()
                draft.record("Acknowledged", reason, actor)
            else:
                ignore("already aborted")
            return
        abort(draft, reason, actor, page=False)
    elif request.command == "retry":
        if phase == "Halted":
            draft.resolve_page()
            draft.update(phase="Progressing", halt_reason="")
            draft.start_step(draft.status.current_step)
            draft.start_evidence()
            release.rearm(draft)
            # Re-stating the weights also undoes a hand edit of the route that caused the halt
            # (not while adopting: no weights before the stable copy is Ready).
            if release.routes_yet(draft):
                draft.actions.append(SetWeights(draft.status.weights, f"retry by {actor}: weights re-applied"))
            draft.record("Retried", reason, actor)
            draft.emit("Retried", f"{actor}: step {draft.status.current_step} runs again")
        elif phase == "Aborted":
            draft.resolve_page()
            # On-call starts it afresh from 0, on whatever spec it has now: their call, not an edit's.
            release.rearm(draft)
            draft.update(phase="Progressing", halt_reason="", gates=[], exposure_ceiling=None)
            draft.start_step(0)
            draft.start_evidence()
            draft.record("Retried", f"{reason} (from step 0)", actor)
            draft.emit("Retried", f"{actor}: the rollout starts again from step 0")
        else:
            ignore(f"nothing to retry in phase {phase}")
    elif request.command == "pause":
        if phase in ("Progressing", "AwaitingApproval"):
            draft.update(phase="Paused", paused_from=phase)
            draft.record("Paused", reason, actor)
            draft.emit("Paused", f"{actor} paused the rollout at step {draft.status.current_step}")
        else:
            ignore(f"cannot pause in phase {phase}")
    elif request.command == "approve":
        if phase == "AwaitingApproval":
            refused = approvals.approve(draft, actor, reason)
            if refused is not None:
                ignore(refused)
        elif phase == "Paused" and paused.refusal_to_resume(draft) is not None:
            ignore(paused.refusal_to_resume(draft) or "")
        elif phase == "Paused":
            draft.update(phase="Progressing", paused_from=None, paused_by_spec=False)
            approvals.keep_on_resume(draft, lambda: draft.start_step(draft.status.current_step))
            release.rearm(draft)
            draft.record("Resumed", reason, actor)
            draft.emit("Resumed", f"{actor} resumed the rollout at step {draft.status.current_step}")
        else:
            ignore(f"nothing awaits approval in phase {phase}")
    elif request.command == "undo":
        refused = release.undo(draft, actor, reason)
        if refused is not None:
            ignore(refused)
    else:
        refused = emergency.override(draft, request.command, actor, draft.rollout.metadata.annotations.get(REASON_KEY))
        if refused is not None:
            ignore(refused)


# --- halts --------------------------------------------------------------------------------------


# --- gates --------------------------------------------------------------------------------------


def _watch(draft: Draft, observations: Observations) -> None:
    """Judge the watched gates when an evaluation is due and readings came with it.

    Not while the router has yet to confirm the weights: the readings would be of a split that is
    not in effect (or not known to be), and a pass window must only count confirmed exposure."""
    if not observations.readings or not evaluation_due(draft.rollout, draft.now):
        return
    if weights_pending(draft.status):
        _watch_critical_while_pending(draft, observations)
        return
    if draft.status.phase in TERMINAL_PHASES or draft.status.step_started_at != draft.rollout.status.step_started_at:
        return  # a request above moved the rollout on: these readings were for the step before
    if draft.status.evidence_since is None:
        # A rollout started before evidence was carried: its readings covered the step so far.
        draft.update(evidence_since=draft.status.step_started_at)
    names = watched_gate_names(draft.spec, draft.status.current_step)
    gates = [draft.spec.gate(name) for name in names]
    verdicts = _judge(draft, gates, observations, draft.status.weights.canary)
    _record_verdicts(draft, verdicts)
    draft.update(last_evaluated_at=draft.now)

    critical = [v for v in verdicts.values() if v.verdict == "Fail" and v.critical]
    failed = [v for v in verdicts.values() if v.verdict == "Fail"]
    inconclusive = [v for v in verdicts.values() if v.verdict == "Inconclusive"]
    phase = draft.status.phase
    if critical:
        worst = critical[0]
        halt(draft, f"critical gate {worst.gate} failed: {worst.reason}", f"critical-{worst.gate}", critical=True)
    elif failed and phase != "Halted":
        worst = failed[0]
        limit = draft.spec.analysis.failure_limit
        # An anytime-valid test that rejects has already controlled its error: one rejection is
        # enough, and the message says it was a rejection (with its e-value), not a count.
        rejected = next((v for v in failed if draft.spec.gate(v.gate).method == "sequential"), None)
        if rejected is not None:
            draft.update(failures=limit)
            draft.emit("GateFailed", f"{rejected.gate}: rejected, {rejected.reason}", True)
            halt(draft, f"gate {rejected.gate} rejected: {rejected.reason}", f"gate-{rejected.gate}")
            return
        failures = draft.status.failures + 1  # per gate step: a pass in between does not reset it
        draft.update(failures=failures)
        draft.emit("GateFailed", f"{worst.gate}: {worst.reason} ({failures}/{limit} this step)", True)
        if failures >= limit:
            halt(draft, f"gate {worst.gate} failed {failures} times this step: {worst.reason}", f"gate-{worst.gate}")
    elif inconclusive and phase == "Progressing" and _current_kind(draft) == "gate":
        count = draft.status.inconclusives + 1
        draft.update(inconclusives=count)
        if count >= draft.spec.analysis.inconclusive_limit:
            worst = inconclusive[0]
            halt(
                draft, f"no conclusive evidence after {count} evaluations: {worst.gate}: {worst.reason}", "inconclusive"
            )


def _watch_critical_while_pending(draft: Draft, observations: Observations) -> None:
    """While a new split waits for the router, critical gates are still judged, on the split the
    router last confirmed: duplicate charges at a confirmed 5% abort even if the step to 25% is
    stuck. Nothing else is recorded, so no pass window counts unconfirmed exposure."""
    confirmed = draft.status.router_target
    if confirmed is None or confirmed.canary == 0 or draft.status.phase in TERMINAL_PHASES:
        return
    if draft.status.step_started_at != draft.rollout.status.step_started_at:
        return
    gates = [gate for gate in draft.spec.gates if gate.critical and gate.name in observations.readings]
    verdicts = _judge(draft, gates, observations, confirmed.canary)
    failed = [v for v in verdicts.values() if v.verdict == "Fail"]
    if failed:
        worst = failed[0]
        _record_verdicts(draft, verdicts)
        halt(draft, f"critical gate {worst.gate} failed: {worst.reason}", f"critical-{worst.gate}", critical=True)


def _judge(
    draft: Draft, gates: list[Gate], observations: Observations, canary_weight: int
) -> Mapping[str, GateVerdict]:
    """The gates' verdicts under the rollout's one budget (gates/budget.py)."""
    alpha = draft.spec.analysis.alpha
    judgement = judge_gates(
        draft.spec.gates, gates, observations.readings, canary_share=canary_weight / 100.0, alpha=alpha
    )
    return judgement.verdicts


def _record_verdicts(draft: Draft, verdicts: Mapping[str, GateVerdict]) -> None:
    previous = {gate.name: gate for gate in draft.status.gates}
    recorded = []
    for name, verdict in verdicts.items():
        before = previous.get(name)
        passing_since = None
        if verdict.verdict == "Pass":
            passing_since = before.passing_since if before and before.passing_since else draft.now
        recorded.append(
            GateStatus(
                name=name,
                verdict=verdict.verdict,
                reason=verdict.reason[:1024],
                segment=verdict.segment,
                value=verdict.value,
                baseline=verdict.baseline,
                samples=verdict.samples,
                evaluated_at=draft.now,
                passing_since=passing_since,
                segments=[
                    SegmentVerdict(
                        segment=s.segment,
                        verdict=s.verdict,
                        value=s.value,
                        baseline=s.baseline,
                        samples=s.samples,
                        reason=s.reason[:512],
                    )
                    for s in verdict.segments[:SEGMENT_LIMIT]
                ],
            )
        )
    draft.update(gates=recorded)


# --- router drift -------------------------------------------------------------------------------


def _track_router_errors(draft: Draft, observations: Observations) -> None:
    """Count router failures in a row (reads here, writes in the outcomes); halt at the limit."""
    if observations.router_error is not None:
        draft.update(router_errors=draft.status.router_errors + 1)
    elif observations.router_weights is not None and draft.status.router_errors and not weights_pending(draft.status):
        # A good read resets the count only when no write is outstanding: a route that can be read
        # but not patched (a denying webhook, get without patch) must still reach the limit.
        draft.update(router_errors=0)
    if draft.status.router_errors >= ROUTER_ERROR_LIMIT and draft.status.phase in ("Progressing", "AwaitingApproval"):
        why = observations.router_error or "the last weights could not be applied"
        if draft.status.router_target is not None:
            # Held at what the router last confirmed: a later repair must not apply the weights
            # this halt refused to claim.
            draft.update(weights=draft.status.router_target)
        halt(
            draft,
            f"router failed {draft.status.router_errors} times in a row, exposure held at what it last confirmed "
            f"(canary {_confirmed_canary(draft.status)}%): {why}",
            "router-error",
        )


def _confirmed_canary(status: CheckoutRolloutStatus) -> str:
    return "unknown" if status.router_target is None else str(status.router_target.canary)


def _check_router(draft: Draft, observations: Observations) -> None:
    """Halt when the router no longer shows what the rollout last applied: someone edited it."""
    observed, status = observations.router_weights, draft.status
    if observed is None or status.router_weights is None or weights_pending(status):
        return
    if any(isinstance(a, SetWeights) for a in draft.actions):
        return  # this decision re-states the weights (a retry): the router was read before that
    if status.phase in ("Aborted", "Promoted") and observed.canary > status.weights.canary:
        # An aborted canary gets no traffic, whoever or whatever moved the route since (a patch of a
        # pass cut short by the abort can land after it): the abort's weights are stated again.
        draft.actions.append(
            SetWeights(status.weights, f"{status.phase.lower()}, yet the route sends canary {observed.canary}%")
        )
        after = "the abort" if status.phase == "Aborted" else "the promotion"
        draft.emit("WeightsReapplied", f"the route sent canary {observed.canary}% after {after}", warning=True)
        return
    if status.phase in TERMINAL_PHASES or status.phase == "Halted":
        return
    if observed != status.router_weights:
        halt(
            draft,
            f"router weights were changed by hand: canary {observed.canary}% where the rollout set "
            f"{status.router_weights.canary}% (annotate retry to re-apply {status.weights.canary}%)",
            "router-drift",
        )


def _reassert_weights(draft: Draft) -> None:
    """Status records the intended weights first; until the router confirms them, state them again.

    So a crash between the status write and the router patch only delays the patch.
    """
    if not release.routes_yet(draft):
        return  # adopting: no weights until the stable copy is Ready (release.promote states them)
    if weights_pending(draft.status) and not any(isinstance(a, SetWeights) for a in draft.actions):
        draft.actions.append(SetWeights(draft.status.weights, "weights not yet confirmed by the router"))


# --- steps --------------------------------------------------------------------------------------


def _current_kind(draft: Draft) -> str:
    index = draft.status.current_step
    return draft.spec.steps[index].kind if index < len(draft.spec.steps) else "done"


def _run_steps(draft: Draft, observations: Observations) -> None:
    """Move through every step that can complete now; stop at the first that must wait."""
    if any(isinstance(a, RestoreRevision) for a in draft.actions):
        return  # an undo is under way: its revision is the next rollout's, nothing moves on this one
    for _ in range(len(draft.spec.steps) + 1):
        if draft.status.phase not in ("Progressing", "AwaitingApproval") or not release.steps_may_run(draft):
            return
        index = draft.status.current_step
        if index >= len(draft.spec.steps):
            if freeze.holds(draft) and not release.promoting(draft):
                return  # a promotion grows exposure to all traffic: not in a freeze (one under way ends)
            if draft.spec.workload_ref is not None:
                release.promote(draft, observations)
            else:
                _promote(draft)
            return
        step = draft.spec.steps[index]
        if step.set_weight is not None:
            ceiling = draft.status.exposure_ceiling
            if ceiling is not None and step.set_weight > ceiling:
                halt(
                    draft,
                    f"step {index} would expose the canary to {step.set_weight}%, above the {ceiling}% it had "
                    f"reached before its spec changed: a gate step of the new spec must pass first (step up "
                    f"through a gate, or abort)",
                    "ungated-exposure",
                )
                return
            if step.set_weight > draft.status.weights.canary and freeze.holds(draft):
                return  # no step grows exposure in a freeze; gates, approvals and aborts go on
            if step.set_weight != draft.status.weights.canary:
                if not release.capacity_for(draft, observations.workload, step.set_weight):
                    return  # capacity before exposure: the canary's replicas for this weight first
                draft.set_weight(step.set_weight, f"step {index}: setWeight {step.set_weight}")
            if weights_pending(draft.status):
                return  # complete only once the router confirms the weights (a later pass)
            draft.record("StepAdvanced", f"step {index}: canary weight {step.set_weight}%")
            draft.emit("StepAdvanced", f"step {index}: canary weight {step.set_weight}%")
            draft.start_step(index + 1)
        elif step.gate is not None:
            if not _gate_step_passed(draft, step.gate.pass_, step.gate.window_seconds):
                return
            draft.record(
                "StepAdvanced", f"step {index}: gates {', '.join(step.gate.pass_)} held for {step.gate.window}"
            )
            draft.update(exposure_ceiling=None)  # this generation's own gates now vouch for its exposure
            draft.emit("StepAdvanced", f"step {index}: gates held for {step.gate.window}")
            draft.start_step(index + 1)
        elif step.approval is not None:
            if draft.status.phase != "AwaitingApproval":
                draft.update(phase="AwaitingApproval")
                needed = step.approval.approvers
                who = "an approval" if needed == 1 else f"{needed} approvers"
                draft.record("AwaitingApproval", step.approval.reason or f"step {index} needs {who}")
                draft.emit("AwaitingApproval", f"step {index}: annotate gates.checkout.dev/approve=<you> to go on")
            _approval_deadline(draft, index, step.approval)
            return
        elif step.pause is not None:
            started = draft.status.step_started_at or draft.now
            if draft.now < started + timedelta(seconds=step.pause.duration_seconds):
                return
            draft.record("StepAdvanced", f"step {index}: paused for {step.pause.duration}")
            draft.start_step(index + 1)


def _approval_deadline(draft: Draft, index: int, step: ApprovalStep) -> None:
    """Nobody approved within the step's deadline: halt (exposure held) or abort, and page."""
    deadline = step.deadline_seconds
    started = draft.status.step_started_at
    if deadline is None or started is None or draft.now < started + timedelta(seconds=deadline):
        return
    given = ", ".join(a.actor for a in draft.status.approvals) or "nobody"
    reason = (
        f"step {index} was not approved within {step.deadline} ({len(draft.status.approvals)} of {step.approvers} "
        f"approvers: {given})"
    )
    if step.on_deadline == "abort":
        abort(draft, reason, OPERATOR, page=True, slug="approval-deadline")
    else:
        halt(
            draft,
            f"{reason}; exposure held; annotate retry to wait again (the approvals start over), or abort",
            "approval-deadline",
            hold=True,
        )


def _gate_step_passed(draft: Draft, names: list[str], window_seconds: float) -> bool:
    if draft.status.last_evaluated_at != draft.now:
        return False  # only a fresh evaluation in this decision can open the next step
    by_name = {gate.name: gate for gate in draft.status.gates}
    for name in names:
        gate = by_name.get(name)
        if gate is None or gate.verdict != "Pass" or gate.passing_since is None:
            return False
        if (draft.now - gate.passing_since).total_seconds() < window_seconds:
            return False
    return True


def _promote(draft: Draft) -> None:
    ceiling = draft.status.exposure_ceiling
    if ceiling is not None and ceiling < 100:
        halt(
            draft,
            f"the last step would promote the canary to 100%, above the {ceiling}% it had reached before its spec "
            "changed: a gate step of the new spec must pass first (step up through a gate, or abort)",
            "ungated-exposure",
        )
        return
    if draft.status.weights.canary != 100:
        draft.set_weight(100, "all steps passed: promoting")
    if weights_pending(draft.status):
        return  # Promoted only once the router confirms that the canary takes all traffic
    draft.update(phase="Promoted", halt_reason="", exposure_ceiling=None)
    draft.resolve_page()
    draft.record("Promoted", f"all {len(draft.spec.steps)} steps passed")
    draft.emit("Promoted", f"{draft.spec.canary.service} takes all traffic")


# --- paging and summary -------------------------------------------------------------------------


def _page(draft: Draft) -> None:
    page = draft.status.page
    if page is None:
        return
    if page.resolved_at is None and draft.status.phase in ("Halted", "Aborted"):
        escalated = pages.escalate_if_due(draft.rollout, page, draft.now)
        if escalated is not page:
            draft.update(page=escalated)
            draft.record("Escalated", f"not acknowledged within {draft.spec.owner.escalate_after}")
            draft.emit("Escalated", "page escalated", warning=True)
    severity: Severity = "critical" if draft.status.phase == "Aborted" else "error"
    draft.actions.extend(pages.page_actions(draft.status.page, _page_details(draft), severity))


def _where(draft: Draft) -> dict[str, str]:
    """Where the rollout is, as every page and notice says it."""
    meta, status = draft.rollout.metadata, draft.status
    return {
        "rollout": f"{meta.namespace}/{meta.name}",
        "owner": draft.spec.owner.name,
        "phase": status.phase,
        "step": str(status.current_step),
        "weights": f"stable {status.weights.stable}% / canary {status.weights.canary}%",
    }


def _page_details(draft: Draft) -> dict[str, str]:
    meta, status = draft.rollout.metadata, draft.status
    failing = next((g for g in status.gates if g.verdict != "Pass"), None)
    target = f"cro/{meta.name} -n {meta.namespace}"
    details = {
        **_where(draft),
        "reason": status.halt_reason,
        **_revision_details(status),
        "abort": f"kubectl annotate {target} gates.checkout.dev/abort=$USER",
        "retry": f"kubectl annotate {target} gates.checkout.dev/retry=$USER",
    }
    if failing is not None:
        details |= {
            "gate": failing.name,
            "segment": failing.segment,
            "value": "" if failing.value is None else f"{failing.value:.6g}",
            "baseline": "" if failing.baseline is None else f"{failing.baseline:.6g}",
        }
    return details


def _notice_details(draft: Draft) -> dict[str, str]:
    """What a notice carries: where the rollout is, what the gates saw, and the command to act."""
    meta, status = draft.rollout.metadata, draft.status
    target = f"cro/{meta.name} -n {meta.namespace}"
    details = {
        **_where(draft),
        "gates": "; ".join(f"{g.name} {g.verdict} {g.segment}".strip() for g in status.gates)[:1000] or "none yet",
        **_revision_details(status),
    }
    if status.phase == "AwaitingApproval":
        needed = approvals.needed(draft)
        given = ", ".join(a.actor for a in status.approvals)
        details["approvals"] = f"{len(status.approvals)} of {needed}" + (f" ({given})" if given else "")
        details["approve"] = f"kubectl annotate {target} gates.checkout.dev/approve=$USER"
        steps = draft.spec.steps
        approval = steps[status.current_step].approval if status.current_step < len(steps) else None
        if approval is not None and approval.deadline is not None:
            details["deadline"] = f"{approval.deadline} ({approval.on_deadline} after it)"
    details["abort"] = f"kubectl annotate {target} gates.checkout.dev/abort=$USER"
    return details


def _revision_details(status: CheckoutRolloutStatus) -> dict[str, str]:
    revisions = status.revisions
    if revisions is None:
        return {}
    details = {}
    if revisions.stable is not None:
        details["stable revision"] = f"{revisions.stable.hash} ({', '.join(revisions.stable.images)})"
    if revisions.canary is not None:
        details["canary revision"] = f"{revisions.canary.hash} ({', '.join(revisions.canary.images)})"
    return details


def _summarize(draft: Draft) -> None:
    status = draft.status
    generation = draft.rollout.metadata.generation
    moving = status.phase in ("Progressing", "AwaitingApproval")
    conditions = set_condition(
        status.conditions,
        "Progressing",
        "True" if moving else "False",
        status.phase,
        status.halt_reason or _step_message(draft),
        now=draft.now,
        generation=generation,
    )
    verdicts = [gate.verdict for gate in status.gates]
    if verdicts:
        worst = "Fail" if "Fail" in verdicts else "Inconclusive" if "Inconclusive" in verdicts else "Pass"
        gate_state = {"Pass": "True", "Fail": "False", "Inconclusive": "Unknown"}[worst]
        failing = next((g for g in status.gates if g.verdict == worst), status.gates[0])
        summary = "Pass" if worst == "Pass" else f"{worst}: {failing.name} {failing.segment}".strip()
        conditions = set_condition(
            conditions,
            "GatesPassing",
            gate_state,  # type: ignore[arg-type]
            worst,
            failing.reason if worst != "Pass" else "all watched gates pass",
            now=draft.now,
            generation=generation,
        )
    else:
        summary = ""
    draft.update(
        conditions=conditions,
        verdict=summary,
        message=status.halt_reason or freeze.message(draft) + _step_message(draft),
        guarantee=guarantee(draft.spec.gates, alpha=draft.spec.analysis.alpha),
    )


def _step_message(draft: Draft) -> str:
    status = draft.status
    phase: Phase = status.phase
    workload = release.message(draft) if phase in ("Progressing", "Promoted") else ""
    if workload:
        return workload
    if phase == "Promoted":
        return "promoted: canary takes all traffic"
    index = status.current_step
    if index >= len(draft.spec.steps):
        return ""
    step = draft.spec.steps[index]
    if phase == "Paused" and status.paused_by_spec:
        return f"paused by spec.paused at step {index}; set it to false to resume"
    if phase == "Paused":
        return f"paused at step {index}; annotate gates.checkout.dev/approve=<you> to resume"
    if step.gate is not None:
        return f"step {index}: gates {', '.join(step.gate.pass_)} must hold for {step.gate.window}"
    if step.approval is not None:
        if step.approval.approvers > 1:
            given = ", ".join(approval.actor for approval in status.approvals) or "none yet"
            return f"step {index}: awaiting {step.approval.approvers} approvers ({given})"
        return f"step {index}: awaiting approval"
    if step.pause is not None:
        return f"step {index}: pausing for {step.pause.duration}"
    return f"step {index}"
