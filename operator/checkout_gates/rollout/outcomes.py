"""What carrying out a decision's actions changed, and how that is recorded in status.

The controller carries out the actions (router patches, pages) and collects their results here as
data; :func:`apply_outcomes` turns them into the status of the second write of a pass. It is
applied to the rollout as re-read after the decision's status write, so an outcome for weights or
a page that a newer decision no longer intends records nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.api.status import CheckoutRolloutStatus, Weights
from checkout_gates.rollout import audit
from checkout_gates.rollout.conditions import set_condition
from checkout_gates.rollout.pages import record_delivery


@dataclass(frozen=True)
class DeliveryOutcome:
    """One page target's result: ``error`` is empty on success."""

    target_name: str
    dedup_key: str
    resolved: bool
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class Outcomes:
    """What carrying out a decision's actions changed, to record in status."""

    router_target: Weights | None = None
    router_weights: Weights | None = None
    router_error: str | None = None
    deliveries: list[DeliveryOutcome] = field(default_factory=list)
    # Workload actions carried out: None when there were none, "" when all succeeded, else why not.
    workload_error: str | None = None
    # Audit records sent to the sink, and why they were not accepted ("" when they were).
    audit_sent: audit.Pending | None = None
    audit_error: str = ""

    @property
    def failed(self) -> bool:
        return self.router_error is not None or bool(self.workload_error) or any(not d.ok for d in self.deliveries)


def apply_outcomes(rollout: CheckoutRollout, outcomes: Outcomes, now: datetime) -> CheckoutRolloutStatus:
    """The rollout's status with the outcomes recorded; the same status when there is nothing new."""
    status = rollout.status
    generation = rollout.metadata.generation
    conditions = status.conditions
    if outcomes.router_target is not None and outcomes.router_target == status.weights:
        status = status.model_copy(
            update={
                "router_target": outcomes.router_target,
                "router_weights": outcomes.router_weights,
                "router_errors": 0,
            }
        )
        conditions = set_condition(
            conditions,
            "RouterReady",
            "True",
            "WeightsApplied",
            f"canary {outcomes.router_target.canary}%",
            now=now,
            generation=generation,
        )
    if outcomes.router_error is not None:
        # Counted with the failed reads (rollout/machine.py halts at ROUTER_ERROR_LIMIT in a row).
        status = status.model_copy(update={"router_errors": status.router_errors + 1})
        conditions = set_condition(
            conditions, "RouterReady", "False", "RouterError", outcomes.router_error, now=now, generation=generation
        )
    revisions = status.revisions
    if outcomes.workload_error is not None and revisions is not None and revisions.error != outcomes.workload_error:
        status = status.model_copy(
            update={"revisions": revisions.model_copy(update={"error": outcomes.workload_error})}
        )
    for delivery in outcomes.deliveries:
        status = record_delivery(
            status,
            delivery.target_name,
            dedup_key=delivery.dedup_key,
            resolved=delivery.resolved,
            error=delivery.error,
            now=now,
        )
    if outcomes.deliveries:
        failed = [d for d in outcomes.deliveries if not d.ok]
        conditions = set_condition(
            conditions,
            "PageDelivered",
            "False" if failed else "True",
            "DeliveryFailed" if failed else "Delivered",
            "; ".join(f"{d.target_name}: {d.error}" for d in failed) if failed else "every target accepted the page",
            now=now,
            generation=generation,
        )
    if outcomes.audit_sent is not None:
        status = audit.exported(status, outcomes.audit_sent, outcomes.audit_error, now)
    if conditions is not status.conditions:
        status = status.model_copy(update={"conditions": conditions})
    return status
