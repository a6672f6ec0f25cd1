"""The ``CheckoutRollout`` status: the operator's only state, so it must be complete and bounded.

The controller keeps no memory of its own between reconciles: every decision is made from the
spec, this status, fresh observations and the clock. That is what makes a restart at any point safe.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import ConfigDict, Field

from checkout_gates.api.base import ApiModel


class StatusModel(ApiModel):
    # Status is written by the operator and maybe by a newer one; an unknown field must not
    # stop an older operator from reading the state it needs.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=True)


Phase = Literal["Pending", "Progressing", "Paused", "AwaitingApproval", "Halted", "Aborted", "Promoted"]
PHASES: tuple[Phase, ...] = (
    "Pending",
    "Progressing",
    "Paused",
    "AwaitingApproval",
    "Halted",
    "Aborted",
    "Promoted",
)
TERMINAL_PHASES: frozenset[Phase] = frozenset({"Aborted", "Promoted"})
VerdictName = Literal["Pass", "Fail", "Inconclusive"]

HISTORY_LIMIT = 50
EVIDENCE_LIMIT = 512
SEGMENT_LIMIT = 20


class Weights(StatusModel):
    stable: Annotated[int, Field(ge=0, le=100)] = 100
    """The stable version's share of traffic, in percent."""
    canary: Annotated[int, Field(ge=0, le=100)] = 0
    """The canary's share, in percent."""

    @classmethod
    def canary_at(cls, canary: int) -> Weights:
        return cls(stable=100 - canary, canary=canary)


class Condition(StatusModel):
    """The shape of Kubernetes' metav1.Condition."""

    type: str
    """The condition's type (e.g. Halted)."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: Annotated[str, Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")]
    """Why, in one CamelCase word."""
    message: str = ""
    """Why, in words."""
    last_transition_time: datetime
    """When the status last changed."""
    observed_generation: int = 0
    """The spec generation it was set for."""


class SegmentVerdict(StatusModel):
    segment: str
    """The segment's labels (provider=adyen,method=card), or all."""
    verdict: VerdictName
    """Pass, Fail or Inconclusive."""
    value: float | None = None
    """The canary's value."""
    baseline: float | None = None
    """Stable's value."""
    samples: float | None = None
    """The canary's samples behind the value."""
    reason: str = ""
    """Why, in words."""


class GateStatus(StatusModel):
    """The last verdict of one gate, with the segment that decided it."""

    name: str
    """The gate."""
    verdict: VerdictName
    """Pass, Fail or Inconclusive: the worst segment's."""
    reason: str
    """Why, naming the deciding segment."""
    segment: str = ""
    """The deciding segment."""
    value: float | None = None
    """The deciding segment's canary value."""
    baseline: float | None = None
    """Its stable value."""
    samples: float | None = None
    """Its canary samples."""
    evaluated_at: datetime
    """When the gate was last evaluated."""
    passing_since: datetime | None = None
    """Since when the gate has passed without a break (the pass window counts from here)."""
    segments: Annotated[list[SegmentVerdict], Field(max_length=SEGMENT_LIMIT)] = []
    """The worst segments, worst first."""


class PageDelivery(StatusModel):
    target: str
    """The page target (its kind and where)."""
    delivered_at: datetime | None = None
    """When the page reached it."""
    resolved_at: datetime | None = None
    """When its resolution reached it."""
    error: str = ""
    """The last delivery error, scrubbed."""
    attempts: int = 0
    """Delivery attempts so far."""


class PageState(StatusModel):
    """One halt's page. The dedup key is what makes a re-decided or restarted page a no-op."""

    dedup_key: str
    """The page's key: one incident per halt, never two."""
    reason: str
    """What the page is about."""
    summary: str
    """The page's summary line."""
    triggered_at: datetime
    """When the page was opened."""
    escalated_at: datetime | None = None
    """When it was escalated."""
    resolved_at: datetime | None = None
    """When it was resolved."""
    deliveries: list[PageDelivery] = []
    """Its delivery to each target."""


class HistoryEntry(StatusModel):
    time: datetime
    """When."""
    actor: str
    """Who: the operator, or the user an annotation or edit came from."""
    action: str
    """What happened (Started, StepAdvanced, Halted, Approved, ...)."""
    reason: str
    """Why, in words."""
    step: int
    """The step it happened at."""
    canary_weight: int
    """The canary's weight after it."""
    generation: int
    """The spec generation it happened under."""
    seq: Annotated[int, Field(ge=0)] = 0
    """Its place in the rollout's record (1 for the first transition, the epoch it made); with the rollout's uid, its audit record's key."""
    revision: Annotated[str, Field(max_length=64)] = ""
    """The canary revision it concerns (a rollout with a workloadRef)."""
    evidence: Annotated[str, Field(max_length=EVIDENCE_LIMIT)] = ""
    """What the gates said when it happened: each gate's verdict with its deciding segment and values."""


class AuditExport(StatusModel):
    """How far the history has reached the operator's audit sink (checkout-gates run --audit-url)."""

    delivered: Annotated[int, Field(ge=0)] = 0
    """The seq of the last history entry the sink accepted: every entry up to it has been delivered."""
    lost: Annotated[int, Field(ge=0)] = 0
    """Entries that left the history (it keeps the last 50) before the sink accepted them."""
    failures: Annotated[int, Field(ge=0)] = 0
    """Failed deliveries in a row (the retry waits longer after each)."""
    error: Annotated[str, Field(max_length=1024)] = ""
    """The last delivery error, scrubbed."""
    attempted_at: datetime | None = None
    """When the last delivery was tried."""


class ConsumedAnnotation(StatusModel):
    """The last annotation of one key taken into account, and the epoch it was taken at."""

    key: str
    """The annotation consumed."""
    value: str
    """Its value (the actor and reason)."""
    epoch: int
    """The epoch it was consumed in."""
    reason: str | None = None
    """A fingerprint of the reason that went with it (a repeat with another reason is a new request)."""


IMAGE_LIMIT = 8


class Revision(StatusModel):
    """One revision of the workload's pod template."""

    hash: str
    """A hash of the pod template (the Deployment's, as people and GitOps wrote it)."""
    images: Annotated[list[str], Field(max_length=IMAGE_LIMIT)] = []
    """Its containers' images."""
    author: Annotated[str, Field(max_length=253)] = ""
    """Who changed the Deployment's pod template to it, as admission stamped it (gates.checkout.dev/template-changed-by); empty where nothing stamped it. The author never counts as an approver."""


class Approval(StatusModel):
    """One person's approval of the current approval step."""

    actor: Annotated[str, Field(max_length=253)]
    """Who approved (the annotation's value, which admission makes the requesting user)."""
    at: datetime
    """When."""
    reason: Annotated[str, Field(max_length=512)] = ""
    """Why, as they gave it (gates.checkout.dev/reason)."""


class FreezeState(StatusModel):
    """The CheckoutFreeze that holds the rollout's exposure where it is."""

    name: str
    """The CheckoutFreeze (empty when freezes cannot be read: then exposure is held until they can)."""
    reason: str
    """Its reason."""
    until: datetime
    """When the window ends."""


class FreezeBreak(StatusModel):
    """A break-glass (gates.checkout.dev/break-freeze): this freeze no longer holds the rollout until ``until``."""

    name: str
    """The CheckoutFreeze broken (empty: the freezes could not be read)."""
    until: datetime
    """The end of the window it was broken for (unreadable freezes: an hour)."""
    by: str
    """Who broke it."""
    reason: str
    """Why."""


class UndoIntent(StatusModel):
    """Write revision ``to`` back into the Deployment while it still has revision ``replacing``."""

    to: str
    """The revision to go back to."""
    replacing: str
    """The Deployment's revision when the undo was asked for; once it changes, the undo is done."""
    actor: str = ""
    """Who asked for it."""
    since: datetime | None = None
    """When: an undo not carried out within the progress deadline is given up and recorded."""


class Revisions(StatusModel):
    """What the workload runs, for a rollout with a workloadRef."""

    stable: Revision | None = None
    """The revision the stable copy runs: the last promoted (or, at first, the one found)."""
    canary: Revision | None = None
    """The revision being rolled out, run by the Deployment itself; none between rollouts."""
    waiting_since: datetime | None = None
    """Since when the rollout waits for the canary (or, promoting, the stable copy) to be Ready: the progress deadline counts from here."""
    canary_ready_at: datetime | None = None
    """When the canary revision became Ready: steps and evidence start from here."""
    promoting: bool = False
    """Whether the stable copy is taking the canary's revision (all steps passed)."""
    replicas: int = 0
    """The stable copy's replicas at the last promotion (to re-create it with, should it vanish)."""
    capacity: int = 0
    """Under an HPA: the Ready stable replicas a move of all traffic to stable (promotion, abort) waits for, fixed when the move began (0: none under way)."""
    previous: Revision | None = None
    """The stable revision before the last promotion: what an undo of a promoted rollout goes back to."""
    undo: UndoIntent | None = None
    """An undo on-call asked for, until the Deployment shows it (so a crash cannot lose it)."""
    error: str = ""
    """The last error of a workload read or write, scrubbed."""


class CheckoutRolloutStatus(StatusModel):
    """What the operator did and saw: written by it alone, on transitions."""

    phase: Phase = "Pending"
    """Pending, Progressing, AwaitingApproval, Paused, Halted, Aborted or Promoted."""
    observed_generation: int = 0
    """The spec generation the status is for."""
    current_step: Annotated[int, Field(ge=0)] = 0
    """The step the rollout is at (0-based)."""
    step_started_at: datetime | None = None
    """When the current step started."""
    evidence_since: Annotated[
        datetime | None,
        Field(
            description="When the carried evidence began (the rollout's start, a restart or a retry): sequential "
            "gates with counts exact count from here, across steps."
        ),
    ] = None
    guarantee: Annotated[str, Field(description="The false-halt bound that holds for this rollout, and over what.")] = (
        ""
    )
    last_evaluated_at: datetime | None = None
    """When the gates were last evaluated."""
    paused_from: Phase | None = None
    """The phase a pause will resume."""
    paused_by_spec: bool = False
    """Whether the pause is spec.paused's (set back to false, it resumes) rather than on-call's annotation."""
    observed_spec: str = ""
    """A fingerprint of the spec the status is for, spec.paused left out: a new generation that only toggles paused is no restart."""
    weights: Weights = Weights()
    """The weights the rollout wants."""
    router_target: Annotated[Weights | None, Field(description="The last weights confirmed applied to the router.")] = (
        None
    )
    router_weights: Annotated[
        Weights | None, Field(description="What the router reported back after that (replicas round).")
    ] = None
    message: str = ""
    """What the rollout is doing, in words."""
    verdict: Annotated[str, Field(description="The last evaluation in one line, for kubectl get.")] = ""
    halt_reason: str = ""
    """Why it halted."""
    failures: int = 0
    """Failed evaluations in this step (against analysis.failureLimit)."""
    inconclusives: int = 0
    """Inconclusive evaluations in this step (against analysis.inconclusiveLimit)."""
    router_errors: Annotated[
        int, Field(ge=0, description="Router reads or writes that failed in a row; at 3 the rollout halts.")
    ] = 0
    exposure_ceiling: Annotated[
        int | None,
        Field(
            ge=0,
            le=100,
            description="After a spec change mid-rollout: the canary weight the earlier generation had reached. "
            "No setWeight step may exceed it until a gate step of the new generation passes.",
        ),
    ] = None
    epoch: Annotated[int, Field(description="Counts transitions; annotations are consumed per epoch.")] = 0
    revisions: Revisions | None = None
    """The stable and canary revisions, for a rollout with a workloadRef."""
    conditions: list[Condition] = []
    """Conditions, as kstatus-reading tools expect."""
    gates: list[GateStatus] = []
    """The watched gates' last verdicts."""
    page: PageState | None = None
    """The open (or last) page."""
    consumed: list[ConsumedAnnotation] = []
    """On-call annotations already acted on."""
    freeze: FreezeState | None = None
    """The freeze window holding exposure now, if any (not one broken for this rollout)."""
    freeze_breaks: Annotated[list[FreezeBreak], Field(max_length=8)] = []
    """Break-glasses of freezes in force for this rollout."""
    notices: Annotated[list[PageState], Field(max_length=8)] = []
    """The last notices to owner.notify (no page: a step waiting for approval, a rollout started, promoted or aborted), with their delivery to each target."""
    authors: Annotated[list[Annotated[str, Field(max_length=253)]], Field(max_length=16)] = []
    """Everyone who changed the rollout's spec, or the Deployment to a revision under rollout, since the rollout last started from rest (as admission recorded them): none of them approves or overrides it."""
    approvals: Annotated[list[Approval], Field(max_length=5)] = []
    """The approvals the current approval step has so far (distinct people; emptied when the step changes)."""
    history: Annotated[list[HistoryEntry], Field(max_length=HISTORY_LIMIT)] = []
    """The last transitions, who did what and why."""
    audit: AuditExport | None = None
    """The history's delivery to the audit sink, when the operator has one."""
