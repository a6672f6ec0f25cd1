"""Kubernetes-style conditions: a transition time that moves only when the status does."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from checkout_gates.api.status import Condition

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
