"""What the metrics adapters hand to the pure core: one reading per gate and evaluation."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

# A segment is one label set of a vector result, as sorted (label, value) pairs; () for a scalar.
Segment = tuple[tuple[str, str], ...]
SCALAR: Segment = ()


def segment_name(segment: Segment) -> str:
    """``provider=adyen,method=card``, or ``all`` for a scalar result."""
    return ",".join(f"{label}={value}" for label, value in segment) or "all"


def segment_of(labels: Mapping[str, str], segment_by: tuple[str, ...] | list[str]) -> Segment:
    """The segment of a series: its values of the gate's segmentBy labels (all labels when none are named)."""
    names = sorted(segment_by) if segment_by else sorted(labels)
    return tuple((name, labels.get(name, "")) for name in names)


@dataclass(frozen=True)
class ArmSteps:
    """One arm's counts in one segment, interval by interval since the evidence began.

    ``bad[i]`` bad events and ``exposure[i]`` requests served in interval ``i``; both arms of a
    reading share the same intervals.
    """

    bad: tuple[float, ...]
    exposure: tuple[float, ...]

    @property
    def total_bad(self) -> float:
        return math.fsum(self.bad)

    @property
    def total_exposure(self) -> float:
        return math.fsum(self.exposure)


@dataclass(frozen=True)
class Sample:
    """One variant's measurement of one segment.

    ``value`` is the signal (a ratio's good/total, a count, a quantile, a gauge);
    ``samples`` the number of observations behind it (a ratio's total, a count gate's exposure).
    For ratio signals ``good`` and ``total`` are kept too: the sequential test needs the counts.
    ``steps``: with ``counts: exact``, the bad events and exposure interval by interval since the
    rollout's evidence began (``value``, ``good`` and ``total`` are then their sums).
    """

    value: float | None
    samples: float | None = None
    good: float | None = None
    total: float | None = None
    steps: ArmSteps | None = None


@dataclass(frozen=True)
class SignalReading:
    """The results of one gate's queries for both variants at one evaluation.

    ``error`` is set when a query failed (Prometheus unreachable, bad PromQL, timeout): the gate is
    then Inconclusive with that text, whatever the policy for missing data says.
    ``window_seconds`` is the range the queries covered (sequential gates: since the step started).
    ``subject``: what the counts are of, when the gate alone does not say (a tail signal's bound,
    chosen at read time); verdicts begin with it.
    """

    gate: str
    canary: Mapping[Segment, Sample] = field(default_factory=dict)
    stable: Mapping[Segment, Sample] = field(default_factory=dict)
    error: str | None = None
    window_seconds: float = 0.0
    subject: str | None = None
