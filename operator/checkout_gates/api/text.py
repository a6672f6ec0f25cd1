"""Showing untrusted values in one-line messages: bounded, and with no character that moves a terminal.

A rollout file may come from a pull request, and a status string from whoever could write one, so
what a message quotes of them is cut to :data:`SHOWN_LENGTH` characters and every control or format
character (ANSI escapes, newlines, NULs, bidirectional overrides, lone surrogates) is written as an
escape such as ``\\x1b``. Never ``repr()`` of an arbitrary object: a recursive or huge structure
would be walked whole just to print an error.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

SHOWN_LENGTH = 80
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(character: str) -> str:
    named = _NAMED_ESCAPES.get(character)
    if named is not None:
        return named
    code = ord(character)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every character that is not printable (``str.isprintable``) written as an escape."""
    if text.isprintable():  # the common case, checked in C
        return text
    return "".join(character if character.isprintable() else _escape(character) for character in text)


def _bounded(text: str, limit: int) -> str:
    if len(text) <= limit:
        return printable(text)
    return f"{printable(text[:limit])}... ({len(text)} characters)"


def shown(value: Any, limit: int = SHOWN_LENGTH) -> str:
    """A value as a message quotes it: ``'v1'``, ``5``, ``true``, ``null``, ``a list of 3 items``.

    Strings are quoted and cut to ``limit`` characters (with their length said); numbers, times and
    booleans are written as YAML would; containers are described by their size, never walked."""
    if isinstance(value, str):
        if len(value) <= limit:
            return f"'{printable(value)}'"
        return f"'{printable(value[:limit])}...' ({len(value)} characters)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        try:
            return _bounded(str(value), limit)
        except ValueError:  # more digits than Python converts to text (sys.get_int_max_str_digits)
            return f"a number of about {int(value.bit_length() * 0.30103)} digits"
    if isinstance(value, float):
        return _bounded(str(value), limit)
    if isinstance(value, datetime | date | time):
        return _bounded(value.isoformat(), limit)
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, dict):
        return f"a mapping of {len(value)} key{'' if len(value) == 1 else 's'}"
    if isinstance(value, bytes | bytearray):
        return f"{len(value)} bytes of binary data"
    return f"a {type(value).__name__}"
