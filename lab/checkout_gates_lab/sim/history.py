"""A past of simulated checkout traffic as OpenMetrics text, for backfilling a real Prometheus.

The same engine as the live simulator (``model.py``: the shop of ``catalog.py``, a scenario's
faults), run offline with the canary's weight following a schedule, and its metrics written as a
scrape would have seen them every ``scrape`` seconds: counters, the mismatch-queue gauge and the
latency histogram.  Several runs go into one document, each with its own ``variant`` values
(``<tag>-stable``, ``<tag>-canary``), so that one backfill serves many rollouts whose specs name
those variants.  ``promtool tsdb create-blocks-from openmetrics`` reads it
(:meth:`checkout_gates_lab.testbed.Prometheus.backfill_openmetrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from checkout_gates_lab.sim.catalog import COUNTERS, LATENCY, LATENCY_BUCKETS, MISMATCH_QUEUE, VARIANTS
from checkout_gates_lab.sim.model import Engine
from checkout_gates_lab.sim.scenario import Scenario

Weight = Callable[[float], float]
"""The canary's weight in percent, by seconds since the run's start."""


@dataclass(frozen=True)
class Run:
    """One simulated past: ``tag`` names its variants, ``weight`` is the router's split over time."""

    tag: str
    scenario: Scenario
    weight: Weight
    seconds: float
    rate: float = 40.0
    seed: int = 0


def _labels(names: Sequence[str], values: Sequence[str], tag: str) -> str:
    pairs = []
    for name, value in zip(names, values, strict=True):
        shown = f"{tag}-{value}" if name == "variant" else value
        pairs.append(f'{name}="{shown}"')
    return ",".join(pairs)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def openmetrics(runs: Sequence[Run], *, start: float, scrape: float = 15.0, tick: float = 1.0) -> str:
    """Every run's metrics, scraped every ``scrape`` seconds from ``start`` (a Unix time)."""
    series: dict[str, dict[str, list[str]]] = {}  # family -> series -> sample lines

    def add(family: str, name: str, labels: str, value: float, at: float) -> None:
        series.setdefault(family, {}).setdefault(f"{name}{{{labels}}}", []).append(
            f"{name}{{{labels}}} {_number(value)} {at:.3f}"
        )

    for run in runs:
        engine = Engine(run.scenario, rate=run.rate, seed=run.seed, tick=tick)
        moments = int(run.seconds // scrape) + 1
        for index in range(moments):
            elapsed = index * scrape
            while engine.elapsed < elapsed - 1e-9:
                engine.step(run.weight(engine.elapsed))
            at = start + elapsed
            totals = engine.totals
            for spec in COUNTERS:
                family = spec.name.removesuffix("_total")
                for values, count in sorted(totals.counters[spec.name].items()):
                    add(family, spec.name, _labels(spec.labels, values, run.tag), count, at)
            for variant in VARIANTS:
                labels = _labels(("variant",), (variant,), run.tag)
                add(MISMATCH_QUEUE.name, MISMATCH_QUEUE.name, labels, totals.mismatch_queue[variant], at)
                latency = totals.latency[variant]
                cumulative = latency.cumulative()
                for bound, count in zip([*map(repr, map(float, LATENCY_BUCKETS)), "+Inf"], cumulative, strict=True):
                    add(LATENCY.name, f"{LATENCY.name}_bucket", f'{labels},le="{bound}"', count, at)
                add(LATENCY.name, f"{LATENCY.name}_count", labels, latency.count, at)
                add(LATENCY.name, f"{LATENCY.name}_sum", labels, latency.sum, at)

    kinds = {spec.name.removesuffix("_total"): "counter" for spec in COUNTERS}
    kinds[MISMATCH_QUEUE.name] = "gauge"
    kinds[LATENCY.name] = "histogram"
    lines: list[str] = []
    for family, by_series in series.items():
        lines.append(f"# TYPE {family} {kinds[family]}")
        if kinds[family] == "histogram":
            # A histogram's samples go moment by moment: every bucket, the count and the sum of one time.
            groups: dict[str, list[list[str]]] = {}
            for key, samples in by_series.items():
                labels = key[key.index("{") :]
                base = labels.split(',le="')[0].rstrip("}")
                groups.setdefault(base, []).append(samples)
            for group in groups.values():
                for moment in zip(*group, strict=True):
                    lines += moment
        else:
            for samples in by_series.values():
                lines += samples
    return "\n".join(lines) + "\n# EOF\n"


def stepped_weight(steps: Sequence[tuple[float, float]]) -> Weight:
    """A weight schedule of ``(seconds, percent)`` pieces, the last held for ever."""

    def weight(elapsed: float) -> float:
        passed = 0.0
        for seconds, percent in steps:
            passed += seconds
            if elapsed < passed:
                return percent
        return steps[-1][1] if steps else 0.0

    return weight
