"""The CLI's one output kit: colour (only for a terminal), tables, times and single lines.

Shared by every sub-command (``status``, ``list``, the on-call commands, ``evaluate``,
``backtest``) and the lab's demo, so that a time or a verdict reads the same everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from checkout_gates.api.text import printable

# ANSI SGR codes by what is shown: verdicts and phases share their colours.
COLOURS = {
    "Pass": "32",
    "Promoted": "32",
    "Fail": "31",
    "Halted": "31",
    "Aborted": "31",
    "Inconclusive": "33",
    "AwaitingApproval": "33",
    "Paused": "33",
    "bold": "1",
    "dim": "2",
}


def colour_for(stream: TextIO) -> bool:
    """ANSI colour only on a terminal, and never with NO_COLOR (https://no-color.org) or TERM=dumb."""
    return stream.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def paint(text: str, what: str, colour: bool) -> str:
    """``text`` in the colour of ``what`` (a verdict, a phase, ``bold``, ``dim``), when ``colour``."""
    code = COLOURS.get(what)
    return f"\x1b[{code}m{text}\x1b[0m" if colour and code else text


class Style:
    """Whether to colour, carried through the report writers (``Style(False)`` for files)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @classmethod
    def for_stream(cls, stream: TextIO) -> Style:
        return cls(colour_for(stream))

    def paint(self, text: str, what: str) -> str:
        return paint(text, what, self.enabled)


def table_lines(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    colour: bool,
    colour_column: int = -1,
    indent: str = "",
) -> list[str]:
    """Left-aligned columns, two spaces apart; ``colour_column`` is painted by its own value."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [indent + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        cells = []
        for index, (cell, width) in enumerate(zip(row, widths, strict=True)):
            padded = cell.ljust(width) if index < len(row) - 1 else cell
            cells.append(paint(padded, cell, colour) if index == colour_column else padded)
        lines.append(indent + "  ".join(cells).rstrip())
    return lines


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, style: Style, colour_column: int = -1) -> str:
    """:func:`table_lines` as one text."""
    return "\n".join(table_lines(headers, rows, colour=style.enabled, colour_column=colour_column))


def format_time(moment: datetime | None) -> str:
    """RFC 3339 in UTC with a ``Z``; milliseconds only when the time has a fraction; ``-`` for none."""
    if moment is None:
        return "-"
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds" if moment.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def one_line(text: str) -> str:
    """Runs of white space (newlines included) folded into single spaces, and every other control or
    format character written as an escape (``\\x1b``): recorded reasons, messages and actors come
    from whoever could write the object, and an ANSI escape in one must not reach on-call's terminal."""
    return printable(" ".join(text.split()))
