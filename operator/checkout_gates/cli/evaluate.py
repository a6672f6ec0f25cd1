"""``checkout-gates evaluate``: the operator's gate evaluation as a dry run, for CI and for people.

Live: every gate of the rollout (or the gates the operator watches at one step) is read from
Prometheus and judged by the same code the operator runs; nothing is written anywhere.
Replay: a recording is stepped through the real state machine from the start of the rollout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from checkout_gates.api.quantities import parse_duration
from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.api.spec import PrometheusSpec
from checkout_gates.api.text import shown
from checkout_gates.cli.common import (
    EXIT_CODES_HELP,
    EXIT_INVALID,
    TIME_HELP,
    InvalidInputError,
    add_approve_all_argument,
    add_output_arguments,
    add_prometheus_argument,
    dry_run_parser,
    load_rollout,
    parse_time,
    write_report,
)
from checkout_gates.cli.output import Style, format_time
from checkout_gates.cli.reports import (
    Evaluation,
    GateEvaluation,
    evaluation_table,
    render_evaluation,
    replay_exit_code,
    replay_json,
    replay_table,
)
from checkout_gates.gates.budget import judge_gates
from checkout_gates.gates.evaluate import carried, evaluate_gate
from checkout_gates.metrics.port import MetricsSource
from checkout_gates.metrics.recording import RecordingError, RecordingSource
from checkout_gates.rollout.plan import GateContext, plan
from checkout_gates.rollout.replay import ReplayResult, replay

OUTPUTS = ("table", "json", "junit", "markdown")
APPROVER = "approve-all"

DESCRIPTION = """\
Evaluate a CheckoutRollout's gates as the operator would, and write nothing.

Live (--prometheus): every gate of the rollout, or with --step N the gates the operator watches
at step N (that gate step's gates plus the critical ones), is queried at --at (default: now) over
the window the operator would use: a threshold gate's window or the analysis interval; for a
sequential gate, the elapsed time of its gate step, taken as that step's whole pass window (the
first gate step naming the gate, or step N) unless --elapsed says otherwise. The canary weight of
that step is the traffic share count gates are normalised by.

Replay (--replay FILE): the recording (JSON lines, see checkout_gates.metrics.recording) is stepped
through the real state machine from the start of the rollout: a fresh status, one decision at
each recorded time, the router confirming every weight at once, and no on-call annotations, so
an approval step waits for ever unless --approve-all approves it (at the next recorded time).
Prints every transition and the final verdict.
"""

EPILOG = f"""\
output (--output, default table; --output-file FILE writes it to FILE and keeps the table on stdout):
  table     one row per gate and segment, then a summary line (colour only on a terminal)
  json      the verdicts with their numbers (replay: transitions and final status)
  junit     JUnit XML, one testcase per gate and segment; Fail is a failure, Inconclusive skipped
  markdown  a table for a CI job summary, e.g. --output markdown --output-file "$GITHUB_STEP_SUMMARY"
  A replay reports table or json.

{EXIT_CODES_HELP}
examples:
  checkout-gates evaluate rollout.yaml --prometheus http://localhost:9090
  checkout-gates evaluate rollout.yaml --prometheus http://localhost:9090 --step 3 --at now-1h \\
      --output junit --output-file gates.xml
  checkout-gates evaluate --replay examples/recordings/regression.jsonl examples/recordings/rollout.yaml
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = dry_run_parser(
        commands,
        "evaluate",
        summary="dry run: judge a rollout's gates against Prometheus, or replay a recording (no writes)",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    live = parser.add_argument_group("live evaluation")
    add_prometheus_argument(live)
    live.add_argument("--at", metavar="TIME", help=f"evaluate as of this time (default now): {TIME_HELP}")
    live.add_argument(
        "--step", type=int, metavar="N", help="the gates watched at step N (0-based, as status.currentStep)"
    )
    live.add_argument(
        "--elapsed",
        metavar="DURATION",
        help="time since the gate step started, for sequential gates' windows (e.g. 12m; default: the step's window)",
    )
    recorded = parser.add_argument_group("replay")
    recorded.add_argument("--replay", type=Path, metavar="FILE", help="replay this recording instead of Prometheus")
    add_approve_all_argument(recorded, APPROVER)
    add_output_arguments(parser.add_argument_group("output"), OUTPUTS)
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    try:
        if arguments.replay is not None:
            return _run_replay(arguments)
        return _run_live(arguments)
    except InvalidInputError as error:
        print(error, file=sys.stderr)
        return EXIT_INVALID


# --- live ---------------------------------------------------------------------------------------


def prometheus_config(rollout: CheckoutRollout, url: str | None, *, use_file_address: bool = False) -> PrometheusSpec:
    """The Prometheus a dry run asks: the command line's, or (only when told) the file's own.

    In CI the rollout file may come from a pull request: its ``spec.prometheus.address`` is the
    author's choice, and querying it would let a file make the runner fetch any internal URL.
    """
    url = url or os.environ.get("CHECKOUT_GATES_PROMETHEUS") or None
    if url is None and not use_file_address:
        raise InvalidInputError(
            f"the rollout names Prometheus at {shown(rollout.spec.prometheus.address)}, but a dry run asks only "
            "the Prometheus given with --prometheus URL (or $CHECKOUT_GATES_PROMETHEUS); add --use-file-address "
            "to ask the file's own, for files you trust"
        )
    try:
        return PrometheusSpec(address=url or rollout.spec.prometheus.address, timeout=rollout.spec.prometheus.timeout)
    except ValidationError:
        raise InvalidInputError(f"--prometheus {url!r} is not an http:// or https:// URL") from None


async def probe(source: MetricsSource, at: datetime | None) -> None:
    """Raise InvalidInputError with the reason when the source cannot answer reads at ``at``."""
    problem = await source.check(at)
    if problem is not None:
        raise InvalidInputError(f"{source.description} is unreachable: {problem}")


async def evaluate_live(
    rollout: CheckoutRollout, config: PrometheusSpec, contexts: list[GateContext], at: datetime, *, step: int | None
) -> Evaluation:
    # Here, not at the top: the HTTP stack is a good part of the CLI's start-up, and only a live
    # evaluation needs it (lint, crd and the replay do not).
    from checkout_gates.metrics.prometheus import PrometheusSource

    source: MetricsSource
    async with PrometheusSource(config) as source:
        await probe(source, at)
        readings = await source.read_for(rollout, contexts, at=at)
    alpha = rollout.spec.analysis.alpha
    # Gates with carried evidence are judged together, under the rollout's one budget, as the
    # operator judges them; their canary share comes from their exposure, not from the plan.
    budget = judge_gates(
        rollout.spec.gates,
        [c.gate for c in contexts if carried(c.gate)],
        readings,
        canary_share=0.0,
        alpha=alpha,
    ).verdicts
    judged = tuple(
        GateEvaluation(
            gate=c.gate,
            verdict=budget[c.gate.name]
            if carried(c.gate)
            else evaluate_gate(c.gate, readings[c.gate.name], canary_share=c.canary_share, alpha=alpha),
            window_seconds=c.window_seconds,
            canary_share=c.canary_share,
            step=c.step,
        )
        for c in contexts
    )
    return Evaluation(rollout=rollout, at=at, source=config.address, step=step, gates=judged)


def _elapsed(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        seconds = parse_duration(text)
    except ValueError as error:
        raise InvalidInputError(f"--elapsed: {error}") from None
    if seconds <= 0:
        raise InvalidInputError(f"--elapsed: {text!r} must be longer than zero")
    return seconds


def _run_live(arguments: argparse.Namespace) -> int:
    if arguments.approve_all:
        raise InvalidInputError("--approve-all only applies to --replay")
    rollout = load_rollout(arguments.rollout)
    spec = rollout.spec
    step: int | None = arguments.step
    if step is not None and not 0 <= step < len(spec.steps):
        raise InvalidInputError(f"--step {step}: the rollout has steps 0 to {len(spec.steps) - 1}")
    now = datetime.now(UTC)
    try:
        at = parse_time(arguments.at, now=now) if arguments.at else now
    except ValueError as error:
        raise InvalidInputError(f"--at: {error}") from None
    contexts = plan(spec, step=step, elapsed_seconds=_elapsed(arguments.elapsed))
    if not contexts:
        raise InvalidInputError(
            f"{arguments.rollout}: no gates to evaluate" + (f" at step {step}" if step is not None else "")
        )
    config = prometheus_config(rollout, arguments.prometheus, use_file_address=arguments.use_file_address)
    evaluation = asyncio.run(evaluate_live(rollout, config, contexts, at, step=step))
    style = Style.for_stream(sys.stdout)
    if arguments.output_file is None:
        write_report(render_evaluation(evaluation, arguments.output, style), None)
    else:
        write_report(render_evaluation(evaluation, arguments.output, Style(False)), arguments.output_file)
        sys.stdout.write(evaluation_table(evaluation, style))
    return evaluation.exit_code


# --- replay -------------------------------------------------------------------------------------


def _run_replay(arguments: argparse.Namespace) -> int:
    given = [
        flag
        for flag, value in (
            ("--prometheus", arguments.prometheus),
            ("--at", arguments.at),
            ("--step", arguments.step),
            ("--elapsed", arguments.elapsed),
        )
        if value is not None
    ]
    if given:
        raise InvalidInputError(f"--replay takes no {', '.join(given)} (they are for a live evaluation)")
    if arguments.output not in ("table", "json"):
        raise InvalidInputError(f"--output {arguments.output} is for a live evaluation; a replay reports table or json")
    rollout = load_rollout(arguments.rollout)
    try:
        recording = RecordingSource.load(arguments.replay)
    except RecordingError as error:
        raise InvalidInputError(str(error)) from None
    declared = {gate.name for gate in rollout.spec.gates}
    missing = sorted(declared - set(recording.gates))
    unknown = sorted(set(recording.gates) - declared)
    if missing:
        print(
            f"{arguments.replay}: no readings of gate(s) {', '.join(missing)}: they are not evaluated (Inconclusive)",
            file=sys.stderr,
        )
    if unknown:
        print(f"{arguments.replay}: gate(s) {', '.join(unknown)} are not in the rollout: ignored", file=sys.stderr)

    times = recording.times()
    result = replay(
        rollout, ((t, recording.readings_at(t)) for t in times), approve_all=arguments.approve_all, approver=APPROVER
    )
    meta = rollout.metadata
    title = (
        f"replay of {arguments.replay} ({len(times)} recorded times, {format_time(times[0])} to "
        f"{format_time(times[-1])}) through {meta.namespace}/{meta.name}"
        + (" with every approval given" if arguments.approve_all else "")
    )
    source = {"recording": str(arguments.replay), "approveAll": bool(arguments.approve_all)}
    write_replay(result, arguments.output, arguments.output_file, title=title, source=source)
    return replay_exit_code(result)


def write_replay(
    result: ReplayResult, output: str, output_file: Path | None, *, title: str, source: dict[str, Any]
) -> None:
    """The report of a replay or backtest; with an output file, the table also goes to stdout."""
    style = Style.for_stream(sys.stdout)
    if output == "json":
        report = replay_json(result, source=source)
    else:
        report = replay_table(result, style if output_file is None else Style(False), title=title)
    write_report(report, output_file)
    if output_file is not None:
        sys.stdout.write(replay_table(result, style, title=title))
