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
SEGMENT_LIMIT = 20


class Weights(StatusModel):
    stable: Annotated[int, Field(ge=0, le=100)] = 100
    canary: Annotated[int, Field(ge=0, le=100)] = 0

    @classmethod
    def canary_at(cls, canary: int) -> Weights:
        return cls(stable=100 - canary, canary=canary)


class Condition(StatusModel):
    """The shape of Kubernetes' metav1.Condition."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: Annotated[str, Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")]
    message: str = ""
    last_transition_time: datetime
    observed_generation: int = 0


class SegmentVerdict(StatusModel):
    segment: str
    verdict: VerdictName
    value: float | None = None
    baseline: float | None = None
    samples: float | None = None
    reason: str = ""


class GateStatus(StatusModel):
    """The last verdict of one gate, with the segment that decided it."""

    name: str
    verdict: VerdictName
    reason: str
    segment: str = ""
    value: float | None = None
    baseline: float | None = None
    samples: float | None = None
    evaluated_at: datetime
    passing_since: datetime | None = None
    segments: Annotated[list[SegmentVerdict], Field(max_length=SEGMENT_LIMIT)] = []


class PageDelivery(StatusModel):
    target: str
    delivered_at: datetime | None = None
    resolved_at: datetime | None = None
    error: str = ""
    attempts: int = 0


class PageState(StatusModel):
    """One halt's page. The dedup key is what makes a re-decided or restarted page a no-op."""

    dedup_key: str
    reason: str
    summary: str
    triggered_at: datetime
    escalated_at: datetime | None = None
    resolved_at: datetime | None = None
    deliveries: list[PageDelivery] = []


class HistoryEntry(StatusModel):
    time: datetime
    actor: str
    action: str
    reason: str
    step: int
    canary_weight: int
    generation: int


class ConsumedAnnotation(StatusModel):
    """The last annotation of one key taken into account, and the epoch it was taken at."""

    key: str
    value: str
    epoch: int


class CheckoutRolloutStatus(StatusModel):
    phase: Phase = "Pending"
    observed_generation: int = 0
    current_step: Annotated[int, Field(ge=0)] = 0
    step_started_at: datetime | None = None
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
    paused_from: Phase | None = None
    weights: Weights = Weights()
    router_target: Annotated[Weights | None, Field(description="The last weights confirmed applied to the router.")] = (
        None
    )
    router_weights: Annotated[
        Weights | None, Field(description="What the router reported back after that (replicas round).")
    ] = None
    message: str = ""
    verdict: Annotated[str, Field(description="The last evaluation in one line, for kubectl get.")] = ""
    halt_reason: str = ""
    failures: int = 0
    inconclusives: int = 0
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
    conditions: list[Condition] = []
    gates: list[GateStatus] = []
    page: PageState | None = None
    consumed: list[ConsumedAnnotation] = []
    history: Annotated[list[HistoryEntry], Field(max_length=HISTORY_LIMIT)] = []
