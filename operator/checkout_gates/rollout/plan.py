"""Which gates a rollout watches now, over which windows, whether an evaluation is due, and when
the next pass is.

The controller asks this before it queries Prometheus, so that only the needed queries run and the
decision sees readings for exactly the gates it judges; and after a pass, how long to wait for
the next one (all from the ``now`` it is given: nothing here reads a clock). The dry run
(``checkout-gates evaluate``) plans with :func:`plan` which gates to judge, from the spec alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.api.spec import CheckoutRolloutSpec, Gate
from checkout_gates.api.status import TERMINAL_PHASES, CheckoutRolloutStatus
from checkout_gates.gates.evaluate import carried, query_window_seconds

RETRY_SOON = 5.0  # seconds, after a failed action
IDLE_RESYNC = 300.0  # seconds, for a rollout with nothing due
# A floor on every delay: a due time already past (a late pass) means a pass soon, not a tight loop.
MIN_DELAY = 0.2


@dataclass(frozen=True)
class GateRead:
    gate: Gate
    window_seconds: float
    # Where a gate with carried evidence counts from (status.evidenceSince); None for the others.
    since: datetime | None = None


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
    since = rollout.status.evidence_since or rollout.status.step_started_at
    reads: list[GateRead] = []
    for name in watched_gate_names(spec, rollout.status.current_step):
        gate = spec.gate(name)
        if carried(gate) and since is not None:
            window = max(interval, (now - since).total_seconds())
            reads.append(GateRead(gate, window, since))
        else:
            reads.append(
                GateRead(gate, query_window_seconds(gate, interval_seconds=interval, step_elapsed_seconds=elapsed))
            )
    return reads


# --- when the next pass is due ------------------------------------------------------------------


def next_pass_delay(rollout: CheckoutRollout, now: datetime, *, failed: bool) -> float:
    """Seconds from ``now`` until the rollout wants its next pass: the soonest of a retry after a
    failed action or unconfirmed weights, a page's escalation, the next evaluation and the end of
    a pause; an idle resync when nothing is due (terminal phases)."""
    status, spec = rollout.status, rollout.spec
    delays = [RETRY_SOON] if failed else []
    if status.router_target != status.weights:
        delays.append(RETRY_SOON)
    elif waits_on_router(spec, status):
        delays.append(MIN_DELAY)  # the router confirmed the step's weights: the step completes now
    page = status.page
    escalate_after = spec.owner.escalate_after_seconds
    if page is not None and page.resolved_at is None and page.escalated_at is None and escalate_after:
        due = page.triggered_at + timedelta(seconds=escalate_after)
        delays.append((due - now).total_seconds())
    revisions = status.revisions
    if spec.workload_ref is not None:
        waiting = (
            revisions is None
            or revisions.stable is None
            or revisions.promoting
            or (revisions.canary is not None and revisions.canary_ready_at is None)
        )
        if waiting and status.phase in ("Progressing", "Aborted", "Promoted"):
            delays.append(RETRY_SOON)  # a Deployment rolling: its progress is polled, not watched
        else:
            # A new revision is noticed within one interval, also between rollouts (Flagger polls
            # its targets likewise); the Deployments are read, not watched, so no watch on them all.
            delays.append(spec.interval_seconds())
    if status.freeze is not None:
        delays.append((status.freeze.until - now).total_seconds())  # the window's end lets it go on
    if status.phase not in TERMINAL_PHASES:
        delays.append(until_next_evaluation(spec, status, now))
        pause = pause_left(spec, status, now)
        if pause is not None:
            delays.append(pause)
    return max(MIN_DELAY, min(delays, default=IDLE_RESYNC))


def waits_on_router(spec: CheckoutRolloutSpec, status: CheckoutRolloutStatus) -> bool:
    """Whether the rollout stands at a setWeight step or at the promotion after the last step:
    both complete once the router has confirmed their weights, and on nothing else."""
    index = status.current_step
    if status.freeze is not None and (index >= len(spec.steps) or spec.steps[index].set_weight is not None):
        return False  # a freeze holds the step: nothing completes it until the window ends
    return status.phase == "Progressing" and (index >= len(spec.steps) or spec.steps[index].set_weight is not None)


def until_next_evaluation(spec: CheckoutRolloutSpec, status: CheckoutRolloutStatus, now: datetime) -> float:
    interval = spec.interval_seconds()
    last = status.last_evaluated_at or status.step_started_at
    if last is None:
        return interval
    return interval - (now - last).total_seconds()


def pause_left(spec: CheckoutRolloutSpec, status: CheckoutRolloutStatus, now: datetime) -> float | None:
    if status.current_step >= len(spec.steps) or status.step_started_at is None:
        return None
    step = spec.steps[status.current_step]
    if step.pause is None:
        return None
    end = status.step_started_at + timedelta(seconds=step.pause.duration_seconds)
    return (end - now).total_seconds()


# --- the dry run's plan -------------------------------------------------------------------------


@dataclass(frozen=True)
class GateContext:
    """One gate of a dry run: the window to query it over, the canary share its counts are
    normalised by, and the gate step (0-based) it is judged for (None when no gate step applies)."""

    gate: Gate
    window_seconds: float
    canary_share: float
    step: int | None
    since: datetime | None = None


def _weight_at(spec: CheckoutRolloutSpec, index: int) -> int:
    weights = [s.set_weight for s in spec.steps[: index + 1] if s.set_weight is not None]
    return weights[-1] if weights else 0


def _last_gate_step(spec: CheckoutRolloutSpec, index: int) -> int | None:
    return next((i for i in range(min(index, len(spec.steps) - 1), -1, -1) if spec.steps[i].gate is not None), None)


def _first_gate_step(spec: CheckoutRolloutSpec, name: str) -> int | None:
    return next((i for i, s in enumerate(spec.steps) if s.gate is not None and name in s.gate.pass_), None)


def _step_window(spec: CheckoutRolloutSpec, index: int | None) -> float:
    step = None if index is None else spec.steps[index].gate
    return spec.interval_seconds() if step is None else step.window_seconds


def plan(spec: CheckoutRolloutSpec, *, step: int | None, elapsed_seconds: float | None) -> list[GateContext]:
    """Which gates to judge, each with its query window, canary share and the gate step they came from."""
    interval = spec.interval_seconds()
    first_weight = next((s.set_weight for s in spec.steps if s.set_weight), 0)
    contexts: list[GateContext] = []
    if step is not None:
        gate_step = _last_gate_step(spec, step)
        elapsed = elapsed_seconds if elapsed_seconds is not None else _step_window(spec, gate_step)
        share = _weight_at(spec, step) / 100.0
        for name in watched_gate_names(spec, step):
            gate = spec.gate(name)
            window = query_window_seconds(gate, interval_seconds=interval, step_elapsed_seconds=elapsed)
            contexts.append(GateContext(gate, window, share, gate_step))
        return contexts
    for gate in spec.gates:
        gate_step = _first_gate_step(spec, gate.name)
        elapsed = elapsed_seconds if elapsed_seconds is not None else _step_window(spec, gate_step)
        weight = _weight_at(spec, gate_step) if gate_step is not None else first_weight
        window = query_window_seconds(gate, interval_seconds=interval, step_elapsed_seconds=elapsed)
        contexts.append(GateContext(gate, window, weight / 100.0, gate_step))
    return contexts
