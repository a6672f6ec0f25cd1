r"""Whole rollouts on the production count path: false halts per rollout, small segments, speed.

What runs is what the operator runs, from the raw samples up:

1. **Traffic and counters.** A checkout service at ``rate`` checkouts/s, 2 stable and 2 canary
   pods, each pod's counters per segment (``good``/``total`` of a ratio, ``count``/``exposure`` of
   a count) scraped every ``scrape`` seconds at its own phase, as Prometheus scrapes targets.
   Canary pods are born at the rollout's start (their series appear at their first event, as a
   client library's labelled children do); stable pods have history.  In the ``restart`` cells a
   canary pod crashes once (its counters start again from 0, and the events since its last scrape
   are lost, as in production).  The canary's weight follows the rollout's steps.
2. **Prometheus' answers.** The operator reads a bare range selector ``metric{...}[R]`` at the end
   of each chunk (``metrics/prometheus.py`` :func:`exact_chunks`, :func:`chunk_reach`); a range
   selector returns every raw sample in ``(T - R, T]``, which is what is handed over here.  The
   integration test ``test_exact_counts_come_interval_by_interval_since_the_evidence_began``
   checks the adapter's counts against a real Prometheus fed the same kind of samples.
3. **The adapter's counting** (:func:`exact_counts`, :func:`exact_samples`: the reset rule, the
   interval grid of :func:`interval_bounds`) and **the core's fold** (gates/evidence.py, the same
   ``gate_evidence_path`` every evaluation runs) and **budget** (the average over the declared
   gates, halting at ``1/alpha``).  Evaluating at the end of every analysis interval
   (``interval == scrape``: every scrape) is one fold: the path's value after interval ``i`` is
   the evaluation at its end.

Scenario (the issue's): 60 minutes at 40 checkouts/s, canary at 5% -> 25% -> 50% (20 minutes
each), three budgeted gates (``auth-approval`` over 9 provider x method segments,
``refund-success`` over 4 provider x kind segments at 0.05 refunds per checkout,
``duplicate-charges`` counted per checkout, 0.05% on both arms), one alpha = 1% for the rollout.
Base rates differ per segment (2-10% declines).  Regressions: a 3pp approval drop in
``stripe/applepay`` (4% of checkouts); a 5pp refund-success drop in ``stripe/partial`` (0.75% of
checkouts); a 2pp drop everywhere; duplicate charges 3x.  A/A cells put the canary exactly at
the tolerance's boundary (``maxDrop: 0pp``: the canary is stable), where false halts are the
most likely.

Flagger-style comparison: Flagger's request-success-rate check on the canary's pooled approval
rate over the last minute, every minute, halting at the 5th failed check; its floor is set from
the A/A runs of the same cell so that its own false halts are 1% (matched), and its blast radius
(failed canary authorizations above stable's rate, until the halt or the end) is reported beside
ours.

Run: ``.venv/bin/python -m bench.rollouts`` (writes the "Whole rollouts" section of
bench/RESULTS.md), ``--runs N --aa-runs N`` to size it, ``--no-write`` to print only.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import platform
import random
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.detection import poisson_sampler
from bench.sprt import expected_time
from checkout_gates.api.spec import Gate
from checkout_gates.gates.budget import budgeted
from checkout_gates.gates.evaluate import carried_gate_evidence, carried_gate_evidence_path
from checkout_gates.gates.observations import ArmSteps, Sample, Segment, SignalReading, segment_name
from checkout_gates.metrics.prometheus import (
    Series,
    chunk_reach,
    exact_chunks,
    exact_counts,
    exact_samples,
    interval_bounds,
)

RESULTS = Path(__file__).with_name("RESULTS.md")
START_MARKER = "<!-- rollouts:start -->"
END_MARKER = "<!-- rollouts:end -->"
BASE = 1_800_000_000.0  # the rollout's start on the clock (a whole number of minutes)
ALPHA = 0.01
PODS = 2  # per arm


@dataclass(frozen=True)
class SegmentTraffic:
    labels: Segment
    share: float  # of the gate's events
    bad: float  # stable's bad rate


AUTH = (
    SegmentTraffic((("method", "card"), ("provider", "adyen")), 0.30, 0.06),
    SegmentTraffic((("method", "card"), ("provider", "stripe")), 0.22, 0.07),
    SegmentTraffic((("method", "applepay"), ("provider", "adyen")), 0.12, 0.03),
    SegmentTraffic((("method", "wallet"), ("provider", "paypal")), 0.10, 0.04),
    SegmentTraffic((("method", "paylater"), ("provider", "klarna")), 0.07, 0.10),
    SegmentTraffic((("method", "sepa"), ("provider", "stripe")), 0.06, 0.05),
    SegmentTraffic((("method", "ideal"), ("provider", "adyen")), 0.05, 0.02),
    SegmentTraffic((("method", "applepay"), ("provider", "stripe")), 0.04, 0.04),
    SegmentTraffic((("method", "card"), ("provider", "braintree")), 0.04, 0.09),
)
REFUNDS = (
    SegmentTraffic((("kind", "full"), ("provider", "adyen")), 0.35, 0.02),
    SegmentTraffic((("kind", "partial"), ("provider", "adyen")), 0.25, 0.03),
    SegmentTraffic((("kind", "full"), ("provider", "stripe")), 0.25, 0.02),
    SegmentTraffic((("kind", "partial"), ("provider", "stripe")), 0.15, 0.04),
)
DUPLICATES = (SegmentTraffic((), 1.0, 0.0005),)
SMALL_AUTH = AUTH[7].labels  # stripe/applepay: 4% of checkouts
SMALL_REFUND = REFUNDS[3].labels  # stripe/partial: 0.75% of checkouts


@dataclass(frozen=True)
class GateTraffic:
    gate: Gate
    per_checkout: float
    segments: tuple[SegmentTraffic, ...]


def _ratio_gate(name: str, labels: list[str], tolerance: str) -> Gate:
    selector = f'{name.replace("-", "_")}_total{{variant="{{{{variant}}}}"%s}}'
    return Gate.model_validate(
        {
            "name": name,
            "ratio": {"good": selector % ', outcome="ok"', "total": selector % ""},
            "segmentBy": labels,
            "compare": {"maxDrop": tolerance},
            "method": "sequential",
            "counts": "exact",
        }
    )


def _count_gate() -> Gate:
    return Gate.model_validate(
        {
            "name": "duplicate-charges",
            "count": 'duplicate_charges_total{variant="{{variant}}"}',
            "exposure": 'checkouts_total{variant="{{variant}}"}',
            "compare": {"maxRise": "0%"},
            "method": "sequential",
            "counts": "exact",
        }
    )


def rollout_gates(tolerance: str) -> tuple[GateTraffic, ...]:
    return (
        GateTraffic(_ratio_gate("auth-approval", ["provider", "method"], tolerance), 1.0, AUTH),
        GateTraffic(_ratio_gate("refund-success", ["provider", "kind"], tolerance), 0.05, REFUNDS),
        GateTraffic(_count_gate(), 1.0, DUPLICATES),
    )


@dataclass(frozen=True)
class Cell:
    name: str
    gates: tuple[GateTraffic, ...]
    # (gate, segment or None for all) -> absolute rise of the canary's bad rate
    regression: tuple[tuple[str, Segment | None, float], ...] = ()
    rate: float = 40.0
    steps: tuple[tuple[int, float], ...] = ((5, 1200.0), (25, 1200.0), (50, 1200.0))
    scrape: float = 30.0
    restart: bool = False
    relative: bool = False  # regression is a multiplier of the bad rate, not an absolute rise
    target: tuple[str, Segment | None] | None = None  # where the blame should land
    # Both arms' base bad rates times this factor until the given second (a drifting baseline).
    drift: tuple[tuple[float, float], ...] = ()

    @property
    def duration(self) -> float:
        return sum(seconds for _, seconds in self.steps)

    def weight(self, t: float) -> float:
        elapsed = 0.0
        for weight, seconds in self.steps:
            elapsed += seconds
            if t < elapsed:
                return weight / 100.0
        return self.steps[-1][0] / 100.0

    def base(self, segment: SegmentTraffic, t: float) -> float:
        for until, factor in self.drift:
            if t < until:
                return min(segment.bad * factor, 1.0)
        return segment.bad

    def canary_bad(self, gate: str, segment: SegmentTraffic, t: float = 0.0) -> float:
        q = self.base(segment, t)
        for name, where, rise in self.regression:
            if name == gate and where in (None, segment.labels):
                q = q * rise if self.relative else q + rise
        return min(q, 1.0)


# --- one run ---------------------------------------------------------------------------------


@dataclass
class _Counter:
    """One series: its value and its raw samples (time, value), from its first sighting."""

    value: float = 0.0
    samples: list[tuple[float, float]] = field(default_factory=list)
    alive: bool = False


def _canary_fraction(cell: Cell, start: float, end: float) -> float:
    """The mean canary weight over (start, end]: the router's split integrated over the interval."""
    if end <= start:
        return cell.weight(start)
    points = [start]
    elapsed = 0.0
    for _, seconds in cell.steps:
        elapsed += seconds
        if start < elapsed < end:
            points.append(elapsed)
    points.append(end)
    return sum(cell.weight(a) * (b - a) for a, b in itertools.pairwise(points)) / (end - start)


def simulate(cell: Cell, seed: int) -> dict[str, dict[str, dict[str, list[Series]]]]:
    """Every series each gate's queries select, per arm and role, as Prometheus holds them."""
    rng = random.Random(seed)
    duration, scrape = cell.duration, cell.scrape
    restart_at = rng.uniform(0.2 * duration, 0.8 * duration) if cell.restart else None
    answer: dict[str, dict[str, dict[str, list[Series]]]] = {}
    for traffic in cell.gates:
        gate = traffic.gate
        two_counters = gate.ratio is not None or gate.tail is not None  # a tail: good = at most its bound
        roles = ("good", "total") if two_counters else ("count", "exposure")
        per_arm: dict[str, dict[str, list[Series]]] = {
            "canary": {r: [] for r in roles},
            "stable": {r: [] for r in roles},
        }
        for arm in ("stable", "canary"):
            for pod in range(PODS):
                phase = rng.uniform(0.0, scrape)
                history = arm == "stable"
                counters = {(seg.labels, role): _Counter() for seg in traffic.segments for role in roles}
                if history:  # a stable pod has run for a while: its series exist with large values
                    for _key, counter in counters.items():
                        counter.value = float(rng.randint(10_000, 1_000_000))
                        counter.alive = True
                        counter.samples.append((BASE + phase - scrape, counter.value))
                previous = 0.0 if not history else phase - scrape
                t = phase
                while t <= duration:
                    start = max(previous, 0.0)
                    share = _canary_fraction(cell, start, t) if t > start else 0.0
                    fraction = share if arm == "canary" else 1.0 - share
                    crashed = arm == "canary" and pod == 0 and restart_at is not None and previous < restart_at <= t
                    for seg in traffic.segments:
                        mean = cell.rate * traffic.per_checkout * seg.share * fraction * (t - start) / PODS
                        middle = (start + t) / 2.0
                        q = cell.canary_bad(gate.name, seg, middle) if arm == "canary" else cell.base(seg, middle)
                        bad = poisson_sampler(rng, mean * q)()
                        good = poisson_sampler(rng, mean * (1.0 - q))()
                        if two_counters:
                            increments = {"good": good, "total": good + bad}
                        else:
                            increments = {"count": bad, "exposure": good + bad}
                        for role, increment in increments.items():
                            counter = counters[seg.labels, role]
                            if crashed:
                                # The process died at restart_at: what it counted since its last
                                # scrape is lost; after the restart it counts from 0 again.
                                after = (t - restart_at) / (t - start) if t > start else 0.0
                                counter.value = float(round(increment * after))
                            else:
                                counter.value += increment
                            if counter.value > 0 or counter.alive:
                                counter.alive = True
                                counter.samples.append((BASE + t, counter.value))
                    previous = t
                    t += scrape
                for (labels, role), counter in counters.items():
                    if counter.samples:
                        series_labels = {"pod": f"{arm}-{pod}", **dict(labels)}
                        per_arm[arm][role].append(
                            Series(labels=series_labels, value=0.0, samples=tuple(counter.samples))
                        )
        answer[gate.name] = per_arm
    return answer


def _answer(series: Sequence[Series], chunk: tuple[float, ...]) -> list[Series]:
    """What ``selector[chunk_reach(chunk)s]`` at the chunk's end returns: samples in (T - R, T]."""
    end = chunk[-1]
    reach = chunk_reach((chunk[0], chunk[-1]))
    kept = []
    for one in series:
        samples = tuple((t, v) for t, v in one.samples if end - reach < t <= end)
        if samples:
            kept.append(Series(labels=one.labels, value=0.0, samples=samples))
    return kept


def readings(cell: Cell, seed: int) -> tuple[dict[str, SignalReading], tuple[float, ...]]:
    """Each gate's reading over the whole rollout, as the operator's exact path builds it."""
    series = simulate(cell, seed)
    bounds = interval_bounds(BASE, BASE + cell.duration, cell.scrape)
    chunks = exact_chunks(bounds)
    found: dict[str, SignalReading] = {}
    for traffic in cell.gates:
        gate = traffic.gate
        sides = {}
        for arm, by_role in series[gate.name].items():
            values = {
                role: exact_counts([(chunk, _answer(one, chunk)) for chunk in chunks], gate.segment_by)
                for role, one in by_role.items()
            }
            sides[arm] = exact_samples(gate, values, len(bounds) - 1)  # type: ignore[arg-type]
        found[gate.name] = SignalReading(gate=gate.name, canary=sides["canary"], stable=sides["stable"])
    return found, bounds


@dataclass(frozen=True)
class RunResult:
    halted_at: float | None  # seconds after the start
    blamed: tuple[str, str] | None  # (gate, segment)
    canary_failed_extra: float  # failed canary authorizations above stable's rate, until the halt
    flagger_checks: tuple[float, ...]  # canary pooled approval over each minute (nan: no traffic)
    flagger_extra: tuple[float, ...]  # cumulative extra failures at each minute's end


def _log_mean_exp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values)) - math.log(len(values))


def run(cell: Cell, seed: int) -> RunResult:
    found, bounds = readings(cell, seed)
    paths: dict[str, tuple[float, ...]] = {}
    declared = [t.gate for t in cell.gates]
    for gate in declared:
        folded = carried_gate_evidence_path(gate, found[gate.name])
        assert folded is not None and budgeted(gate)
        paths[gate.name] = folded[1]
    bar = -math.log(ALPHA)
    halted: int | None = None
    for index in range(len(bounds) - 1):
        # The rollout's e-value: the mean over the declared gates (gates/evidence.py rollout_evidence).
        log_e = _log_mean_exp([paths[g.name][index] for g in declared])
        if log_e >= bar:
            halted = index
            break
    blamed = None
    halted_at = None
    if halted is not None:
        halted_at = bounds[halted + 1] - BASE
        best = max(declared, key=lambda g: paths[g.name][halted])
        reading = found[best.name]
        cut = {
            side: {s: _prefix(sample, halted + 1) for s, sample in getattr(reading, side).items()}
            for side in ("canary", "stable")
        }
        evidence = carried_gate_evidence(best, SignalReading(best.name, canary=cut["canary"], stable=cut["stable"]))
        assert evidence is not None
        segment, _ = evidence.blamed()
        blamed = (best.name, segment_name(segment) if segment is not None else "all")
    auth = found["auth-approval"] if "auth-approval" in found else next(iter(found.values()))
    return RunResult(halted_at, blamed, _extra(auth, halted), *_flagger(auth, bounds))


def _prefix(sample: Sample, intervals: int) -> Sample:
    """The sample as the evaluation after ``intervals`` intervals saw it."""
    steps = sample.steps
    assert steps is not None
    bad, exposure = steps.bad[:intervals], steps.exposure[:intervals]
    total = sum(exposure)
    return Sample(value=None, samples=total, good=total - sum(bad), total=total, steps=ArmSteps(bad, exposure))


def _extra(reading: SignalReading, halted: int | None) -> float:
    """Canary bad events above stable's rate, over the intervals before the halt (or all)."""
    extra = 0.0
    for segment, sample in reading.canary.items():
        stable = reading.stable.get(segment)
        if sample.steps is None or stable is None or stable.steps is None:
            continue
        end = len(sample.steps.bad) if halted is None else halted + 1
        bad, exposure = sum(sample.steps.bad[:end]), sum(sample.steps.exposure[:end])
        stable_rate = stable.steps.total_bad / stable.steps.total_exposure if stable.steps.total_exposure else 0.0
        extra += bad - stable_rate * exposure
    return extra


def _flagger(reading: SignalReading, bounds: tuple[float, ...]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Flagger's check each minute: the canary's pooled success over the last minute."""
    per_minute = max(1, round(60.0 / (bounds[1] - bounds[0]))) if len(bounds) > 1 else 1
    intervals = len(bounds) - 1
    checks, extras = [], []
    for end in range(per_minute, intervals + 1, per_minute):
        bad = total = 0.0
        for sample in reading.canary.values():
            assert sample.steps is not None
            bad += sum(sample.steps.bad[end - per_minute : end])
            total += sum(sample.steps.exposure[end - per_minute : end])
        checks.append(1.0 - bad / total if total else math.nan)
        extras.append(_extra(reading, end - 1))
    return tuple(checks), tuple(extras)


# --- cells and statistics ----------------------------------------------------------------------


def _runs(cell: Cell, runs: int, seed: int, workers: int) -> list[RunResult]:
    seeds = [seed * 1_000_003 + i for i in range(runs)]
    if workers <= 1:
        return [run(cell, s) for s in seeds]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run, [cell] * runs, seeds, chunksize=max(1, runs // (workers * 8))))


def _fifth_lowest(checks: Sequence[float]) -> float:
    values = sorted(-1.0 if math.isnan(c) else c for c in checks)
    return values[4] if len(values) >= 5 else -1.0


def matched_floor(aa: Sequence[RunResult], rate: float = 0.01) -> float:
    """Flagger's floor so that at most ``rate`` of A/A runs see 5 failed checks: a run fails its
    5th check when its 5th-lowest minute is below the floor."""
    lows = sorted(_fifth_lowest(r.flagger_checks) for r in aa)
    index = math.floor(rate * len(lows))
    return lows[index] if lows else 0.0


def flagger_halt(result: RunResult, floor: float) -> tuple[float | None, float]:
    failed = 0
    for minute, check in enumerate(result.flagger_checks):
        if math.isnan(check) or check < floor:
            failed += 1
            if failed >= 5:
                return 60.0 * (minute + 2), result.flagger_extra[min(minute + 1, len(result.flagger_extra) - 1)]
    return None, result.flagger_extra[-1] if result.flagger_extra else 0.0


def _rate_text(hits: int, runs: int) -> str:
    return f"{hits}/{runs} = {hits / runs:.2%}" if runs else "-"


@dataclass(frozen=True)
class Row:
    cell: Cell
    runs: int
    halted: int
    named: int
    mean_time: float | None
    ours_extra: float
    flagger_halted: int
    flagger_extra: float
    floor: float


def evaluate_cell(cell: Cell, aa: Sequence[RunResult], runs: int, seed: int, workers: int) -> Row:
    results = _runs(cell, runs, seed, workers)
    halted = [r for r in results if r.halted_at is not None]
    target = None
    if cell.target is not None:
        gate, where = cell.target
        target = (gate, segment_name(where) if where is not None else None)
    named = sum(
        1
        for r in halted
        if target is not None
        and r.blamed is not None
        and r.blamed[0] == target[0]
        and (target[1] is None or r.blamed[1] == target[1])
    )
    floor = matched_floor(aa)
    flagger = [flagger_halt(r, floor) for r in results]
    times = [r.halted_at for r in halted if r.halted_at is not None]
    return Row(
        cell=cell,
        runs=runs,
        halted=len(halted),
        named=named,
        mean_time=sum(times) / len(times) if times else None,
        ours_extra=sum(r.canary_failed_extra for r in results) / runs,
        flagger_halted=sum(1 for t, _ in flagger if t is not None),
        flagger_extra=sum(e for _, e in flagger) / runs,
        floor=floor,
    )


def cells(scrape: float) -> tuple[list[Cell], list[Cell]]:
    """(A/A cells, regression cells) of the issue's scenario at one scrape interval."""
    exact = rollout_gates("0pp")
    tolerant = rollout_gates("0.5pp")
    at_margin = (("auth-approval", None, 0.005), ("refund-success", None, 0.005))
    aa = [
        Cell(f"A/A, 3 gates x 9/4/1 segments, maxDrop 0pp, scrape {scrape:g}s", exact, scrape=scrape),
        Cell(f"A/A, canary pod restarts, scrape {scrape:g}s", exact, scrape=scrape, restart=True),
        Cell(
            "canary at the margin (+0.5pp, maxDrop 0.5pp), stable's rates 3x for the first 20 minutes",
            tolerant,
            at_margin,
            scrape=scrape,
            drift=((1200.0, 3.0),),
        ),
        Cell(
            "A/A, stable's and canary's rates 3x for the first 20 minutes, maxDrop 0pp",
            exact,
            scrape=scrape,
            drift=((1200.0, 3.0),),
        ),
    ]
    regressions = [
        Cell(
            "auth -3pp in stripe/applepay (4% of checkouts)",
            exact,
            (("auth-approval", SMALL_AUTH, 0.03),),
            scrape=scrape,
            target=("auth-approval", SMALL_AUTH),
        ),
        Cell(
            "same, maxDrop 0.5pp",
            tolerant,
            (("auth-approval", SMALL_AUTH, 0.03),),
            scrape=scrape,
            target=("auth-approval", SMALL_AUTH),
        ),
        Cell(
            "same, canary pod restarts",
            exact,
            (("auth-approval", SMALL_AUTH, 0.03),),
            scrape=scrape,
            restart=True,
            target=("auth-approval", SMALL_AUTH),
        ),
        Cell(
            "refunds -5pp in stripe/partial (0.75% of checkouts)",
            exact,
            (("refund-success", SMALL_REFUND, 0.05),),
            scrape=scrape,
            target=("refund-success", SMALL_REFUND),
        ),
        Cell(
            "auth -1pp in every segment",
            exact,
            (("auth-approval", None, 0.01),),
            scrape=scrape,
            target=("auth-approval", None),
        ),
        Cell(
            "duplicate charges 3x (0.05% -> 0.15%)",
            exact,
            (("duplicate-charges", None, 3.0),),
            scrape=scrape,
            relative=True,
            target=("duplicate-charges", None),
        ),
    ]
    return aa, regressions


def single_cells(scrape: float) -> list[tuple[Cell, float]]:
    """One gate, one segment, one step (today's shape): (cell, Wald's E[T] in seconds)."""
    made: list[tuple[Cell, float]] = []
    gate = _ratio_gate("auth-approval", [], "0pp")
    for delta in (0.01, 0.02):
        for weight, rate in ((5, 50.0), (25, 50.0), (25, 10.0), (10, 100.0)):
            traffic = (GateTraffic(gate, 1.0, (SegmentTraffic((), 1.0, 0.03),)),)
            cell = Cell(
                f"one segment, +{delta * 100:g}pp at {weight}%, {rate:g} req/s",
                traffic,
                (("auth-approval", None, delta),),
                rate=rate,
                steps=((weight, 1800.0),),
                scrape=scrape,
                target=("auth-approval", None),
            )
            wald = expected_time(
                request_rate=rate,
                canary_share=weight / 100.0,
                stable_bad_rate=0.03,
                canary_bad_rate=0.03 + delta,
                alpha=ALPHA,
                beta=0.05,
            )
            made.append((cell, wald.expected_seconds_h1))
    return made


def single_aa(scrape: float, cell: Cell) -> Cell:
    return Cell(f"{cell.name} (A/A)", cell.gates, (), rate=cell.rate, steps=cell.steps, scrape=scrape)


# --- the report --------------------------------------------------------------------------------


def report(args: argparse.Namespace) -> str:
    workers = args.workers
    lines: list[str] = []
    started = time.perf_counter()
    for scrape in args.scrape:
        aa_cells, regression_cells = cells(scrape)
        aa_results: list[RunResult] = []
        lines.append(f"#### Scrape and analysis interval {scrape:g} s\n")
        lines.append("| cell | runs | halted (false halts in A/A) | right segment named | mean time to halt |")
        lines.append("|---|---:|---:|---:|---:|")
        for i, cell in enumerate(aa_cells):
            results = _runs(cell, args.aa_runs, args.seed + i, workers)
            aa_results += results if i == 0 else []  # Flagger's floor: matched on the plain A/A cell
            halts = sum(1 for r in results if r.halted_at is not None)
            lines.append(f"| {cell.name} | {args.aa_runs} | {_rate_text(halts, args.aa_runs)} | - | - |")
            print(lines[-1], flush=True)
        rows = []
        for i, cell in enumerate(regression_cells):
            row = evaluate_cell(cell, aa_results, args.runs, args.seed + 100 + i, workers)
            rows.append(row)
            mean = f"{row.mean_time:.0f} s" if row.mean_time is not None else "-"
            lines.append(
                f"| {cell.name} | {row.runs} | {_rate_text(row.halted, row.runs)} | "
                f"{_rate_text(row.named, row.runs)} | {mean} |"
            )
            print(lines[-1], flush=True)
        lines.append("")
        lines.append(
            "Blast radius: failed canary authorizations above stable's rate until the halt (or the hour's "
            "end), mean per run; Flagger-style floor matched to 1% A/A false halts on the same A/A runs:\n"
        )
        lines.append(
            "| cell | ours halted | ours extra failures | flagger-style floor | flagger halted | flagger extra failures |"
        )
        lines.append("|---|---:|---:|---:|---:|---:|")
        for row in rows:
            lines.append(
                f"| {row.cell.name} | {_rate_text(row.halted, row.runs)} | {row.ours_extra:.1f} | {row.floor:.4f} | "
                f"{_rate_text(row.flagger_halted, row.runs)} | {row.flagger_extra:.1f} |"
            )
        lines.append("")
        if args.single:
            lines.append(
                "One gate, one segment, one step at the scrape interval (rho = mean time to halt ÷ Wald E[T]):\n"
            )
            lines.append(
                "| cell | Wald E[T] | Wald at this cadence (≈ E[T] + interval/2) | ours mean T | rho | rho at cadence | power | A/A |"
            )
            lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
            for j, (cell, wald) in enumerate(single_cells(scrape)):
                results = _runs(cell, args.runs, args.seed + 500 + j, workers)
                aa = _runs(single_aa(scrape, cell), args.single_aa_runs, args.seed + 700 + j, workers)
                times = [r.halted_at if r.halted_at is not None else cell.duration for r in results]
                mean = sum(times) / len(times)
                halted = sum(1 for r in results if r.halted_at is not None)
                false = sum(1 for r in aa if r.halted_at is not None)
                cadence = wald + scrape / 2
                prefix = "≥" if halted < len(results) else ""
                lines.append(
                    f"| {cell.name} | {wald:.0f} s | {cadence:.0f} s | {prefix}{mean:.0f} s | {prefix}{mean / wald:.2f} | "
                    f"{prefix}{mean / cadence:.2f} | {_rate_text(halted, len(results))} | {_rate_text(false, len(aa))} |"
                )
                print(lines[-1], flush=True)
            lines.append("")
    elapsed = time.perf_counter() - started
    command = " ".join(["python -m bench.rollouts", *sys.argv[1:]])
    head = (
        f"Command: `.venv/bin/{command}` ({elapsed:.0f} s on {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {datetime.now(UTC):%Y-%m-%d}). alpha = {ALPHA:g} for the whole rollout.\n"
    )
    return head + "\n" + "\n".join(lines)


def write_section(
    path: Path,
    text: str,
    start: str = START_MARKER,
    end: str = END_MARKER,
    title: str = "Whole rollouts on the production count path (bench/rollouts.py)",
) -> None:
    section = f"{start}\n{text}\n{end}"
    old = path.read_text() if path.exists() else ""
    if start in old and end in old:
        before, rest = old.split(start, 1)
        _, after = rest.split(end, 1)
        path.write_text(before + section + after)
    else:
        path.write_text(old.rstrip("\n") + f"\n\n## {title}\n\n" + section + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--aa-runs", type=int, default=2000)
    parser.add_argument("--single-aa-runs", type=int, default=1000)
    parser.add_argument("--scrape", type=float, nargs="+", default=[30.0])
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-single", dest="single", action="store_false")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    text = report(args)
    print(text)
    if not args.no_write:
        write_section(RESULTS, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
