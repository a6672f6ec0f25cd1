r"""Tail gates in whole rollouts: the bound chosen from stable's hour before, false halts, power.

Each run first simulates the hour of stable traffic before the rollout as Prometheus would hold
it (every latency bucket's requests over the hour, Poisson, at the cell's rate) and lets the
operator's own :func:`checkout_gates.metrics.tail.choose_bound` pick the bound: stable's 0.99
quantile rounded up to a bucket of the lab's histogram.  The rollout then runs as in
``bench/rollouts.py`` (pods, scrapes, chunked raw samples, the adapter's exact counts, the core's
fold and the rollout's budget), with a fourth budgeted gate: ``slow-checkouts``, the requests
slower than that bound per request (``compare: {maxRise: 50%}``).  Latency is log-normal (the
lab's median 0.32 s, sigma 0.42: p99 about 0.85 s); a slower canary multiplies every request's
latency.  The A/A cell puts the canary's share above the bound at exactly 1.5x stable's, the
tolerance's boundary, where false halts are the most likely.

Run: ``.venv/bin/python -m bench.tails`` (writes the "Tail gates" section of bench/RESULTS.md),
``--runs N --aa-runs N`` to size it, ``--no-write`` to print only.
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
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.detection import poisson_sampler
from bench.rollouts import Cell, GateTraffic, RunResult, SegmentTraffic, rollout_gates, run, write_section
from checkout_gates.api.spec import Gate
from checkout_gates.metrics.tail import choose_bound

RESULTS = Path(__file__).with_name("RESULTS.md")
START_MARKER = "<!-- tails:start -->"
END_MARKER = "<!-- tails:end -->"
MEDIAN = 0.32  # seconds (lab/checkout_gates_lab/sim/catalog.py)
SIGMA = 0.42
BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0)
QUANTILE = 0.99
TOLERANCE = 1.5  # maxRise 50%
BEFORE = 3600.0  # seconds of stable traffic the bound is chosen from


def slower_share(bound: float, slower: float = 1.0) -> float:
    """P(latency > bound) for a log-normal latency multiplied by ``slower``."""
    z = (math.log(bound / slower) - math.log(MEDIAN)) / SIGMA
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def tail_gate() -> Gate:
    return Gate.model_validate(
        {
            "name": "slow-checkouts",
            "tail": {"histogram": 'checkout_request_duration_seconds{variant="{{variant}}"}', "quantile": QUANTILE},
            "compare": {"maxRise": f"{(TOLERANCE - 1) * 100:g}%"},
            "method": "sequential",
            "counts": "exact",
        }
    )


def chosen_bound(rng: random.Random, rate: float) -> str:
    """The bound the operator chooses from one simulated hour of stable requests."""
    requests = rate * BEFORE
    cumulative, below = [], 0.0
    edges = (0.0, *BUCKETS)
    for low, high in itertools.pairwise(edges):
        share = (slower_share(low) if low > 0 else 1.0) - slower_share(high)
        below += poisson_sampler(rng, requests * share)()
        cumulative.append((repr(high), below))
    cumulative.append(("+Inf", below + poisson_sampler(rng, requests * slower_share(BUCKETS[-1]))()))
    return choose_bound(cumulative, QUANTILE)


@dataclass(frozen=True)
class TailCell:
    name: str
    slower: float | None  # the canary's latency multiplier; None: at the tolerance's boundary
    rate: float = 40.0
    scrape: float = 30.0


def one_run(cell: TailCell, seed: int) -> tuple[RunResult, str]:
    rng = random.Random(seed ^ 0x7A11)
    bound = chosen_bound(rng, cell.rate)
    stable = slower_share(float(bound))
    canary = stable * TOLERANCE if cell.slower is None else slower_share(float(bound), cell.slower)
    gates = (*rollout_gates("0pp"), GateTraffic(tail_gate(), 1.0, (SegmentTraffic((), 1.0, stable),)))
    shaped = Cell(
        cell.name,
        gates,
        (("slow-checkouts", None, canary / stable),),
        rate=cell.rate,
        scrape=cell.scrape,
        relative=True,
        target=("slow-checkouts", None),
    )
    return run(shaped, seed), bound


def _runs(cell: TailCell, runs: int, seed: int, workers: int) -> list[tuple[RunResult, str]]:
    seeds = [seed * 1_000_003 + i for i in range(runs)]
    if workers <= 1:
        return [one_run(cell, s) for s in seeds]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one_run, [cell] * runs, seeds, chunksize=max(1, runs // (workers * 8))))


def cells(scrape: float) -> list[tuple[TailCell, bool]]:
    """(cell, is A/A)."""
    return [
        (TailCell("A/A: canary exceeds the bound 1.5x as often as stable (maxRise 50%)", None, scrape=scrape), True),
        (TailCell("every canary checkout 1.1x slower (p99 +10%)", 1.1, scrape=scrape), False),
        (TailCell("every canary checkout 1.25x slower (p99 +25%)", 1.25, scrape=scrape), False),
        (TailCell("every canary checkout 1.6x slower (the lab's latency-regression)", 1.6, scrape=scrape), False),
    ]


def report(args: argparse.Namespace) -> str:
    started = time.perf_counter()
    lines = [
        "| cell | runs | halted | by slow-checkouts | mean time to halt | bounds chosen |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for index, (cell, aa) in enumerate(cells(args.scrape)):
        runs = args.aa_runs if aa else args.runs
        results = _runs(cell, runs, args.seed + index, args.workers)
        halted = [r for r, _ in results if r.halted_at is not None]
        named = sum(1 for r in halted if r.blamed is not None and r.blamed[0] == "slow-checkouts")
        times = [r.halted_at for r in halted if r.halted_at is not None]
        mean = f"{sum(times) / len(times):.0f} s" if times else "-"
        bounds = Counter(bound for _, bound in results)
        chosen = ", ".join(f"le={b}: {n}" for b, n in sorted(bounds.items(), key=lambda item: float(item[0])))
        lines.append(
            f"| {cell.name} | {runs} | {len(halted)}/{runs} = {len(halted) / runs:.2%} | {named} | {mean} | {chosen} |"
        )
        print(lines[-1], flush=True)
    stable = {b: slower_share(b) for b in (0.75, 1.0, 1.25)}
    elapsed = time.perf_counter() - started
    command = " ".join(["python -m bench.tails", *sys.argv[1:]])
    head = (
        f"Command: `.venv/bin/{command}` ({elapsed:.0f} s on {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {datetime.now(UTC):%Y-%m-%d}). alpha = 0.01 for the whole rollout "
        "(4 budgeted gates: auth-approval 9 segments, refund-success 4, duplicate-charges, slow-checkouts), "
        f"40 checkouts/s, 5% -> 25% -> 50% over an hour, scrape {args.scrape:g} s. Stable's share above "
        + ", ".join(f"{b:g} s: {share:.2%}" for b, share in stable.items())
        + ".\n"
    )
    return head + "\n" + "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--aa-runs", type=int, default=2000)
    parser.add_argument("--scrape", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=20261202)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    text = report(args)
    print(text)
    if not args.no_write:
        write_section(RESULTS, text, START_MARKER, END_MARKER, "Tail gates in whole rollouts (bench/tails.py)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
