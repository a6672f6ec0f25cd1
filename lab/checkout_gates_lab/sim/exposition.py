"""The simulator's metrics in Prometheus form: a collector over the engine's totals, its own registry."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from checkout_gates_lab.sim.catalog import (
    CANARY_SHARE,
    COUNTERS,
    FAULT_ACTIVE,
    LATENCY,
    LATENCY_BUCKETS,
    MISMATCH_QUEUE,
    VARIANTS,
)
from checkout_gates_lab.sim.totals import Totals


def _bound(value: float) -> str:
    return repr(float(value))


class SimCollector(Collector):
    """Reads the totals at every scrape; nothing is copied between scrapes."""

    def __init__(self, totals: Callable[[], Totals], faults: Callable[[], dict[str, bool]]) -> None:
        self._totals = totals
        self._faults = faults

    def collect(self) -> Iterator[Metric]:
        totals = self._totals()
        for spec in COUNTERS:
            counter = CounterMetricFamily(spec.name, spec.help, labels=spec.labels)
            for labels, value in sorted(totals.counters[spec.name].items()):
                counter.add_metric(labels, value)
            yield counter

        queue = GaugeMetricFamily(MISMATCH_QUEUE.name, MISMATCH_QUEUE.help, labels=MISMATCH_QUEUE.labels)
        for variant in VARIANTS:
            queue.add_metric((variant,), totals.mismatch_queue[variant])
        yield queue

        histogram = HistogramMetricFamily(LATENCY.name, LATENCY.help, labels=LATENCY.labels)
        for variant in VARIANTS:
            counts = totals.latency[variant]
            bounds = [*map(_bound, LATENCY_BUCKETS), "+Inf"]
            histogram.add_metric(
                (variant,), list(zip(bounds, map(float, counts.cumulative()), strict=True)), counts.sum
            )
        yield histogram

        yield GaugeMetricFamily(CANARY_SHARE.name, CANARY_SHARE.help, value=totals.canary_weight / 100.0)

        active = GaugeMetricFamily(FAULT_ACTIVE.name, FAULT_ACTIVE.help, labels=FAULT_ACTIVE.labels)
        for name, on in self._faults().items():
            active.add_metric((name,), 1.0 if on else 0.0)
        yield active


def build_registry(totals: Callable[[], Totals], faults: Callable[[], dict[str, bool]]) -> CollectorRegistry:
    """A registry of its own (no process or platform collectors) serving the simulator's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SimCollector(totals, faults))
    return registry
