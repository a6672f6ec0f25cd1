"""Replay: observations over time stepped through the real state machine, as the controller would.

Pure: no I/O and no clock. The caller hands in readings per time (from a recording, or from
instant queries at past times); :class:`Replayer` runs :func:`~checkout_gates.rollout.machine.decide`
at each time and applies the decision back the way the controller does:

* the status the decision returns becomes the rollout's status;
* the router confirms every weight change at once (``status.routerTarget`` and
  ``status.routerWeights`` become the weights set), and reports those weights on the next decision;
* a consumed annotation is removed;
* nobody annotates anything, except that with ``approve_all`` an approval step is approved by
  ``approver`` at the next time after the rollout starts waiting for it.

Readings and query windows. At each time the machine is given readings for exactly the gates the
controller would query then (:func:`~checkout_gates.rollout.plan.reads_needed`). A reading whose
``window_seconds`` is shorter than the window the controller would query (a recording of
per-interval values, ``"window": "30s"``, replayed for a sequential gate that reads everything
since its step started, or for a threshold gate with a longer ``window``) is widened by adding up
the readings recorded within that window, which is what ``increase(...[window])`` over the longer
range returns. Only ratio and count signals add up; a quantile or gauge reading is used as
recorded. A query error counts only at the time it was recorded. A reading with no window, or one
at least as long as the query window (live instant queries), is used as it is.

A ``workloadRef`` is left out: a replay judges the gates and steps over recorded traffic; the
workload's lifecycle (adoption, readiness, the promotion's copy) happens on a cluster, not in a
recording, and is tested there (tests/integration/test_release_testbed.py).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.api.spec import Gate
from checkout_gates.api.status import CheckoutRolloutStatus, GateStatus, Phase, Weights
from checkout_gates.gates.observations import Sample, Segment, SignalReading
from checkout_gates.rollout.actions import ConsumeAnnotation, SetWeights
from checkout_gates.rollout.annotations import annotation_key
from checkout_gates.rollout.machine import Observations, decide
from checkout_gates.rollout.plan import GateRead, reads_needed, waits_on_router

__all__ = [
    "DECIDED_PHASES",
    "Outcome",
    "ReplayResult",
    "Replayer",
    "Transition",
    "WindowSums",
    "fresh_rollout",
    "gates_only",
    "needs_widening",
    "replay",
    "widen",
]

Outcome = Literal["promoted", "halted", "aborted", "in-progress"]
DECIDED_PHASES: frozenset[Phase] = frozenset({"Promoted", "Halted", "Aborted"})
_OUTCOMES: dict[Phase, Outcome] = {"Promoted": "promoted", "Halted": "halted", "Aborted": "aborted"}
_SLACK_SECONDS = 1e-6
_ADDS_UP = ("ratio", "count")


@dataclass(frozen=True)
class Transition:
    """One history entry the machine wrote, with the phase the decision left the rollout in."""

    time: datetime
    step: int
    action: str
    actor: str
    canary_weight: int
    reason: str
    phase: Phase

    @property
    def weights(self) -> Weights:
        return Weights.canary_at(self.canary_weight)


@dataclass(frozen=True)
class ReplayResult:
    rollout: CheckoutRollout
    transitions: tuple[Transition, ...]
    decisions: int
    evaluations: int
    first_time: datetime | None
    last_time: datetime | None

    @property
    def status(self) -> CheckoutRolloutStatus:
        return self.rollout.status

    @property
    def outcome(self) -> Outcome:
        return _OUTCOMES.get(self.status.phase, "in-progress")

    @property
    def decided_at(self) -> datetime | None:
        """When the rollout was promoted, halted or aborted (the last such transition), else None."""
        if self.outcome == "in-progress":
            return None
        for transition in reversed(self.transitions):
            if transition.action in ("Promoted", "Halted", "Aborted"):
                return transition.time
        return None

    @property
    def deciding_gate(self) -> GateStatus | None:
        """The gate that halted the rollout (its worst segment is ``segment``), else None."""
        if self.outcome not in ("halted", "aborted"):
            return None
        gates = self.status.gates
        return next((g for g in gates if g.verdict == "Fail"), None) or next(
            (g for g in gates if g.verdict == "Inconclusive"), None
        )


def gates_only(rollout: CheckoutRollout) -> CheckoutRollout:
    """The rollout without its workloadRef: what a replay of recorded traffic can judge."""
    if rollout.spec.workload_ref is None:
        return rollout
    return rollout.model_copy(update={"spec": rollout.spec.model_copy(update={"workload_ref": None})})


def fresh_rollout(rollout: CheckoutRollout) -> CheckoutRollout:
    """The rollout as just applied: an empty status, generation at least 1, a uid for page keys."""
    metadata = rollout.metadata.model_copy(
        update={
            "generation": max(1, rollout.metadata.generation),
            "uid": rollout.metadata.uid or f"replay-{rollout.metadata.namespace}-{rollout.metadata.name}",
            "annotations": {},
        }
    )
    return rollout.model_copy(update={"metadata": metadata, "status": CheckoutRolloutStatus()})


class Replayer:
    """Steps one rollout through time; call :meth:`reads` then :meth:`advance` for each time, in order.

    ``fresh``: start from an empty status (the default), else from the rollout's own status.
    ``stop_when_decided``: after the first promotion, halt or abort, :meth:`advance` does nothing
    more (:attr:`done`); a backtest or replay reports that first outcome.
    """

    def __init__(
        self,
        rollout: CheckoutRollout,
        *,
        approve_all: bool = False,
        approver: str = "replay",
        fresh: bool = True,
        stop_when_decided: bool = True,
    ) -> None:
        rollout = gates_only(rollout)
        self.rollout = fresh_rollout(rollout) if fresh else rollout
        self.approve_all = approve_all
        self.approver = approver
        self.stop_when_decided = stop_when_decided
        self.transitions: list[Transition] = []
        self.decisions = 0
        self.evaluations = 0
        self.first_time: datetime | None = None
        self.last_time: datetime | None = None
        self._sums = {gate.name: WindowSums(gate) for gate in self.rollout.spec.gates if gate.signal_kind in _ADDS_UP}

    @property
    def status(self) -> CheckoutRolloutStatus:
        return self.rollout.status

    @property
    def done(self) -> bool:
        return self.stop_when_decided and self.status.phase in DECIDED_PHASES

    def reads(self, now: datetime) -> list[GateRead]:
        """The gates the controller would query at ``now``, with their windows (empty: none due)."""
        if self.done:
            return []
        return reads_needed(self.rollout, now)

    def advance(self, now: datetime, readings: Mapping[str, SignalReading]) -> list[Transition]:
        """Decide at ``now`` with ``readings`` (any gates; the due ones are used); the new transitions."""
        if self.done:
            return []
        if self.last_time is not None and now <= self.last_time:
            raise ValueError(f"times must increase: {now.isoformat()} after {self.last_time.isoformat()}")
        self.first_time = self.first_time or now
        self.last_time = now
        for name, sums in self._sums.items():
            if name in readings:
                sums.add(now, readings[name])
        if self.approve_all and self.status.phase == "AwaitingApproval":
            annotations = {**self.rollout.metadata.annotations, annotation_key("approve"): self.approver}
            self._set_annotations(annotations)

        due = {read.gate.name: read for read in reads_needed(self.rollout, now)}
        observed = {
            name: self._sums[name].window(now, read.window_seconds) if needs_widening(read, reading) else reading
            for name, read in due.items()
            if (reading := readings.get(name)) is not None
        }
        before = self.status.epoch
        observations = Observations(observed, self.status.router_weights)
        # The router (simulated) confirms every weight at once; the operator then passes again at
        # once (rollout/plan.py: a step waiting on the router completes on the next pass), so do we,
        # with no readings: those were read for the step before.
        for _ in range(len(self.rollout.spec.steps) + 2):
            decision = decide(self.rollout, observations, now)
            self.decisions += 1
            self.rollout = self.rollout.model_copy(update={"status": decision.status})
            if decision.status.last_evaluated_at == now and observations.readings:
                self.evaluations += 1
            consumed = {action.key for action in decision.actions if isinstance(action, ConsumeAnnotation)}
            if consumed:
                self._set_annotations({k: v for k, v in self.rollout.metadata.annotations.items() if k not in consumed})
            applied = [action.weights for action in decision.actions if isinstance(action, SetWeights)]
            if not applied:
                break
            confirmed = {"router_target": applied[-1], "router_weights": applied[-1]}
            self.rollout = self.rollout.model_copy(update={"status": self.status.model_copy(update=confirmed)})
            if not waits_on_router(self.rollout.spec, self.status):
                break
            observations = Observations({}, self.status.router_weights)

        added = self.status.epoch - before
        entries = self.status.history[-added:] if added > 0 else []
        new = [
            Transition(
                time=entry.time,
                step=entry.step,
                action=entry.action,
                actor=entry.actor,
                canary_weight=entry.canary_weight,
                reason=entry.reason,
                phase=self.status.phase,
            )
            for entry in entries
        ]
        self.transitions.extend(new)
        return new

    def result(self) -> ReplayResult:
        return ReplayResult(
            rollout=self.rollout,
            transitions=tuple(self.transitions),
            decisions=self.decisions,
            evaluations=self.evaluations,
            first_time=self.first_time,
            last_time=self.last_time,
        )

    def _set_annotations(self, annotations: dict[str, str]) -> None:
        metadata = self.rollout.metadata.model_copy(update={"annotations": annotations})
        self.rollout = self.rollout.model_copy(update={"metadata": metadata})


class WindowSums:
    """Running sums of one gate's recorded readings, so that the sum over any window is two lookups.

    Only ratio counts (good, total) and count signals (value, exposure) add up. A reading with a
    query error adds nothing. Feed every recorded reading in time order with :meth:`add`.
    """

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.ratio = gate.signal_kind == "ratio"
        self.times: list[datetime] = []
        # (side, segment) -> per recorded time, the running (a, b, unknown a, unknown b, readings)
        self._sums: dict[tuple[str, Segment], list[tuple[float, float, int, int, int]]] = {}

    def add(self, t: datetime, reading: SignalReading) -> None:
        if self.times and t <= self.times[-1]:
            raise ValueError(f"times must increase: {t.isoformat()} after {self.times[-1].isoformat()}")
        index = len(self.times)
        self.times.append(t)
        for series in self._sums.values():
            series.append(series[-1])
        if reading.error is not None:
            return
        for side, samples in (("canary", reading.canary), ("stable", reading.stable)):
            for segment, sample in samples.items():
                series = self._sums.setdefault((side, segment), [_ZERO] * (index + 1))
                a, b, unknown_a, unknown_b, count = series[index]
                da, db, ua, ub = self._parts(sample)
                series[index] = (a + da, b + db, unknown_a + ua, unknown_b + ub, count + 1)

    def _parts(self, sample: Sample) -> tuple[float, float, int, int]:
        if self.ratio:
            total = sample.total if sample.total is not None else sample.samples
            good = sample.good
            if good is None and sample.value is not None and total is not None:
                good = sample.value * total
            if good is None or total is None:
                return 0.0, 0.0, 0, 0  # no counts to add: the window's other readings still do
            return good, total, 0, 0
        value, exposure = sample.value, sample.samples
        return (value or 0.0, exposure or 0.0, int(value is None), int(exposure is None))

    def window(self, now: datetime, seconds: float) -> SignalReading:
        """The readings recorded in (now - seconds, now] added up.

        ``now`` is usually the last time added (the replay loop); any time works (a recording read
        at one of its times, with later times already added).
        """
        last = bisect_right(self.times, now) - 1
        if last < 0:  # nothing recorded at or before now
            return SignalReading(gate=self.gate.name, window_seconds=seconds)
        first = bisect_right(self.times, now - timedelta(seconds=seconds - _SLACK_SECONDS))
        sides: dict[str, dict[Segment, Sample]] = {"canary": {}, "stable": {}}
        for (side, segment), series in self._sums.items():
            end = series[last]
            start = series[first - 1] if first > 0 else _ZERO
            a, b, unknown_a, unknown_b, count = (x - y for x, y in zip(end, start, strict=True))
            if count <= 0:
                continue  # the segment has no reading in the window
            if self.ratio:
                sides[side][segment] = Sample(value=a / b if b > 0 else None, samples=b, good=a, total=b)
            else:
                sides[side][segment] = Sample(value=None if unknown_a else a, samples=None if unknown_b else b)
        return SignalReading(
            gate=self.gate.name, canary=sides["canary"], stable=sides["stable"], window_seconds=seconds
        )


_ZERO: tuple[float, float, int, int, int] = (0.0, 0.0, 0, 0, 0)


def needs_widening(read: GateRead, reading: SignalReading) -> bool:
    """Whether ``reading`` covers less than the query window and adds up (ratio or count, no error)."""
    return (
        reading.error is None
        and read.gate.signal_kind in ("ratio", "count")
        and 0.0 < reading.window_seconds < read.window_seconds - _SLACK_SECONDS
    )


def widen(
    read: GateRead,
    reading: SignalReading,
    now: datetime,
    recorded: Iterable[tuple[datetime, Mapping[str, SignalReading]]],
) -> SignalReading:
    """``reading`` (the gate's at ``now``) over ``read.window_seconds``, adding up shorter recorded windows.

    ``recorded`` holds (time, readings) pairs in time order, up to and with ``now``.
    """
    if not needs_widening(read, reading):
        return reading
    sums = WindowSums(read.gate)
    for t, readings in recorded:
        if t <= now and read.gate.name in readings:
            sums.add(t, readings[read.gate.name])
    return sums.window(now, read.window_seconds)


def replay(
    rollout: CheckoutRollout,
    observations: Iterable[tuple[datetime, Mapping[str, SignalReading]]],
    *,
    approve_all: bool = False,
    approver: str = "replay",
    stop_when_decided: bool = True,
) -> ReplayResult:
    """Run a fresh rollout through ``observations`` (time order) and return what happened."""
    replayer = Replayer(rollout, approve_all=approve_all, approver=approver, stop_when_decided=stop_when_decided)
    for now, readings in observations:
        if replayer.done:
            break
        replayer.advance(now, readings)
    return replayer.result()
