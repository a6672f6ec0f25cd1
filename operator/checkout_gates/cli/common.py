"""What ``evaluate`` and ``backtest`` share: exit codes, reading the rollout, times, tables, colour."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, TextIO

import yaml

from checkout_gates.api.quantities import parse_duration
from checkout_gates.api.resource import CheckoutRollout, parse_rollout

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


class _DryRunParser(argparse.ArgumentParser):
    """A sub-command parser whose usage errors exit 3, because 2 means Inconclusive in a dry run."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_INVALID, f"{self.prog}: error: {message}\n")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        # Unknown options would otherwise travel up to the top-level parser, which exits 2.
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def usage_errors_exit_invalid(parser: argparse.ArgumentParser) -> None:
    """Make a sub-command parser exit 3 (not argparse's 2) on a usage error."""
    parser.__class__ = _DryRunParser


# --- the rollout --------------------------------------------------------------------------------


def load_rollout(path: Path) -> CheckoutRollout:
    """The one CheckoutRollout in a YAML file; InvalidInputError with lint's lines when it has problems."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"{path}: cannot read: {error}") from error
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        raise InvalidInputError(f"{path}: not valid YAML: {error}".replace("\n", " ")) from error
    if len(documents) != 1:
        found = "no YAML document" if not documents else f"{len(documents)} documents"
        raise InvalidInputError(f"{path}: holds {found}; give a file with exactly one CheckoutRollout")
    outcome = parse_rollout(documents[0])
    if isinstance(outcome, list):
        # The same lines as `checkout-gates lint` prints.
        raise InvalidInputError("\n".join(f"{path}:{p}" if p.path else f"{path}: {p}" for p in outcome))
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


def format_time(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


# --- text ---------------------------------------------------------------------------------------

_COLOURS = {"Pass": "32", "Fail": "31", "Inconclusive": "33", "bold": "1", "dim": "2"}


class Style:
    """ANSI colour only for a terminal, and never when NO_COLOR is set (https://no-color.org)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @classmethod
    def for_stream(cls, stream: TextIO) -> Style:
        return cls(stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb")

    def paint(self, text: str, what: str) -> str:
        code = _COLOURS.get(what)
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled and code else text


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, style: Style, colour_column: int = -1) -> str:
    """Left-aligned columns, two spaces apart; ``colour_column`` is painted by its own value."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        cells = []
        for index, (cell, width) in enumerate(zip(row, widths, strict=True)):
            padded = cell.ljust(width) if index < len(row) - 1 else cell
            cells.append(style.paint(padded, cell) if index == colour_column else padded)
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def one_line(text: str) -> str:
    return " ".join(text.split())


def write_report(text: str, path: Path | None) -> None:
    """The report to ``path``, or to stdout when there is none."""
    if path is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return
    try:
        path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    except OSError as error:
        raise InvalidInputError(f"{path}: cannot write the report: {error.strerror or error}") from error
