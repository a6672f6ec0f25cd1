r"""Detection benchmark: time to halt, blast radius and false halts, by simulation (no cluster).

The yardstick "Blast radius" of DESIGN.md: how fast, and after how many failed checkouts, a
regressed canary is halted by

1. **ours/sequential**: the real :func:`checkout_gates.gates.evaluate.evaluate_gate` with a
   ``method: sequential`` ratio gate (``compare: {maxDrop: 0pp}``, ``alpha: 0.01``,
   ``minSamples: 400`` as in ``examples/gates/card-payments.yaml``) on the cumulative counts since
   the step started, every analysis interval (30 s).  One Fail halts, as in the operator
   (``rollout/machine.py``: a sequential rejection counts as ``failureLimit`` failures at once).
2. **ours/threshold**: the same ``evaluate_gate`` with ``method: threshold``,
   ``compare: {maxDrop: 1pp}``, ``window: 1m``, ``minSamples: 200`` (the threshold ratio gate of
   the same example), every 30 s; halts on the 2nd Fail of the step (``failureLimit: 2``, failures
   counted over the step as the operator does).
3. **flagger-style**: Flagger's built-in ``request-success-rate`` check, interval 1m,
   ``thresholdRange.min`` on the canary's own success rate over the last minute, ``threshold: 5``.
   Flagger's documented example uses ``min: 99`` for services that succeed 99.9 % of the time;
   this service succeeds 97 % of the time, so the minimum is set the way a team would set it
   here: baseline - 1pp = 96 %.  A window without canary traffic is a failed check (Flagger:
   "no values found", ``runAnalysis`` returns false).  Flagger counts failed checks over the
   analysis and rolls back at the start of the *next* tick once ``failedChecks >= threshold``
   (``pkg/controller/scheduler.go``), i.e. one interval after the 5th failed check.
4. **argo-style**: an Argo Rollouts ``AnalysisTemplate`` with ``interval: 1m``, ``count: 5``,
   ``failureLimit: 1``, ``successCondition: result >= 0.96`` on the canary's 1m success rate.
   The run fails (the rollout aborts) when failed measurements exceed ``failureLimit``, i.e. on
   the 2nd.  Measurements are taken at 1, 2, ..., 5 min (as with ``initialDelay: 1m``, so the
   first window has traffic); after the 5th the analysis has passed and nothing halts the canary
   for the rest of the stage.  A window without canary requests gives NaN, which fails
   ``result >= 0.96``.
5. **wald-sprt**: no simulation: Wald's expected time to a decision
   (:func:`bench.sprt.expected_time`) for the same alpha (0.01) and beta (0.05),
   with the true effect as the alternative (the optimum knows the effect size; ours does not).

Traffic
-------
Success rate 0.97 on stable; the canary's is 0.97 - delta.  Every 15 s (a Prometheus scrape)
each arm serves ``requests ~ Poisson(rate * 15 * share)`` of which
``failures ~ Binomial(requests, q)``.  That pair is drawn as two independent Poisson counts,
``failures ~ Poisson(rate*15*share*q)`` and ``successes ~ Poisson(rate*15*share*(1-q))``: the same
joint law (Poisson thinning), and only a Poisson sampler is needed (the standard library has
none; :func:`poisson_sampler` is numpy's PTRS algorithm, Hormann 1993).  The engines see only
the cumulative counters at scrape times: a window ``[t - W, t]`` is the difference of two
scrape-aligned counter values, which is what PromQL ``increase()`` estimates (its
extrapolation scales good and total alike, so ratios are unaffected; it is left out).
All engines judge the *same* simulated stream in each run (common random numbers), and one
``random.Random(seed)`` drives the whole benchmark.

Metrics per (engine, delta, exposure w, total rate)
---------------------------------------------------
* power: fraction of runs halted within the 30-minute stage; for delta = 0 (A/A) that fraction
  is the false-halt rate.
* time to halt: mean, median and p90 (nearest rank); runs not halted count as 1800 s, so a
  statistic that depends on them is a lower bound and is printed with ``>=`` (or ``>1800``).
* blast radius: canary requests that *failed* before the halt (``failed``), and those above the
  97 % baseline (``extra`` = failed - 0.03 x canary requests served); a run not halted counts
  until the stage ends at 30 min (a lower bound: unhalted, the canary would go on to more
  traffic).  Halts take effect at the evaluation that decides them (no reaction latency, for
  every engine alike).
* starved (ours only): runs with at least 10 Inconclusive evaluations before any halt; the
  operator's default ``inconclusiveLimit: 10`` would hold those rollouts for lack of evidence
  (not counted as a detection here).

Key figures: rho = ours/sequential mean time to halt / Wald SPRT expected time, next to our
measured A/A false-halt rate (alpha = 0.01); and the blast-radius ratio flagger-style /
ours/sequential at delta = 2pp.

Run: ``.venv/bin/python -m bench.detection`` (full grid), ``--quick`` (CI size), ``--cells
"delta=0,2 w=10 rate=50"`` (a subset), ``--no-write`` (print only; use it in CI).  Otherwise a
run replaces the "Detection" section of ``bench/RESULTS.md`` (between its markers) and records its
exact command there.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.sprt import expected_time, wald_boundaries
from checkout_gates.api.spec import Gate
from checkout_gates.gates.evaluate import evaluate_gate
from checkout_gates.gates.observations import SCALAR, Sample, SignalReading
from checkout_gates.gates.sequential import DEFAULT_GRID, DEFAULT_WEIGHTS

__all__ = [
    "ENGINES",
    "Cell",
    "Row",
    "Stream",
    "Tally",
    "grid",
    "main",
    "poisson_sampler",
    "run_benchmark",
    "simulate",
    "summarize",
]

# --- the grid and the setup ---------------------------------------------------------------------

BASE_SUCCESS = 0.97
BASE_BAD = 1.0 - BASE_SUCCESS
DELTAS_PP: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 5.0)
WEIGHTS_PCT: tuple[float, ...] = (1.0, 5.0, 10.0, 25.0)
RATES: tuple[float, ...] = (10.0, 50.0, 500.0)

SCRAPE_S = 15
STAGE_S = 1800
SCRAPES = STAGE_S // SCRAPE_S
ALPHA = 0.01
BETA = 0.05
RHO = "\N{GREEK SMALL LETTER RHO}"
ALPHA_SIGN = "\N{GREEK SMALL LETTER ALPHA}"
TIMES = "\N{MULTIPLICATION SIGN}"

OURS_INTERVAL = 30 // SCRAPE_S  # analysis interval 30s, in scrapes
OURS_FAILURE_LIMIT = 2
OURS_INCONCLUSIVE_LIMIT = 10
THRESHOLD_WINDOW = 60 // SCRAPE_S  # window: 1m
FIXED_INTERVAL = 60 // SCRAPE_S  # Flagger and Argo: interval 1m, window 1m
FIXED_MIN_PERCENT = round((BASE_SUCCESS - 0.01) * 100)  # 96: baseline - 1pp
FLAGGER_THRESHOLD = 5
ARGO_COUNT = 5
ARGO_FAILURE_LIMIT = 1

FULL_RUNS = 400
FULL_AA_RUNS = 2000
QUICK_RUNS = 40
QUICK_AA_RUNS = 200

_GOOD = 'sum(increase(checkout_requests_total{variant="{{variant}}", outcome="success"}[{{window}}]))'
_TOTAL = 'sum(increase(checkout_requests_total{variant="{{variant}}"}[{{window}}]))'

SEQUENTIAL_GATE = Gate.model_validate(
    {
        "name": "checkout-success",
        "ratio": {"good": _GOOD, "total": _TOTAL},
        "compare": {"maxDrop": "0pp"},
        "minSamples": 400,
        "method": "sequential",
        "alpha": ALPHA,
    }
)
THRESHOLD_GATE = Gate.model_validate(
    {
        "name": "checkout-success",
        "ratio": {"good": _GOOD, "total": _TOTAL},
        "compare": {"maxDrop": "1pp"},
        "minSamples": 200,
        "method": "threshold",
        "window": "1m",
    }
)


@dataclass(frozen=True, order=True)
class Cell:
    """One point of the grid: success drop (percentage points), canary exposure (%), total req/s."""

    delta_pp: float
    weight_pct: float
    rate: float

    @property
    def share(self) -> float:
        return self.weight_pct / 100.0

    @property
    def canary_bad_rate(self) -> float:
        return BASE_BAD + self.delta_pp / 100.0

    @property
    def is_aa(self) -> bool:
        return self.delta_pp == 0.0


def grid(
    deltas: Iterable[float] = DELTAS_PP, weights: Iterable[float] = WEIGHTS_PCT, rates: Iterable[float] = RATES
) -> list[Cell]:
    return sorted(Cell(d, w, r) for d in deltas for w in weights for r in rates)


# --- traffic ------------------------------------------------------------------------------------


def poisson_sampler(rng: random.Random, lam: float) -> Callable[[], int]:
    """A sampler of Poisson(``lam``) driven by ``rng``.

    Below a mean of 10, inversion by sequential search; from 10 on, the transformed rejection
    method with squeeze (PTRS, W. Hormann 1993, "The transformed rejection method for
    generating Poisson random variables"), as numpy's ``random_poisson_ptrs``.  Both are exact.
    """
    if not (lam >= 0.0 and math.isfinite(lam)):
        raise ValueError(f"a Poisson mean must be finite and >= 0, got {lam}")
    uniform = rng.random
    if lam == 0.0:
        return lambda: 0
    if lam < 10.0:
        p0 = math.exp(-lam)

        def inversion() -> int:
            u = uniform()
            k, p = 0, p0
            cdf = p
            while u > cdf and k < 1000:
                k += 1
                p *= lam / k
                cdf += p
            return k

        return inversion

    log_lam = math.log(lam)
    b = 0.931 + 2.53 * math.sqrt(lam)
    a = -0.059 + 0.02483 * b
    log_inv_alpha = math.log(1.1239 + 1.1328 / (b - 3.4))
    vr = 0.9277 - 3.6224 / (b - 2.0)
    lgamma, log, floor = math.lgamma, math.log, math.floor

    def ptrs() -> int:
        while True:
            u = uniform() - 0.5
            v = uniform()
            us = 0.5 - abs(u)
            if us <= 0.0:
                continue
            k = floor((2.0 * a / us + b) * u + lam + 0.43)
            if us >= 0.07 and v <= vr:
                return k
            if k < 0 or (us < 0.013 and v > us):
                continue
            if log(v) + log_inv_alpha - log(a / (us * us) + b) <= -lam + k * log_lam - lgamma(k + 1):
                return k

    return ptrs


@dataclass(frozen=True)
class Stream:
    """Cumulative counters at every scrape: index ``k`` is the value at ``t = 15 k`` s (0: step start)."""

    canary_good: list[int]
    canary_bad: list[int]
    stable_good: list[int]
    stable_bad: list[int]

    def canary_requests(self, k: int) -> int:
        return self.canary_good[k] + self.canary_bad[k]


@dataclass(frozen=True)
class Samplers:
    """The four per-scrape draws of one cell: canary and stable, good and bad."""

    canary_good: Callable[[], int]
    canary_bad: Callable[[], int]
    stable_good: Callable[[], int]
    stable_bad: Callable[[], int]

    @classmethod
    def for_cell(cls, rng: random.Random, cell: Cell) -> Samplers:
        canary = cell.rate * SCRAPE_S * cell.share
        stable = cell.rate * SCRAPE_S * (1.0 - cell.share)
        q_c, q_s = cell.canary_bad_rate, BASE_BAD
        return cls(
            canary_good=poisson_sampler(rng, canary * (1.0 - q_c)),
            canary_bad=poisson_sampler(rng, canary * q_c),
            stable_good=poisson_sampler(rng, stable * (1.0 - q_s)),
            stable_bad=poisson_sampler(rng, stable * q_s),
        )


def simulate(samplers: Samplers, scrapes: int = SCRAPES) -> Stream:
    """One run: cumulative counters at every 15 s scrape of the stage."""
    cg_draw, cb_draw, sg_draw, sb_draw = (
        samplers.canary_good,
        samplers.canary_bad,
        samplers.stable_good,
        samplers.stable_bad,
    )
    cg, cb, sg, sb = [0] * (scrapes + 1), [0] * (scrapes + 1), [0] * (scrapes + 1), [0] * (scrapes + 1)
    a = b = c = d = 0
    for k in range(1, scrapes + 1):
        a += cg_draw()
        b += cb_draw()
        c += sg_draw()
        d += sb_draw()
        cg[k], cb[k], sg[k], sb[k] = a, b, c, d
    return Stream(cg, cb, sg, sb)


# --- engines ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One engine on one run: the scrape index of the halt (None: not halted in the stage)."""

    halt: int | None
    starved: bool = False


def _sample(good: int, total: int) -> Sample:
    """A ratio sample as the Prometheus adapter builds it."""
    return Sample(value=good / total if total > 0 else None, samples=total, good=good, total=total)


def _reading(gate: Gate, stream: Stream, start: int, end: int) -> SignalReading:
    cg, cb, sg, sb = stream.canary_good, stream.canary_bad, stream.stable_good, stream.stable_bad
    canary_good, stable_good = cg[end] - cg[start], sg[end] - sg[start]
    canary_total = canary_good + cb[end] - cb[start]
    stable_total = stable_good + sb[end] - sb[start]
    return SignalReading(
        gate=gate.name,
        canary={SCALAR: _sample(canary_good, canary_total)},
        stable={SCALAR: _sample(stable_good, stable_total)},
        window_seconds=float((end - start) * SCRAPE_S),
    )


def ours_sequential(stream: Stream, cell: Cell) -> Outcome:
    """The sequential gate on counts since the step start, every 30 s; the first Fail halts."""
    inconclusive = 0
    for k in range(OURS_INTERVAL, len(stream.canary_good), OURS_INTERVAL):
        verdict = evaluate_gate(SEQUENTIAL_GATE, _reading(SEQUENTIAL_GATE, stream, 0, k), canary_share=cell.share)
        if verdict.verdict == "Fail":
            return Outcome(k, starved=inconclusive >= OURS_INCONCLUSIVE_LIMIT)
        if verdict.verdict == "Inconclusive":
            inconclusive += 1
    return Outcome(None, starved=inconclusive >= OURS_INCONCLUSIVE_LIMIT)


def ours_threshold(stream: Stream, cell: Cell) -> Outcome:
    """The threshold gate on a 1m window every 30 s; the 2nd Fail of the step halts."""
    failures = inconclusive = 0
    for k in range(OURS_INTERVAL, len(stream.canary_good), OURS_INTERVAL):
        reading = _reading(THRESHOLD_GATE, stream, max(0, k - THRESHOLD_WINDOW), k)
        verdict = evaluate_gate(THRESHOLD_GATE, reading, canary_share=cell.share)
        if verdict.verdict == "Fail":
            failures += 1
            if failures >= OURS_FAILURE_LIMIT:
                return Outcome(k, starved=inconclusive >= OURS_INCONCLUSIVE_LIMIT)
        elif verdict.verdict == "Inconclusive":
            inconclusive += 1
    return Outcome(None, starved=inconclusive >= OURS_INCONCLUSIVE_LIMIT)


def _fixed_window_fails(stream: Stream, k: int) -> bool:
    """The canary's success rate over the last minute is below 96 % (or undefined: no requests)."""
    start = max(0, k - FIXED_INTERVAL)
    good = stream.canary_good[k] - stream.canary_good[start]
    total = good + stream.canary_bad[k] - stream.canary_bad[start]
    return total == 0 or 100 * good < FIXED_MIN_PERCENT * total


def flagger_style(stream: Stream, cell: Cell) -> Outcome:
    """Every 1m tick: roll back if failedChecks >= 5, else run the check (a failure adds one)."""
    failed = 0
    for k in range(FIXED_INTERVAL, len(stream.canary_good), FIXED_INTERVAL):
        if failed >= FLAGGER_THRESHOLD:
            return Outcome(k)
        if _fixed_window_fails(stream, k):
            failed += 1
    return Outcome(None)


def argo_style(stream: Stream, cell: Cell) -> Outcome:
    """Five measurements at 1..5 min; the run fails on the 2nd failed one (failures > failureLimit)."""
    failures = 0
    last = min(ARGO_COUNT * FIXED_INTERVAL, len(stream.canary_good) - 1)
    for k in range(FIXED_INTERVAL, last + 1, FIXED_INTERVAL):
        if _fixed_window_fails(stream, k):
            failures += 1
            if failures > ARGO_FAILURE_LIMIT:
                return Outcome(k)
    return Outcome(None)


Engine = Callable[[Stream, Cell], Outcome]
SEQUENTIAL, THRESHOLD, FLAGGER, ARGO, SPRT = (
    "ours/sequential",
    "ours/threshold",
    "flagger-style",
    "argo-style",
    "wald-sprt (expected)",
)
ENGINES: dict[str, Engine] = {
    SEQUENTIAL: ours_sequential,
    THRESHOLD: ours_threshold,
    FLAGGER: flagger_style,
    ARGO: argo_style,
}
OURS = (SEQUENTIAL, THRESHOLD)


# --- running ------------------------------------------------------------------------------------


@dataclass
class Tally:
    """One engine's outcomes on every run of one cell."""

    engine: str
    cell: Cell
    runs: int = 0
    halt_seconds: list[float] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    extra: list[float] = field(default_factory=list)
    starved: int = 0

    def add(self, stream: Stream, outcome: Outcome) -> None:
        self.runs += 1
        end = len(stream.canary_good) - 1 if outcome.halt is None else outcome.halt
        if outcome.halt is not None:
            self.halt_seconds.append(float(outcome.halt * SCRAPE_S))
        bad = stream.canary_bad[end]
        self.failed.append(bad)
        self.extra.append(bad - BASE_BAD * stream.canary_requests(end))
        self.starved += outcome.starved


def run_cell(
    rng: random.Random, cell: Cell, runs: int, engines: dict[str, Engine] = ENGINES, scrapes: int = SCRAPES
) -> dict[str, Tally]:
    samplers = Samplers.for_cell(rng, cell)
    tallies = {name: Tally(name, cell) for name in engines}
    for _ in range(runs):
        stream = simulate(samplers, scrapes)
        for name, engine in engines.items():
            tallies[name].add(stream, engine(stream, cell))
    return tallies


def run_benchmark(
    cells: Sequence[Cell],
    *,
    runs: int,
    aa_runs: int,
    seed: int,
    progress: Callable[[str], None] | None = None,
) -> dict[Cell, dict[str, Tally]]:
    """Every engine on ``runs`` simulated runs per regressed cell and ``aa_runs`` per A/A cell."""
    rng = random.Random(seed)
    results: dict[Cell, dict[str, Tally]] = {}
    started = time.perf_counter()
    for i, cell in enumerate(cells, 1):
        results[cell] = run_cell(rng, cell, aa_runs if cell.is_aa else runs)
        if progress is not None:
            progress(
                f"[{i}/{len(cells)}] delta={cell.delta_pp:g}pp w={cell.weight_pct:g}% rate={cell.rate:g}/s "
                f"done, {time.perf_counter() - started:.0f}s elapsed"
            )
    return results


# --- statistics ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """Summary of one engine on one cell.  Times are in seconds; ``inf`` means "beyond the stage"."""

    engine: str
    cell: Cell
    runs: int  # 0 for the SPRT expectation
    halted: int
    mean_s: float
    mean_is_bound: bool  # some runs were not halted: the mean is a lower bound
    median_s: float
    p90_s: float
    failed: float
    extra: float
    starved: float | None

    @property
    def power(self) -> float:
        return self.halted / self.runs if self.runs else math.nan

    @property
    def standard_error(self) -> float:
        p = self.power
        return math.sqrt(p * (1.0 - p) / self.runs) if self.runs else math.nan


def _nearest_rank(sorted_values: list[float], p: float) -> float:
    return sorted_values[max(0, math.ceil(p * len(sorted_values)) - 1)]


def summarize(tally: Tally) -> Row:
    halted = len(tally.halt_seconds)
    censored = tally.runs - halted
    times = sorted(tally.halt_seconds) + [math.inf] * censored
    mean = (math.fsum(tally.halt_seconds) + censored * STAGE_S) / tally.runs
    return Row(
        engine=tally.engine,
        cell=tally.cell,
        runs=tally.runs,
        halted=halted,
        mean_s=mean,
        mean_is_bound=censored > 0,
        median_s=_nearest_rank(times, 0.5),
        p90_s=_nearest_rank(times, 0.9),
        failed=math.fsum(tally.failed) / tally.runs,
        extra=math.fsum(tally.extra) / tally.runs,
        starved=tally.starved / tally.runs if tally.engine in OURS else None,
    )


def sprt_row(cell: Cell) -> Row | None:
    """Wald's expectation for a regressed cell (None for A/A: the SPRT then accepts, it does not halt)."""
    if cell.is_aa:
        return None
    expectation = expected_time(
        request_rate=cell.rate,
        canary_share=cell.share,
        stable_bad_rate=BASE_BAD,
        canary_bad_rate=cell.canary_bad_rate,
        alpha=ALPHA,
        beta=BETA,
    )
    seconds = expectation.expected_seconds_h1
    canary_rate = cell.rate * cell.share
    return Row(
        engine=SPRT,
        cell=cell,
        runs=0,
        halted=0,
        mean_s=seconds,
        mean_is_bound=False,
        median_s=math.nan,
        p90_s=math.nan,
        failed=seconds * canary_rate * cell.canary_bad_rate,
        extra=seconds * canary_rate * cell.delta_pp / 100.0,
        starved=None,
    )


def all_rows(results: dict[Cell, dict[str, Tally]]) -> list[Row]:
    rows: list[Row] = []
    for cell in sorted(results):
        rows.extend(summarize(results[cell][name]) for name in ENGINES if name in results[cell])
        expected = sprt_row(cell)
        if expected is not None:
            rows.append(expected)
    return rows


# --- formatting ---------------------------------------------------------------------------------


def _seconds(value: float, *, bound: bool = False) -> str:
    if math.isnan(value):
        return "—"
    if math.isinf(value):
        return f">{STAGE_S}"
    return f"{'≥' if bound else ''}{value:.0f}"


def _percent(p: float, digits: int = 1) -> str:
    return "—" if math.isnan(p) else f"{100.0 * p:.{digits}f}%"


def _count(value: float) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def _ratio(value: float, *, bound: str = "") -> str:
    if math.isnan(value) or math.isinf(value):
        return "—"
    return f"{bound}{value:.2f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None) -> str:
    """A pipe table padded so that it also reads well as plain text."""
    widths = [max(len(str(h)), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    right = right or [True] * len(headers)

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        ("-" * (w + 1) + ":") if r else (":" + "-" * (w + 1)) for w, r in zip(widths, right, strict=True)
    )
    return "\n".join([line(headers), rule + "|", *(line(r) for r in rows)])


def full_table(rows: Sequence[Row]) -> str:
    headers = [
        "δ (pp)",
        "w",
        "req/s",
        "engine",
        "runs",
        "halted by 30 min",
        "mean T (s)",
        "median T",
        "p90 T",
        "failed served",
        "extra failed",
        "starved",
    ]
    body: list[list[str]] = []
    for row in rows:
        cell = row.cell
        if row.engine == SPRT:
            halted = "(β = 5%)"
            runs = "formula"
        else:
            runs = f"{row.runs:,}"
            halted = f"{row.halted}/{row.runs} = {_percent(row.power)}"
        body.append(
            [
                f"{cell.delta_pp:g}",
                f"{cell.weight_pct:g}%",
                f"{cell.rate:g}",
                row.engine,
                runs,
                halted,
                _seconds(row.mean_s, bound=row.mean_is_bound) if row.halted or row.engine == SPRT else f">{STAGE_S}",
                _seconds(row.median_s),
                _seconds(row.p90_s),
                ("≈" if row.engine == SPRT else "") + _count(row.failed),
                ("≈" if row.engine == SPRT else "") + _count(row.extra),
                "—" if row.starved is None else _percent(row.starved, 0),
            ]
        )
    right = [True, True, True, False, True, True, True, True, True, True, True, True]
    return markdown_table(headers, body, right)


# --- key figures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RhoFigure:
    cell: Cell
    sprt_s: float
    ours: Row
    aa: Row | None  # ours/sequential on the A/A cell with the same w and rate

    @property
    def rho(self) -> float:
        return self.ours.mean_s / self.sprt_s

    @property
    def met(self) -> bool:
        aa_ok = self.aa is not None and self.aa.power <= ALPHA
        return self.rho <= 1.5 and not self.ours.mean_is_bound and self.ours.power >= 0.95 and aa_ok

    def status(self) -> str:
        if self.met:
            return "met"
        misses = []
        if self.ours.power < 0.95:
            misses.append(f"power {_percent(self.ours.power, 0)}")
        if self.rho > 1.5:
            misses.append(f"{RHO} {'≥' if self.ours.mean_is_bound else ''}{self.rho:.2f}")
        if self.aa is None:
            misses.append("no A/A cell")
        elif self.aa.power > ALPHA:
            misses.append(f"A/A {_percent(self.aa.power, 2)}")
        if not misses:  # every figure within its target, but the mean is censored: rho is only a lower bound
            unhalted = self.ours.runs - self.ours.halted
            return f"open: {RHO} ≥ {self.rho:.2f} only ({unhalted} runs unhalted)"
        return "missed: " + ", ".join(misses)


@dataclass(frozen=True)
class BlastFigure:
    cell: Cell
    ours: Row
    flagger: Row
    flagger_aa: Row | None  # flagger-style on the A/A cell with the same w and rate

    @property
    def met(self) -> bool:
        return self.extra_ratio >= 2.5

    @property
    def extra_ratio(self) -> float:
        return self.flagger.extra / self.ours.extra if self.ours.extra > 0 else math.nan

    @property
    def failed_ratio(self) -> float:
        return self.flagger.failed / self.ours.failed if self.ours.failed > 0 else math.nan


def _by(rows: Sequence[Row]) -> dict[tuple[str, Cell], Row]:
    return {(row.engine, row.cell): row for row in rows}


def rho_figures(rows: Sequence[Row], delta_pp: float) -> list[RhoFigure]:
    index = _by(rows)
    figures = []
    for (engine, cell), row in sorted(index.items(), key=lambda item: item[0][1]):
        if engine != SEQUENTIAL or cell.delta_pp != delta_pp:
            continue
        sprt = index.get((SPRT, cell))
        if sprt is None:
            continue
        aa = index.get((SEQUENTIAL, Cell(0.0, cell.weight_pct, cell.rate)))
        figures.append(RhoFigure(cell, sprt.mean_s, row, aa))
    return figures


def blast_figures(rows: Sequence[Row], delta_pp: float = 2.0) -> list[BlastFigure]:
    index = _by(rows)
    figures = []
    for (engine, cell), row in sorted(index.items(), key=lambda item: item[0][1]):
        if engine == SEQUENTIAL and cell.delta_pp == delta_pp and (FLAGGER, cell) in index:
            aa = index.get((FLAGGER, Cell(0.0, cell.weight_pct, cell.rate)))
            figures.append(BlastFigure(cell, row, index[(FLAGGER, cell)], aa))
    return figures


def rho_table(figures: Sequence[RhoFigure]) -> str:
    headers = [
        "w",
        "req/s",
        "SPRT E[T] (s)",
        "ours mean T (s)",
        f"{RHO}",
        "ours power",
        f"ours A/A false halts ({ALPHA_SIGN} = 1%)",
        "target",
    ]
    body = []
    for f in figures:
        aa = "—" if f.aa is None else f"{f.aa.halted}/{f.aa.runs} = {_percent(f.aa.power, 2)}"
        bound = "≥" if f.ours.mean_is_bound else ""
        body.append(
            [
                f"{f.cell.weight_pct:g}%",
                f"{f.cell.rate:g}",
                _seconds(f.sprt_s),
                _seconds(f.ours.mean_s, bound=f.ours.mean_is_bound),
                _ratio(f.rho, bound=bound),
                f"{f.ours.halted}/{f.ours.runs} = {_percent(f.ours.power, 0)}",
                aa,
                f.status(),
            ]
        )
    return markdown_table(headers, body, [True, True, True, True, True, True, True, False])


def blast_table(figures: Sequence[BlastFigure]) -> str:
    headers = [
        "w",
        "req/s",
        "ours extra failed",
        "flagger extra failed",
        "ratio (extra)",
        "ours failed served",
        "flagger failed served",
        "ratio (failed)",
        "ours / flagger power",
        "flagger A/A false halts",
        f"≥ 2.5{TIMES}",
    ]
    body = []
    for f in figures:
        body.append(
            [
                f"{f.cell.weight_pct:g}%",
                f"{f.cell.rate:g}",
                _count(f.ours.extra),
                _count(f.flagger.extra),
                _ratio(f.extra_ratio),
                _count(f.ours.failed),
                _count(f.flagger.failed),
                _ratio(f.failed_ratio),
                f"{_percent(f.ours.power, 0)} / {_percent(f.flagger.power, 0)}",
                "—" if f.flagger_aa is None else _percent(f.flagger_aa.power, 1),
                "met" if f.met else "missed",
            ]
        )
    return markdown_table(headers, body, [True] * 10 + [False])


def engines_table(rows: Sequence[Row], delta_pp: float) -> str:
    """Mean time to halt of every engine at one effect size, each with its A/A false-halt rate alongside."""
    index = _by(rows)
    headers = ["w", "req/s", *(f"{engine}: mean T, power (A/A)" for engine in ENGINES), "Wald E[T]"]
    body = []
    for (engine, cell), _ in sorted(index.items(), key=lambda item: item[0][1]):
        if engine != SEQUENTIAL or cell.delta_pp != delta_pp:
            continue
        line = [f"{cell.weight_pct:g}%", f"{cell.rate:g}"]
        for name in ENGINES:
            row = index.get((name, cell))
            aa = index.get((name, Cell(0.0, cell.weight_pct, cell.rate)))
            if row is None:
                line.append("—")
                continue
            mean = _seconds(row.mean_s, bound=row.mean_is_bound) if row.halted else f">{STAGE_S}"
            aa_text = "" if aa is None else f" (A/A {_percent(aa.power, 1)})"
            line.append(f"{mean} s, {_percent(row.power, 0)}{aa_text}")
        sprt = index.get((SPRT, cell))
        line.append("—" if sprt is None else f"{sprt.mean_s:.0f} s")
        body.append(line)
    return markdown_table(headers, body)


def fastest_matched(rows: Sequence[Row], delta_pp: float) -> tuple[int, int, list[str]]:
    """Over the cells where ours/sequential halts >= 95 % of runs with an A/A false-halt rate <= alpha:
    (cells where it has the lowest mean time to halt among the engines whose A/A false-halt rate at
    the same w and rate is <= alpha too, those cells, where another engine is faster)."""
    index = _by(rows)
    wins, total, others = 0, 0, []
    for (engine, cell), ours in sorted(index.items(), key=lambda item: item[0][1]):
        if engine != SEQUENTIAL or cell.delta_pp != delta_pp:
            continue
        ours_aa = index.get((SEQUENTIAL, Cell(0.0, cell.weight_pct, cell.rate)))
        if ours.power < 0.95 or ours_aa is None or ours_aa.power > ALPHA:
            continue
        total += 1
        rivals = []
        for name in ENGINES:
            aa = index.get((name, Cell(0.0, cell.weight_pct, cell.rate)))
            row = index.get((name, cell))
            if name != SEQUENTIAL and row is not None and aa is not None and aa.power <= ALPHA:
                rivals.append(row)
        faster = [r for r in rivals if r.mean_s < ours.mean_s]
        if faster:
            best = min(faster, key=lambda r: r.mean_s)
            others.append(f"{_cell_name(cell)}: {best.engine} {best.mean_s:.0f} s vs {ours.mean_s:.0f} s")
        else:
            wins += 1
    return wins, total, others


def pooled_false_halts(rows: Sequence[Row]) -> list[tuple[str, int, int, float]]:
    """Per simulated engine: (engine, halted, runs, worst cell rate) over every A/A cell."""
    pooled = []
    for engine in ENGINES:
        aa = [row for row in rows if row.engine == engine and row.cell.is_aa]
        if aa:
            pooled.append((engine, sum(r.halted for r in aa), sum(r.runs for r in aa), max(r.power for r in aa)))
    return pooled


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2.0


def _cell_name(cell: Cell) -> str:
    return f"w={cell.weight_pct:g}%/{cell.rate:g} req/s"


def key_findings(rows: Sequence[Row]) -> list[str]:
    """Plain sentences with the measured key figures (no judgement beyond the stated targets)."""
    lines: list[str] = []
    for delta in (2.0, 1.0):
        figures = rho_figures(rows, delta)
        if not figures:
            continue
        powered = [f for f in figures if f.ours.power >= 0.95]
        met = [f for f in figures if f.met]
        text = f"**δ = {delta:g}pp**: target ({RHO} ≤ 1.5, power ≥ 95 %, A/A ≤ 1 %) met in {len(met)} of {len(figures)} cells"
        if powered:
            rhos = [f.rho for f in powered]
            text += (
                f"; where ours reaches ≥ 95 % power ({len(powered)} cells) {RHO} is {min(rhos):.2f}-{max(rhos):.2f} "
                f"(median {_median(rhos):.2f})"
            )
        slow = [f for f in figures if f.sprt_s > STAGE_S / 2]
        if slow:
            text += (
                f"; in {len(slow)} cells even the Wald optimum needs more than half the stage on average "
                f"(E[T] > {STAGE_S // 2} s: {', '.join(_cell_name(f.cell) for f in slow)})"
            )
        lines.append(text + ".")
    blast = blast_figures(rows)
    if blast:
        ratios = [f.extra_ratio for f in blast if not math.isnan(f.extra_ratio)]
        ours_total = math.fsum(f.ours.extra for f in blast)
        flagger_total = math.fsum(f.flagger.extra for f in blast)
        pooled = flagger_total / ours_total if ours_total > 0 else math.nan
        blast_met = sum(1 for f in blast if f.met)
        lines.append(
            f"**Blast radius at δ = 2pp** (flagger-style ÷ ours/sequential, extra failed checkouts): pooled over the "
            f"{len(blast)} cells {_ratio(pooled)}{TIMES} ({_count(flagger_total)} vs {_count(ours_total)} summed per-cell means), "
            f"per cell {_ratio(min(ratios))}-{_ratio(max(ratios))}{TIMES} (median {_ratio(_median(ratios))}{TIMES}); "
            f"≥ 2.5{TIMES} in {blast_met} of {len(blast)} cells."
        )
        quiet = [f for f in blast if f.flagger_aa is not None and f.flagger_aa.power <= ALPHA]
        if quiet:
            lines[-1] += (
                f"  In the {len(quiet)} cells where flagger-style's own A/A false-halt rate is ≤ 1 % too "
                f"({', '.join(_cell_name(f.cell) for f in quiet)}) the ratio is "
                f"{_ratio(min(f.extra_ratio for f in quiet))}-{_ratio(max(f.extra_ratio for f in quiet))}{TIMES}; "
                "elsewhere flagger-style halts healthy canaries too (see below)."
            )
    for delta in (2.0, 1.0):
        wins, total, others = fastest_matched(rows, delta)
        if total:
            lines.append(
                f"**Fastest at matched false halts, δ = {delta:g}pp**: among the engines whose A/A false-halt rate "
                f"at the same w and rate is ≤ 1 %, ours/sequential has the shortest mean time to halt in {wins} of "
                f"the {total} cells where it halts ≥ 95 % of runs within 30 min"
                + (f"; not in {'; '.join(others)}" if others else "")
                + "."
            )
    for engine, halted, runs, worst in pooled_false_halts(rows):
        if engine == SEQUENTIAL:
            rate = halted / runs
            se = math.sqrt(rate * (1 - rate) / runs)
            matched = _wald_numerator(rate) / _wald_numerator()
            lines.append(
                f"**A/A false halts, ours/sequential**: {halted}/{runs:,} = {_percent(rate, 2)} pooled "
                f"(± {_percent(se, 2)} SE), worst cell {_percent(worst, 2)}, against {ALPHA_SIGN} = 1 %.  "
                f"{RHO} is taken against Wald at its nominal {ALPHA_SIGN} = 1 %; ours realises less (Ville's bound "
                "is conservative and the stage ends).  A Wald SPRT set to ours' realised rate would need "
                f"{matched:.2f}{TIMES} as many events (dividing every {RHO} by that), but Wald's test would "
                f"also realise less than its nominal {ALPHA_SIGN} in a 30-minute stage, so that flattering "
                "adjustment is not applied."
                if rate > 0
                else f"**A/A false halts, ours/sequential**: 0/{runs:,} in the A/A cells, against {ALPHA_SIGN} = 1 %."
            )
    others = [
        f"{engine} {_percent(halted / runs, 1)} (worst cell {_percent(worst, 1)})"
        for engine, halted, runs, worst in pooled_false_halts(rows)
        if engine != SEQUENTIAL
    ]
    if others:
        lines.append("**A/A false halts, the others** (pooled over the A/A cells): " + "; ".join(others) + ".")
    return lines


def _wald_numerator(alpha: float = ALPHA) -> float:
    """Wald's ``(1 - beta) log A + beta log B``: E1[N] times KL."""
    bounds = wald_boundaries(alpha, BETA)
    return (1.0 - BETA) * bounds.log_upper + BETA * bounds.log_lower


def mixture_rho_floor() -> float:
    """rho of the mixture test against Wald's E1[N] from the rejection bars alone.

    The mixture crosses ``1/alpha`` no later than its best grid component's likelihood ratio
    crosses ``1/(alpha w_k)``: ``log(1/alpha) + log(1/w_k)`` nats against Wald's
    ``(1-beta) log A + beta log B``, with the grid point at the true effect, continuous looks and
    no overshoot.  Grid mismatch and the 30 s cadence add to it; help from neighbouring components
    takes a little off.
    """
    weights = DEFAULT_WEIGHTS if DEFAULT_WEIGHTS is not None else tuple(1.0 for _ in DEFAULT_GRID)
    price = math.log(math.fsum(weights) / max(weights))
    return (math.log(1.0 / ALPHA) + price) / _wald_numerator()


CADENCE_BOUND_S = 120.0  # below this Wald E[T], the 30 s cadence alone adds >= 1/8 to rho on average


def gaps(rows: Sequence[Row]) -> list[str]:
    """Where a target is missed, the measured reason and what would close it."""
    lines: list[str] = []
    figures = [f for delta in (2.0, 1.0) for f in rho_figures(rows, delta)]
    powered = [f for f in figures if f.ours.power >= 0.95 and not f.ours.mean_is_bound]
    slow_rho = [f for f in powered if f.rho > 1.5]
    cadence = [f for f in slow_rho if f.sprt_s < CADENCE_BOUND_S]
    mixture = [f for f in slow_rho if f.sprt_s >= CADENCE_BOUND_S]
    floor = mixture_rho_floor()

    def names(fs: Sequence[RhoFigure]) -> str:
        return ", ".join(f"{f.cell.delta_pp:g}pp {_cell_name(f.cell)} ({RHO} {f.rho:.2f})" for f in fs)

    if mixture:
        lines.append(
            f"{RHO} > 1.5 where the optimum needs {CADENCE_BOUND_S:.0f} s or more: {names(mixture)}.  This is the "
            f"price of not knowing the effect: the mixture's bar is log(1/{ALPHA_SIGN}) + log {len(DEFAULT_GRID)} nats "
            f"against Wald's (1-β) log A + β log B, {RHO} ≈ {floor:.2f} from the bars alone, before grid mismatch "
            "and the 30 s cadence (and Wald's test may stop by accepting, 5 % of the time; ours never gives up "
            "within the stage).  Closing it means a cheaper prior: fewer grid points or weight concentrated on "
            "the effects that matter (1.25-2x); e.g. a quarter of the weight on each of the two points nearest "
            f"the effect costs log 4 instead of log 8 ({RHO} ≈ "
            f"{(math.log(1 / ALPHA) + math.log(4)) / _wald_numerator():.2f} from the bars), paid for with slower "
            "detection of effects far from them.  Not tuned here."
        )
    if cadence:
        adjusted = [(f.ours.mean_s - 15.0) / f.sprt_s for f in cadence]
        lines.append(
            f"{RHO} > 1.5 where the optimum needs under {CADENCE_BOUND_S:.0f} s: {names(cadence)}.  There the "
            "cadence weighs most: evidence moves only at 15 s scrapes and is judged at 30 s evaluations, about "
            f"15 s after the crossing on average; less 15 s, these {RHO} would be about "
            f"{min(adjusted):.2f}-{max(adjusted):.2f} (a rough correction, for reading only).  Evaluating at "
            "every scrape (`analysis.interval: 15s`) would recover part of it; the test is valid at any "
            "cadence.  In absolute terms these halts come within the first few minutes."
        )
    underpowered = [f for f in figures if f.ours.power < 0.95]
    if underpowered:
        far = [f for f in underpowered if f.sprt_s > STAGE_S / 3]
        text = f"Power < 95 % within 30 min in {len(underpowered)} of {len(figures)} cells at 1-2pp" + (
            f"; in {len(far)} of them Wald's optimum itself needs more than {STAGE_S // 3} s on average "
            f"({', '.join(f'{f.cell.delta_pp:g}pp {_cell_name(f.cell)}' for f in far)}), and its stopping "
            "time spreads well beyond its mean, so 95 % power within the stage is out of reach or marginal "
            f"for any test at {ALPHA_SIGN} = 1 %: only more canary traffic (a higher weight, a longer "
            "stage) closes that."
            if far
            else "."
        )
        rest = [f for f in underpowered if f.sprt_s <= STAGE_S / 3]
        if rest:
            text += (
                "  Within reach but missed: "
                + ", ".join(
                    f"{f.cell.delta_pp:g}pp {_cell_name(f.cell)} (power {_percent(f.ours.power, 0)}, "
                    f"Wald E[T] {f.sprt_s:.0f} s)"
                    for f in rest
                )
                + "; the mixture's ~"
                + f"{floor:.1f}x longer mean pushes its tail past 30 min there."
            )
        lines.append(text)
    aa_high = sorted(
        {(f.cell.weight_pct, f.cell.rate): f.aa for f in figures if f.aa is not None and f.aa.power > ALPHA}.values(),
        key=lambda r: r.cell,
    )
    if aa_high:
        parts = []
        for r in aa_high:
            z = (r.power - ALPHA) / math.sqrt(ALPHA * (1 - ALPHA) / r.runs)
            verdict = f"within sampling noise of {ALPHA_SIGN}" if z < 2.0 else "beyond sampling noise"
            parts.append(f"{_cell_name(r.cell)} ({r.halted}/{r.runs} = {_percent(r.power, 2)}, {z:+.1f} SE: {verdict})")
        text = "Ours' A/A false-halt rate above 1 % in " + ", ".join(parts) + "."
        if any((r.power - ALPHA) / math.sqrt(ALPHA * (1 - ALPHA) / r.runs) >= 2.0 for r in aa_high):
            text += (
                "  Ville's bound is exact for a known traffic share; the gate plugs in the observed share "
                "(and rounds counts), which is what such an excess would point at."
            )
        lines.append(text)
    figures_blast = blast_figures(rows)
    missed = [f for f in figures_blast if not f.met]
    if missed:
        noisy = [f for f in missed if f.flagger_aa is not None and f.flagger_aa.power > ALPHA]
        text = f"Blast-radius ratio below 2.5{TIMES} in {len(missed)} of {len(figures_blast)} cells"
        if noisy:
            text += (
                f"; in {len(noisy)} of them flagger-style's own A/A false-halt rate is "
                f"{_percent(min(f.flagger_aa.power for f in noisy if f.flagger_aa), 0)}-"
                f"{_percent(max(f.flagger_aa.power for f in noisy if f.flagger_aa), 0)}: a fixed 96 % floor "
                "on one minute of a small canary's traffic fails by chance, so it halts early whether or not "
                "the canary regressed: its blast radius there is small, or not much larger than ours, because "
                "it halts healthy canaries too.  A like-for-like comparison needs a floor set per cell for a matched false-halt "
                "rate, which one fixed-window rule cannot hold across traffic levels"
            )
        lines.append(text + ".")
    return lines


# --- report -------------------------------------------------------------------------------------

START_MARKER = "<!-- detection:start -->"
END_MARKER = "<!-- detection:end -->"

SETUP = f"""\
Simulated request streams, no cluster.  Stable succeeds {BASE_SUCCESS:.0%} of the time, the canary
{BASE_SUCCESS:.0%} - δ; every {SCRAPE_S} s each arm's requests ~ Poisson(rate·{SCRAPE_S}·share) and failures
~ Binomial(requests, q), drawn as two independent Poisson counts (the same law).  Engines see only
scrape-aligned cumulative counters (a window is the difference of two scrapes, as `increase()`
estimates it) and all judge the same stream in each run.  The stage lasts {STAGE_S // 60} min.

| engine | configuration | halts when |
|:--|:--|:--|
| ours/sequential | real `evaluate_gate`, `method: sequential`, `compare: {{maxDrop: 0pp}}`, `alpha: 0.01`, `minSamples: 400`, counts since the step start, every 30 s | the first Fail |
| ours/threshold | real `evaluate_gate`, `method: threshold`, `compare: {{maxDrop: 1pp}}`, `window: 1m`, `minSamples: 200`, every 30 s | the 2nd Fail of the step (`failureLimit: 2`) |
| flagger-style | `request-success-rate`, interval 1m, canary's own 1m success rate, `thresholdRange.min: 96` (Flagger's doc example is 99 for a 99.9 % service; here the baseline is 97 %, so baseline - 1pp), `threshold: 5`; no traffic in the window is a failed check | one tick (1 min) after the 5th failed check, as Flagger's scheduler does |
| argo-style | AnalysisTemplate `interval: 1m`, `count: 5`, `failureLimit: 1`, `successCondition: result >= 0.96` on the canary's 1m success rate, measurements at 1-5 min; NaN (no traffic) fails | the 2nd failed measurement; after the 5th measurement the analysis has passed and nothing halts |
| wald-sprt (expected) | `bench/sprt.py` `expected_time`, {ALPHA_SIGN} = 0.01, β = 0.05, the true effect as alternative, continuous monitoring | Wald's E₁[T], no simulation |

Columns: *halted by 30 min* is the power (δ > 0) or the false-halt rate (δ = 0), with the run
counts.  Times count unhalted runs as {STAGE_S} s: `≥` marks a mean that is therefore a lower
bound, `>{STAGE_S}` a quantile beyond the stage (nearest rank).  *failed served* is the canary's
failed requests before the halt (or the stage end when not halted: a lower bound); *extra failed*
the failures above the {BASE_SUCCESS:.0%} baseline (failed - {BASE_BAD:.2f} {TIMES} canary requests served).
The SPRT's are Wald's-identity expectations (rate {TIMES} w {TIMES} q {TIMES} E[T]).  *starved* (ours only): runs
with ≥ 10 Inconclusive evaluations (below `minSamples`, never a Pass) before any halt; the
operator's default `inconclusiveLimit: 10` would hold those for lack of evidence, which is not
counted as a detection here.
"""

CAVEATS = f"""\
How to read the figures:

* {RHO} compares a test that does not know the effect size (a mixture over 8 alternatives, paying
  about log 8 ≈ 2.1 nats on top of log(1/{ALPHA_SIGN}) ≈ 4.6) and looks every 30 s against Wald's SPRT that
  knows the effect and looks at every event.  The 30 s cadence alone puts a floor under {RHO} where
  E[T] is short: {RHO} ≥ 30 s / E[T] (and on average about 15 s is added to any halt).
* A cell where the Wald optimum itself needs a large share of the 30-minute stage cannot reach
  95 % power within it with any test at {ALPHA_SIGN} = 1 %: there the target is out of reach at that traffic,
  and the figure to watch is the false-halt rate.
* Unhalted runs are censored at 30 min: means marked `≥` and blast radii of engines that do not
  halt understate what an unhalted regression would cost (it would be promoted to more traffic).
* Flagger- and Argo-style halts of A/A canaries at low traffic are real false halts of those
  rules: a fixed 96 % floor on a minute of a small canary's traffic fails by chance.  Their short
  times to halt in such cells are not detections of the regression.
"""


def _machine() -> str:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 0
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"nproc {cpus}{f' ({model})' if model else ''}, Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.release()}"
    )


def render_section(
    rows: Sequence[Row], *, command: str, seed: int, runs: int, aa_runs: int, wall_s: float, when: datetime
) -> str:
    parts = [
        START_MARKER,
        "## Detection",
        "",
        f"Command: `{command}`  ",
        f"Machine: {_machine()}  ",
        f"Date: {when.strftime('%Y-%m-%d %H:%M UTC')}; wall time {wall_s / 60:.1f} min; seed {seed}; "
        f"{runs:,} runs per regressed cell, {aa_runs:,} per A/A cell (δ = 0).",
        "",
        SETUP,
        "### Key figures",
        "",
        *(f"* {line}" for line in key_findings(rows)),
        "",
    ]
    for delta in (2.0, 1.0):
        figures = rho_figures(rows, delta)
        if figures:
            parts += [
                f"{RHO} = ours/sequential mean time to halt ÷ Wald SPRT E[T] at δ = {delta:g}pp, with ours' A/A "
                "false-halt rate at the same w and rate:",
                "",
                rho_table(figures),
                "",
            ]
    for delta in (2.0, 1.0):
        if any(row.cell.delta_pp == delta for row in rows):
            parts += [
                f"Every engine at δ = {delta:g}pp: mean time to halt (`≥`: lower bound), power within 30 min, and "
                "in brackets the engine's own A/A false-halt rate at the same w and rate:",
                "",
                engines_table(rows, delta),
                "",
            ]
    blast = blast_figures(rows)
    if blast:
        parts += [
            "Blast radius at δ = 2pp, flagger-style ÷ ours/sequential (mean per run; unhalted runs count to 30 min):",
            "",
            blast_table(blast),
            "",
        ]
    closing = gaps(rows)
    if closing:
        parts += [
            "### Where the targets are missed, and what would close the gap",
            "",
            *(f"* {g}" for g in closing),
            "",
        ]
    parts += [CAVEATS, "### All cells", "", full_table(rows), "", END_MARKER]
    return "\n".join(parts)


def write_section(path: Path, section: str) -> None:
    """Replace the Detection section of ``path`` (between the markers) or add it; keep the rest."""
    if not path.exists():
        path.write_text("# Benchmark results\n\n" + section + "\n")
        return
    text = path.read_text()
    start, end = text.find(START_MARKER), text.find(END_MARKER)
    if start != -1 and end > start:
        text = text[:start] + section + text[end + len(END_MARKER) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


# --- command line -------------------------------------------------------------------------------


def parse_cells(text: str) -> tuple[list[float], list[float], list[float]]:
    """``"delta=0,2 w=10 rate=50,500"`` (space or ``;`` separated) -> the grid's axes; a missing axis is whole."""
    axes: dict[str, list[float]] = {"delta": list(DELTAS_PP), "w": list(WEIGHTS_PCT), "rate": list(RATES)}
    for part in text.replace(";", " ").split():
        key, sep, values = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in axes:
            raise argparse.ArgumentTypeError(f"{part!r}: use delta=..., w=... or rate=... (comma-separated numbers)")
        try:
            axes[key] = [float(v) for v in values.split(",") if v.strip()]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{part!r}: {exc}") from exc
        if not axes[key]:
            raise argparse.ArgumentTypeError(f"{part!r}: no values")
    for delta in axes["delta"]:
        if not 0.0 <= delta < 100.0 * (1.0 - BASE_BAD):
            raise argparse.ArgumentTypeError(f"delta {delta:g}pp is out of range")
    for weight in axes["w"]:
        if not 0.0 < weight < 100.0:
            raise argparse.ArgumentTypeError(f"w {weight:g}% must be strictly between 0 and 100")
    for rate in axes["rate"]:
        if not rate > 0.0:
            raise argparse.ArgumentTypeError(f"rate {rate:g} must be positive")
    return axes["delta"], axes["w"], axes["rate"]


def _command(argv: Sequence[str]) -> str:
    python = Path(sys.executable)
    try:
        shown = str(python.relative_to(Path.cwd()))
    except ValueError:
        shown = "python"
    return " ".join([shown, "-m", "bench.detection", *argv])


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m bench.detection", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"CI size: {QUICK_RUNS} runs per cell, {QUICK_AA_RUNS} A/A"
    )
    parser.add_argument("--runs", type=int, help=f"runs per regressed cell (default {FULL_RUNS})")
    parser.add_argument("--aa-runs", type=int, help=f"runs per A/A cell, delta = 0 (default {FULL_AA_RUNS})")
    parser.add_argument("--seed", type=int, default=20240601, help="seed of the one RNG (default 20240601)")
    parser.add_argument("--cells", type=parse_cells, help='a subset, e.g. "delta=0,2 w=10 rate=50,500"')
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(args_list)

    runs = args.runs if args.runs is not None else (QUICK_RUNS if args.quick else FULL_RUNS)
    aa_runs = args.aa_runs if args.aa_runs is not None else (QUICK_AA_RUNS if args.quick else FULL_AA_RUNS)
    if runs < 1 or aa_runs < 1:
        parser.error("--runs and --aa-runs must be at least 1")
    cells = grid(*args.cells) if args.cells else grid()

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    when = datetime.now(UTC)
    started = time.perf_counter()
    results = run_benchmark(cells, runs=runs, aa_runs=aa_runs, seed=args.seed, progress=progress)
    wall = time.perf_counter() - started
    rows = all_rows(results)

    section = render_section(
        rows, command=_command(args_list), seed=args.seed, runs=runs, aa_runs=aa_runs, wall_s=wall, when=when
    )
    print(section.replace(START_MARKER + "\n", "").replace("\n" + END_MARKER, ""))
    if not args.no_write:
        write_section(args.results, section)
        progress(f"wrote the Detection section of {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
