"""Actions: what a decision asks the controller to do, as data.

Every action states a target, never a delta, and carries a key, so carrying one out twice
(after a crash, a conflict, a re-decision) changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from checkout_gates.api.status import CheckoutRolloutStatus, Weights


@dataclass(frozen=True)
class SetWeights:
    weights: Weights
    reason: str


Severity = Literal["critical", "error", "warning", "info"]


@dataclass(frozen=True)
class PageOwner:
    """Trigger (or re-send) the page of a halt to the targets not yet delivered to.

    ``targets`` are indexes into ``owner.page`` (``escalation=False``) or ``owner.escalateTo``.
    """

    dedup_key: str
    summary: str
    severity: Severity
    details: Mapping[str, str]
    targets: tuple[int, ...]
    escalation: bool = False


@dataclass(frozen=True)
class ResolvePage:
    dedup_key: str
    reason: str
    targets: tuple[int, ...] = ()
    escalation_targets: tuple[int, ...] = ()


@dataclass(frozen=True)
class Notify:
    """Send a notice (or, ``resolved``, its resolution) to ``targets``, indexes into ``owner.notify``
    (or, with prefix "page", into ``owner.page``).

    A notice is no page: it tells the owner something they may act on (a step waits for approval,
    a rollout started, promoted or aborted), at severity info."""

    dedup_key: str
    summary: str
    details: Mapping[str, str]
    targets: tuple[int, ...]
    triggered_at: datetime
    resolved: bool = False
    severity: Severity = "info"
    # Whose targets: "notify" (owner.notify), or "page" (owner.page: an override of the gates).
    prefix: str = "notify"


@dataclass(frozen=True)
class EmitEvent:
    reason: str
    message: str
    type: Literal["Normal", "Warning"] = "Normal"


@dataclass(frozen=True)
class ConsumeAnnotation:
    """Remove an on-call annotation once it is recorded; only if it still holds ``value``."""

    key: str
    value: str


@dataclass(frozen=True)
class ScaleCanary:
    """Make the workload's Deployment (the canary) run ``replicas`` replicas."""

    replicas: int
    reason: str


@dataclass(frozen=True)
class SetStableRevision:
    """Make the stable copy run the Deployment's pod template at ``replicas`` replicas, only while
    that template is still ``revision`` (a newer one is the next decision's to judge, never copied)."""

    revision: str
    replicas: int
    reason: str
    # An HPA scales the copy: ``replicas`` is a floor (a copy with fewer is scaled up to it, never
    # one with more down), not a count to hold.
    keep_replicas: bool = False


@dataclass(frozen=True)
class SyncStableAutoscaler:
    """Give the stable copy an HPA of its own (<name>-stable) with the spec of the Deployment's HPA,
    aimed at the copy: without it, the stable side (all of checkout between rollouts) never scales."""

    reason: str


@dataclass(frozen=True)
class RestoreRevision:
    """Write the pod template of stable revision ``revision`` (the current or the previous one, as the
    stable copy keeps them) back into the workload's Deployment: an undo, rolled out like any revision."""

    revision: str
    reason: str
    # Only while the Deployment still has this revision: a newer change by someone is never overwritten.
    replacing: str = ""


WorkloadAction = ScaleCanary | SetStableRevision | RestoreRevision | SyncStableAutoscaler
Action = (
    SetWeights
    | PageOwner
    | ResolvePage
    | Notify
    | EmitEvent
    | ConsumeAnnotation
    | ScaleCanary
    | SetStableRevision
    | RestoreRevision
    | SyncStableAutoscaler
)


@dataclass(frozen=True)
class Decision:
    status: CheckoutRolloutStatus
    actions: tuple[Action, ...] = field(default_factory=tuple)
