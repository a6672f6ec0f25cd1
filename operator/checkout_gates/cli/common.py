"""What the sub-commands share: exit codes and usage errors, reading the rollout, parsing times, writing reports.

Colour, tables and time formatting are the CLI's output kit (:mod:`checkout_gates.cli.output`)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

from checkout_gates.api.documents import MAX_FILE_BYTES, DocumentError, check_size, load_documents
from checkout_gates.api.quantities import parse_duration
from checkout_gates.api.resource import CheckoutRollout, Problem, parse_rollout
from checkout_gates.api.text import printable

# Exit codes of a dry run. A CI job blocks on 1, may retry or wait on 2, and fixes its input on 3.
EXIT_PASS = 0  # every gate passes (replay and backtest: promoted)
EXIT_FAIL = 1  # a gate fails (replay and backtest: halted or aborted)
EXIT_INCONCLUSIVE = 2  # no failure, but something is Inconclusive (replay and backtest: still in progress)
EXIT_INVALID = 3  # invalid input (usage, rollout, recording) or Prometheus unreachable

EXIT_CODES_HELP = """\
exit codes:
  0  every gate passes (--replay, backtest: the rollout was promoted)
  1  a gate fails (--replay, backtest: the rollout halted or aborted)
  2  nothing fails but something is Inconclusive (--replay, backtest: still in progress at the end)
  3  invalid input: a usage error, a rollout that does not lint clean, a bad recording;
     or Prometheus unreachable (the reason is printed)
"""


class InvalidInputError(Exception):
    """Input that cannot be used; the message is what to print (it may span lines)."""


class UnreadableFileError(InvalidInputError):
    """A file that cannot be read as YAML at all (lint's exit 2); the message is one line naming it."""


class _UsageErrorsExit3Parser(argparse.ArgumentParser):
    """A sub-command parser whose usage errors exit 3, not argparse's 2: in a dry run 2 means
    Inconclusive, and for the on-call commands it means the operator did not answer in time."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message}\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        # Unknown options would otherwise travel up to the top-level parser, which exits 2.
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def internal_error(error: BaseException) -> str:
    """An unforeseen exception as one bounded line (its text may quote the input), for a command
    whose exit codes are a contract: CI reads them, so no traceback and no stray exit 1."""
    detail = printable(" ".join(str(error).split())[:200])
    return f"internal error ({type(error).__name__}{': ' + detail if detail else ''}); please report it with the input"


def usage_errors_exit_invalid(parser: argparse.ArgumentParser) -> None:
    """Make a sub-command parser exit 3 (not argparse's 2) on a usage error."""
    parser.__class__ = _UsageErrorsExit3Parser


def dry_run_parser(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    *,
    summary: str,
    description: str,
    epilog: str,
) -> argparse.ArgumentParser:
    """The parser of a dry-run command (``evaluate``, ``backtest``): usage errors exit 3, a rollout file."""
    parser = commands.add_parser(
        name, help=summary, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    usage_errors_exit_invalid(parser)
    # Whatever goes wrong unforeseen is still invalid input to CI, never "a gate fails" (1).
    parser.set_defaults(unexpected_exit=EXIT_INVALID)
    parser.add_argument("rollout", type=Path, metavar="ROLLOUT.yaml", help="a file with one CheckoutRollout")
    return parser


def add_prometheus_argument(group: argparse._ActionsContainer) -> None:
    group.add_argument(
        "--prometheus",
        metavar="URL",
        help="Prometheus to query (default: $CHECKOUT_GATES_PROMETHEUS)",
    )
    group.add_argument(
        "--use-file-address",
        action="store_true",
        help="without --prometheus, query the rollout's own spec.prometheus.address: only for files you trust "
        "(in CI a pull request's file would choose what the runner fetches)",
    )


def add_approve_all_argument(group: argparse._ActionsContainer, approver: str) -> None:
    group.add_argument(
        "--approve-all", action="store_true", help=f"approve every approval step (as actor {approver!r})"
    )


def add_output_arguments(group: argparse._ActionsContainer, choices: Sequence[str]) -> None:
    group.add_argument("--output", "-o", choices=choices, default="table", help="report format (default: table)")
    group.add_argument(
        "--output-file", type=Path, metavar="FILE", help="write the report to FILE (the table still goes to stdout)"
    )


# --- the rollout --------------------------------------------------------------------------------


def file_name(path: Path) -> str:
    """A path as messages show it: file names come from pull requests too, and may hold escapes."""
    return printable(str(path))


def read_documents(path: Path) -> list[tuple[int, Any]]:
    """The non-empty YAML documents of a file with their 1-based positions, through the safe loader
    (:mod:`checkout_gates.api.documents`: its size, depth, alias and duplicate-key checks);
    UnreadableFileError, one line naming the file, otherwise.

    A file over the size limit is refused by its size, unread; the read stops after the limit
    anyway, for what has no size (a FIFO, /dev/zero, a file still growing)."""
    try:
        with path.open("rb") as file:
            check_size(os.fstat(file.fileno()).st_size)
            data = file.read(MAX_FILE_BYTES + 1)
        return load_documents(data)
    except OSError as error:
        reason = printable(error.strerror or str(error))
        raise UnreadableFileError(f"{file_name(path)}: cannot read: {reason}") from None
    except DocumentError as error:
        raise UnreadableFileError(f"{file_name(path)}: {error}") from None


def problem_lines(path: Path, problems: Sequence[tuple[int, Problem]], *, numbered: bool) -> list[str]:
    """``file:path: message`` per problem; ``file#2:...`` names the document when ``numbered``."""
    lines = []
    for number, problem in problems:
        where = f"{file_name(path)}#{number}" if numbered else file_name(path)
        lines.append(f"{where}:{problem}" if problem.path else f"{where}: {problem}")
    return lines


def load_rollout(path: Path) -> CheckoutRollout:
    """The one CheckoutRollout in a YAML file; InvalidInputError with lint's lines when it has problems."""
    documents = read_documents(path)
    if len(documents) != 1:
        found = "no YAML document" if not documents else f"{len(documents)} documents"
        raise InvalidInputError(f"{file_name(path)}: holds {found}; give a file with exactly one CheckoutRollout")
    outcome = parse_rollout(documents[0][1])
    if isinstance(outcome, list):
        # The same lines as `checkout-gates lint` prints.
        raise InvalidInputError("\n".join(problem_lines(path, [(1, p) for p in outcome], numbered=False)))
    return outcome


# --- times --------------------------------------------------------------------------------------

_RELATIVE = re.compile(r"^now(?:\s*-\s*(?P<ago>\S+))?$")
TIME_HELP = "RFC 3339 (2026-11-27T10:00:00Z; no zone means UTC), Unix seconds, now, or now-DURATION (now-2h)"


def parse_time(text: str, *, now: datetime) -> datetime:
    """A point in time from the command line, in UTC; ValueError naming the accepted forms."""
    stripped = text.strip()
    relative = _RELATIVE.match(stripped)
    if relative is not None:
        ago = relative.group("ago")
        return now if ago is None else now - timedelta(seconds=parse_duration(ago))
    try:
        return datetime.fromtimestamp(float(stripped), tz=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        moment = datetime.fromisoformat(stripped)
    except ValueError:
        raise ValueError(f"{text!r} is not a time: use {TIME_HELP}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def write_report(text: str, path: Path | None) -> None:
    """The report to ``path``, or to stdout when there is none."""
    if path is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    try:
        path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    except OSError as error:
        raise InvalidInputError(f"{path}: cannot write the report: {error.strerror or error}") from error
