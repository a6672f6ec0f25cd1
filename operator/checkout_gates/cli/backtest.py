"""``checkout-gates backtest``: how a rollout would have gone over a past time range.

The rollout starts at ``--from`` with a fresh status. At every ``--step-seconds`` (default: the
analysis interval) until ``--to``, the gates the operator would query then are read from
Prometheus with instant queries at that past time, over the windows the operator would use, and
the real state machine decides, exactly as in ``evaluate --replay`` (same loop:
:mod:`checkout_gates.rollout.replay`). The report says when the rollout would have halted or been
promoted, and on which gate and segment.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import TextIO

from checkout_gates.cli.common import (
    EXIT_INVALID,
    TIME_HELP,
    InvalidInputError,
    add_approve_all_argument,
    add_output_arguments,
    add_prometheus_argument,
    dry_run_parser,
    load_rollout,
    parse_time,
)
from checkout_gates.cli.evaluate import APPROVER, probe, prometheus_config, write_replay
from checkout_gates.cli.output import format_time
from checkout_gates.cli.reports import replay_exit_code
from checkout_gates.metrics.port import MetricsSource
from checkout_gates.rollout.replay import Replayer, ReplayResult

MAX_TIMES = 200_000  # decisions in one backtest: a year at 30 s is about a million; this is ~70 days

DESCRIPTION = """\
Replay a rollout over a past time range of Prometheus data, and say when it would have halted or
been promoted, and on which gate and segment.

The rollout starts at --from with a fresh status. Every --step-seconds (default: the analysis
interval) until --to, the gates the operator would query then are read with instant queries at
that past time, over the windows the operator would use, and the real state machine decides: the
same loop as `evaluate --replay`. The router confirms every weight at once; approval steps wait
for ever unless --approve-all approves them (at the next decision time). It stops at the first
halt, abort or promotion. Progress goes to stderr when stderr is a terminal.
"""

EPILOG = """\
exit codes:
  0  the rollout would have been promoted
  1  it would have halted or aborted
  2  still in progress at --to
  3  invalid input (usage, a rollout that does not lint clean, times) or Prometheus unreachable

example:
  checkout-gates backtest rollout.yaml --prometheus http://localhost:9090 --from now-6h --to now-2h
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = dry_run_parser(
        commands,
        "backtest",
        summary="replay a rollout over a past time range of Prometheus data: when would it have halted?",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    add_prometheus_argument(parser)
    parser.add_argument("--from", dest="start", required=True, metavar="T1", help=f"the rollout starts: {TIME_HELP}")
    parser.add_argument("--to", dest="end", required=True, metavar="T2", help="the last decision time (same forms)")
    parser.add_argument(
        "--step-seconds",
        type=float,
        metavar="S",
        help="seconds between decisions (default: the rollout's analysis interval)",
    )
    add_approve_all_argument(parser, APPROVER)
    add_output_arguments(parser, ("table", "json"))
    parser.set_defaults(handler=run)


class Progress:
    """One self-overwriting line on a terminal; nothing at all otherwise."""

    def __init__(self, stream: TextIO, total: int) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.total = total
        self._last = 0.0

    def show(self, done: int, now: datetime, replayer: Replayer) -> None:
        if not self.enabled or time.monotonic() - self._last < 0.2:
            return
        self._last = time.monotonic()
        status = replayer.status
        percent = 100.0 * done / max(1, self.total)
        self.stream.write(
            f"\r\x1b[K{percent:5.1f}% {format_time(now)} step {status.current_step} {status.phase} "
            f"canary {status.weights.canary}% ({replayer.evaluations} evaluations)"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


async def backtest(
    replayer: Replayer, source: MetricsSource, times: list[datetime], *, progress: Progress | None = None
) -> ReplayResult:
    """Drive the replay loop with the source's readings at each time (Prometheus: instant queries at
    that past time); stops at the first outcome."""
    rollout = replayer.rollout
    for done, now in enumerate(times):
        if replayer.done:
            break
        reads = replayer.reads(now)
        readings = {}
        if reads:
            readings = await source.read_for(rollout, reads, at=now)
        replayer.advance(now, readings)
        if progress is not None:
            progress.show(done + 1, now, replayer)
    return replayer.result()


def decision_times(start: datetime, end: datetime, step_seconds: float) -> list[datetime]:
    count = int((end - start).total_seconds() // step_seconds) + 1
    if count > MAX_TIMES:
        raise InvalidInputError(
            f"{count:,} decisions from --from to --to at {step_seconds:g}s: more than {MAX_TIMES:,}; "
            "narrow the range or widen --step-seconds"
        )
    return [start + timedelta(seconds=step_seconds * i) for i in range(count)]


async def _run(arguments: argparse.Namespace, replayer: Replayer, times: list[datetime]) -> ReplayResult:
    from checkout_gates.metrics.prometheus import PrometheusSource  # only when run (see evaluate_live)

    config = prometheus_config(replayer.rollout, arguments.prometheus, use_file_address=arguments.use_file_address)
    progress = Progress(sys.stderr, len(times))
    source: MetricsSource
    async with PrometheusSource(config) as source:
        await probe(source, times[0])
        try:
            return await backtest(replayer, source, times, progress=progress)
        finally:
            progress.close()


def run(arguments: argparse.Namespace) -> int:
    try:
        rollout = load_rollout(arguments.rollout)
        now = datetime.now(UTC)
        try:
            start = parse_time(arguments.start, now=now)
            end = parse_time(arguments.end, now=now)
        except ValueError as error:
            raise InvalidInputError(f"--from/--to: {error}") from None
        if end <= start:
            raise InvalidInputError(f"--to {format_time(end)} is not after --from {format_time(start)}")
        step_seconds = arguments.step_seconds or rollout.spec.interval_seconds()
        if step_seconds <= 0:
            raise InvalidInputError(f"--step-seconds {step_seconds:g} must be above 0")
        times = decision_times(start, end, step_seconds)
        replayer = Replayer(rollout, approve_all=arguments.approve_all, approver=APPROVER)
        result = asyncio.run(_run(arguments, replayer, times))
        meta = rollout.metadata
        title = (
            f"backtest of {meta.namespace}/{meta.name} from {format_time(start)} to {format_time(end)} "
            f"every {step_seconds:g}s" + (" with every approval given" if arguments.approve_all else "")
        )
        source = {
            "prometheus": prometheus_config(
                rollout, arguments.prometheus, use_file_address=arguments.use_file_address
            ).address,
            "range": {"from": format_time(start), "to": format_time(end), "stepSeconds": step_seconds},
            "approveAll": bool(arguments.approve_all),
        }
        write_replay(result, arguments.output, arguments.output_file, title=title, source=source)
        return replay_exit_code(result)
    except InvalidInputError as error:
        print(error, file=sys.stderr)
        return EXIT_INVALID
