"""Counts: what one tick adds (``Tick``) and the running totals the metrics expose (``Totals``).

Counters are keyed by metric name, then by label values in the metric's label order (variant
first), as listed in ``catalog.py``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from checkout_gates_lab.sim.catalog import COUNTERS, LATENCY_BUCKETS, VARIANTS, MetricSpec, series

Labels = tuple[str, ...]


@dataclass
class LatencyCounts:
    """A histogram's observations per bucket (not cumulative; the last is above the top bound)."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    sum: float = 0.0

    @property
    def count(self) -> int:
        return sum(self.buckets)

    def add(self, other: LatencyCounts) -> None:
        self.buckets = [a + b for a, b in zip(self.buckets, other.buckets, strict=True)]
        self.sum += other.sum

    def cumulative(self) -> list[int]:
        """Observations at or below each bound, the last being +Inf."""
        running, out = 0, []
        for value in self.buckets:
            running += value
            out.append(running)
        return out


@dataclass
class Tick:
    """What one tick of the engine produced."""

    elapsed: float  # seconds since the start, at the end of the tick
    canary_weight: float  # percent
    counters: dict[str, Counter[Labels]] = field(default_factory=dict)
    latency: dict[str, LatencyCounts] = field(default_factory=dict)
    mismatch_queue: dict[str, int] = field(default_factory=dict)  # level per variant after the tick

    def add(self, spec: MetricSpec, labels: Labels, n: int) -> None:
        if n:
            counter = self.counters.get(spec.name)
            if counter is None:
                counter = self.counters[spec.name] = Counter()
            counter[labels] += n


class Totals:
    """Cumulative counts since the start; every series exists from the start, at zero."""

    def __init__(self) -> None:
        self.counters: dict[str, Counter[Labels]] = {
            spec.name: Counter(dict.fromkeys(series(spec), 0)) for spec in COUNTERS
        }
        self.latency = {variant: LatencyCounts() for variant in VARIANTS}
        self.mismatch_queue = dict.fromkeys(VARIANTS, 0)
        self.elapsed = 0.0
        self.canary_weight = 0.0

    def add(self, tick: Tick) -> None:
        for name, increments in tick.counters.items():
            self.counters[name].update(increments)
        for variant, latency in tick.latency.items():
            self.latency[variant].add(latency)
        self.mismatch_queue.update(tick.mismatch_queue)
        self.elapsed = tick.elapsed
        self.canary_weight = tick.canary_weight

    def count(self, spec: MetricSpec, **labels: str) -> int:
        """The sum over the metric's series that match the given labels, e.g. ``variant="canary"``."""
        unknown = set(labels) - set(spec.labels)
        if unknown:
            raise ValueError(f"{spec.name} has no label {', '.join(sorted(unknown))} (labels: {spec.labels})")
        positions = [(spec.labels.index(name), value) for name, value in labels.items()]
        return sum(n for key, n in self.counters[spec.name].items() if all(key[i] == value for i, value in positions))
