"""Kubernetes-style conditions: a transition time that moves only when the status does.

Besides those the state machine sets, two report what the controller observed before deciding:
``RouterReady`` (False when the router could not be read) and ``MetricsAvailable`` (whether the
gates' queries answered), see :func:`observation_conditions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.api.status import CheckoutRolloutStatus, Condition
from checkout_gates.gates.observations import SignalReading

ConditionStatus = Literal["True", "False", "Unknown"]


def set_condition(
    conditions: list[Condition],
    kind: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    now: datetime,
    generation: int,
) -> list[Condition]:
    """The conditions with ``kind`` set; unchanged (same object values) when nothing differs."""
    previous = next((c for c in conditions if c.type == kind), None)
    if (
        previous is not None
        and previous.status == status
        and previous.reason == reason
        and previous.message == message
        and previous.observed_generation == generation
    ):
        return conditions
    moved = previous is None or previous.status != status
    updated = Condition(
        type=kind,
        status=status,
        reason=reason,
        message=message[:1024],
        last_transition_time=now if moved or previous is None else previous.last_transition_time,
        observed_generation=generation,
    )
    return [c for c in conditions if c.type != kind] + [updated]


def condition(conditions: list[Condition], kind: str) -> Condition | None:
    return next((c for c in conditions if c.type == kind), None)


def observation_conditions(
    status: CheckoutRolloutStatus,
    rollout: CheckoutRollout,
    router_error: str | None,
    readings: Mapping[str, SignalReading],
    now: datetime,
) -> CheckoutRolloutStatus:
    """The decided status with the conditions of what the pass observed: the router's read error,
    and whether the gates' queries (made only when an evaluation was due) answered. Unchanged
    when they say what status already says, so that a pass with nothing new writes nothing."""
    generation = rollout.metadata.generation
    conditions = status.conditions
    if router_error is not None:
        conditions = set_condition(
            conditions, "RouterReady", "False", "RouterError", router_error, now=now, generation=generation
        )
    if readings:
        errors = [r.error for r in readings.values() if r.error]
        if errors:
            conditions = set_condition(
                conditions, "MetricsAvailable", "False", "QueryFailed", errors[0], now=now, generation=generation
            )
        else:
            conditions = set_condition(
                conditions, "MetricsAvailable", "True", "Queried", "", now=now, generation=generation
            )
    if conditions is status.conditions:
        return status
    return status.model_copy(update={"conditions": conditions})
