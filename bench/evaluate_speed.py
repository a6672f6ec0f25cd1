"""Dry-run speed, the "Dry run" yardstick of DESIGN.md (goal: evaluate under 1 s).

1. ``checkout-gates evaluate`` of a rollout with 10 gates against a local Prometheus (Debian's,
   started with :mod:`checkout_gates_lab.testbed`), backfilled with the ``healthy`` example recording's
   counters and histogram (hack/make_recordings.py); the gates are the four of
   examples/recordings/rollout.yaml plus six more on the same metrics (ratio, count, sequential
   count, quantile, gauge). Timed in-process (``main([...])``: reading the rollout, the queries,
   the evaluation, the report) and as a fresh ``checkout-gates`` process (plus interpreter start and
   imports: what a CI job waits for). Median over ``--runs`` runs after one warm-up run.
2. ``checkout-gates evaluate --replay`` of a 24-hour recording (the healthy traffic model, a
   rollout whose last gate step holds for 24 h, so all 2,881 recorded times are decided).

    .venv/bin/python -m bench.evaluate_speed            # prints a table, updates bench/RESULTS.md
    .venv/bin/python -m bench.evaluate_speed --no-write --runs 20
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.cli.main import main
from checkout_gates.metrics.prometheus import gate_queries
from checkout_gates_lab.testbed import Prometheus

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
BASE_ROLLOUT = ROOT / "examples" / "recordings" / "rollout.yaml"
BEGIN, END = "<!-- bench.evaluate_speed: begin -->", "<!-- bench.evaluate_speed: end -->"
GOAL_SECONDS = 1.0

AUTH = 'payment_authorizations_total{variant="{{variant}}"'
CAPTURES = 'payment_captures_total{variant="{{variant}}"'
LATENCY = 'checkout_request_duration_seconds_{kind}{{variant="{{{{variant}}}}"}}'
EXTRA_GATES: list[dict[str, Any]] = [
    {
        "name": "auth-approval-by-provider",
        "ratio": {
            "good": f'sum by (provider) (increase({AUTH}, outcome="approved"}}[{{{{window}}}}]))',
            "total": f"sum by (provider) (increase({AUTH}}}[{{{{window}}}}]))",
        },
        "segmentBy": ["provider"],
        "compare": {"maxDrop": "1pp"},
        "minSamples": 400,
        "window": "5m",
    },
    {
        "name": "auth-approval-overall",
        "ratio": {
            "good": f'sum(increase({AUTH}, outcome="approved"}}[{{{{window}}}}]))',
            "total": f"sum(increase({AUTH}}}[{{{{window}}}}]))",
        },
        "min": 0.85,
        "minSamples": 400,
        "window": "5m",
    },
    {
        "name": "declines",
        "count": f'sum(increase({AUTH}, outcome="declined"}}[{{{{window}}}}]))',
        "exposure": f"sum(increase({AUTH}}}[{{{{window}}}}]))",
        "compare": {"maxRise": "50%"},
        "window": "5m",
    },
    {
        "name": "capture-failures",
        "count": f'sum(increase({CAPTURES}, outcome="failed"}}[{{{{window}}}}]))',
        "exposure": f"sum(increase({CAPTURES}}}[{{{{window}}}}]))",
        "compare": {"maxRise": "100%"},
        "method": "sequential",
    },
    {
        "name": "p95-latency",
        "quantile": "histogram_quantile(0.95, sum by (le) (rate(" + LATENCY.format(kind="bucket") + "[{{window}}])))",
        "compare": {"maxRise": "20%"},
        "window": "5m",
    },
    {
        "name": "mean-latency",
        "gauge": f"sum(rate({LATENCY.format(kind='sum')}[{{{{window}}}}])) / "
        f"sum(rate({LATENCY.format(kind='count')}[{{{{window}}}}]))",
        "compare": {"maxRise": "20%"},
        "window": "5m",
    },
]


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_recordings", ROOT / "hack" / "make_recordings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_recordings", module)
    spec.loader.exec_module(module)
    return module


def ten_gate_rollout(selector: str) -> str:
    """examples/recordings/rollout.yaml with six more gates, every query narrowed by ``selector``."""
    document = yaml.safe_load(BASE_ROLLOUT.read_text())
    document["metadata"]["name"] = "checkout-api-10-gates"
    document["spec"]["gates"] += EXTRA_GATES
    names = [gate["name"] for gate in document["spec"]["gates"]]
    for step in document["spec"]["steps"]:
        if "gate" in step:
            step["gate"]["pass"] = names
    text = yaml.safe_dump(document, sort_keys=False, width=1000)
    return text.replace('variant="{{variant}}"', f'{selector}, variant="{{{{variant}}}}"')


def day_document() -> dict[str, Any]:
    """The example rollout with a last gate step of 24 h, so that a day's recording is decided throughout."""
    document: dict[str, Any] = yaml.safe_load(BASE_ROLLOUT.read_text())
    document["spec"]["steps"][-2]["gate"]["window"] = "24h"
    return document


@dataclass(frozen=True)
class Timing:
    what: str
    runs: list[float]
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.runs)


def timed(runs: int, action: Callable[[], object], *, warm_up: bool = True) -> list[float]:
    if warm_up:
        action()
    seconds = []
    for _ in range(runs):
        began = time.perf_counter()
        action()
        seconds.append(time.perf_counter() - began)
    return seconds


def quiet_main(argv: list[str]) -> int:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return main(argv)


def fmt(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def render(timings: list[Timing]) -> str:
    rows = [("measure", "runs", "median", "min", "max", "note")]
    rows += [(t.what, str(len(t.runs)), fmt(t.median), fmt(min(t.runs)), fmt(max(t.runs)), t.note) for t in timings]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def markdown(timings: list[Timing], command: str, environment: str) -> str:
    lines = [
        BEGIN,
        "## Dry run: `checkout-gates evaluate` (bench/evaluate_speed.py)",
        "",
        f"Goal: evaluate a rollout with 10 gates against local Prometheus in under {GOAL_SECONDS:g} s. Measured with:",
        "",
        "```",
        command,
        "```",
        "",
        "| measure | runs | median | min | max | note |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {t.what} | {len(t.runs)} | {fmt(t.median)} | {fmt(min(t.runs))} | {fmt(max(t.runs))} | {t.note} |"
        for t in timings
    ]
    lines += ["", environment, END]
    return "\n".join(lines) + "\n"


def update_results(section: str) -> None:
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        after = rest.split(END, 1)[1].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(text)


def main_bench(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each evaluate (at least 10)")
    parser.add_argument("--replay-runs", type=int, default=3, help="timed runs of the 24-hour replay")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    arguments = parser.parse_args(argv)
    if arguments.runs < 10:
        parser.error("--runs must be at least 10")
    generator = _generator()
    timings: list[Timing] = []

    with tempfile.TemporaryDirectory(prefix="checkout-gates-bench-") as scratch, Prometheus() as prometheus:
        folder = Path(scratch)
        run = uuid.uuid4().hex[:8]
        start = (datetime.now(UTC) - timedelta(hours=2)).replace(second=0, microsecond=0)
        healthy = generator.generate("healthy", start=start)
        prometheus.backfill_openmetrics(generator.openmetrics([(healthy, {"run": run, "scenario": "bench"})]))
        rollout = folder / "rollout-10-gates.yaml"
        rollout.write_text(ten_gate_rollout(f'run="{run}", scenario="bench"'))
        at = (start + timedelta(minutes=30)).isoformat()
        argv = ["evaluate", str(rollout), "--prometheus", prometheus.url, "--at", at, "--output", "json"]
        code = quiet_main(argv)
        if code == 3:
            raise SystemExit(f"evaluate failed (exit 3): {' '.join(argv)}")
        spec = CheckoutRollout.model_validate(yaml.safe_load(rollout.read_text())).spec
        gates = len(spec.gates)
        queries = 1 + 2 * sum(len(gate_queries(gate)) for gate in spec.gates)  # a probe, then both variants
        timings.append(
            Timing(
                f"evaluate, {gates} gates, in-process",
                timed(arguments.runs, lambda: quiet_main(argv)),
                f"exit {code}; read the rollout, {queries} instant queries, judge, JSON report",
            )
        )
        command = [sys.executable, "-m", "checkout_gates.cli.main", *argv]
        environment = {**os.environ, "NO_COLOR": "1"}
        timings.append(
            Timing(
                f"evaluate, {gates} gates, `checkout-gates` process",
                timed(
                    arguments.runs,
                    lambda: subprocess.run(command, capture_output=True, check=False, env=environment),
                ),
                "as a CI job runs it: interpreter start and imports included",
            )
        )

        document = day_document()
        day = generator.generate(
            "healthy", start=start, rollout=CheckoutRollout.model_validate(document), minutes=24 * 60
        )
        recording = folder / "day.jsonl"
        recording.write_text(day.jsonl())
        day_file = folder / "day-rollout.yaml"
        day_file.write_text(yaml.safe_dump(document, sort_keys=False, width=1000))
        replay_argv = ["evaluate", "--replay", str(recording), str(day_file)]
        replay_code = quiet_main(replay_argv)
        size = recording.stat().st_size / 1e6
        timings.append(
            Timing(
                f"evaluate --replay, 24 h recording ({len(day.times):,} times)",
                timed(arguments.replay_runs, lambda: quiet_main(replay_argv), warm_up=False),
                f"exit {replay_code}; {len(day.lines):,} lines, {size:.1f} MB, every time decided",
            )
        )
        prometheus_version = subprocess.run(
            ["prometheus", "--version"], capture_output=True, text=True, check=False
        ).stdout.split("\n", 1)[0]

    table_text = render(timings)
    print(table_text)
    best = timings[0].median
    print(
        f"\ngoal < {GOAL_SECONDS:g} s for 10 gates: {'met' if best < GOAL_SECONDS else 'MISSED'} ({fmt(best)} median)"
    )
    if not arguments.no_write:
        load = os.getloadavg()[0]
        environment_text = (
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPUs (load average {load:.1f} "
            f"at the end: other work shared the machine), Python {platform.python_version()}, "
            f"{prometheus_version.strip()}; Prometheus on loopback, TSDB backfilled with the `healthy` recording."
        )
        runs = f" --runs {arguments.runs}" if arguments.runs != 15 else ""
        update_results(markdown(timings, f".venv/bin/python -m bench.evaluate_speed{runs}", environment_text))
        print(f"updated {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main_bench())
