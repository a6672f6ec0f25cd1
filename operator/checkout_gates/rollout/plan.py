"""Which gates a rollout watches now, over which windows, and whether an evaluation is due.

The controller asks this before it queries Prometheus, so that only the needed queries run and the
decision sees readings for exactly the gates it judges.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.api.spec import CheckoutRolloutSpec, Gate
from checkout_gates.api.status import TERMINAL_PHASES
from checkout_gates.gates.evaluate import query_window_seconds


@dataclass(frozen=True)
class GateRead:
    gate: Gate
    window_seconds: float


def watched_gate_names(spec: CheckoutRolloutSpec, step_index: int) -> tuple[str, ...]:
    """The gates of the current gate step, else of the last gate step before it; plus critical gates.

    Holding at an approval or a pause does not stop the watch: duplicate charges at 5 % still abort.
    """
    names: list[str] = []
    for step in reversed(spec.steps[: step_index + 1]):
        if step.gate is not None:
            names = list(step.gate.pass_)
            break
    names += [gate.name for gate in spec.gates if gate.critical and gate.name not in names]
    return tuple(names)


def step_elapsed_seconds(rollout: CheckoutRollout, now: datetime) -> float:
    started = rollout.status.step_started_at
    return 0.0 if started is None else max(0.0, (now - started).total_seconds())


def evaluation_due(rollout: CheckoutRollout, now: datetime) -> bool:
    status = rollout.status
    if status.phase in TERMINAL_PHASES or status.phase == "Pending":
        return False
    if status.observed_generation != rollout.metadata.generation or status.weights.canary == 0:
        return False
    if status.current_step >= len(rollout.spec.steps) or step_elapsed_seconds(rollout, now) <= 0:
        return False
    last = status.last_evaluated_at
    # A little slack, so that a timer firing a few milliseconds early does not skip a whole interval.
    return last is None or (now - last).total_seconds() >= rollout.spec.interval_seconds() * 0.9


def reads_needed(rollout: CheckoutRollout, now: datetime) -> list[GateRead]:
    """The gates to query now with their query windows; empty when no evaluation is due."""
    if not evaluation_due(rollout, now):
        return []
    spec = rollout.spec
    elapsed = step_elapsed_seconds(rollout, now)
    interval = spec.interval_seconds()
    return [
        GateRead(
            spec.gate(name),
            query_window_seconds(spec.gate(name), interval_seconds=interval, step_elapsed_seconds=elapsed),
        )
        for name in watched_gate_names(spec, rollout.status.current_step)
    ]
