"""``checkout-gates lint``: validate rollout YAML offline, one line per problem.

Exit codes: 0 clean, 1 problems found, 2 a file could not be read or parsed as YAML, or broke a
limit of the safe loader (:mod:`checkout_gates.api.documents`: size, nesting, aliases, duplicate
keys, tags); each such file gets one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from checkout_gates.api.documents import load_documents
from checkout_gates.api.resource import Problem, parse_rollout
from checkout_gates.cli.common import UnreadableFileError, file_name, internal_error, problem_lines, read_documents

EXIT_CLEAN, EXIT_PROBLEMS, EXIT_UNREADABLE = 0, 1, 2


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("lint", help="validate CheckoutRollout YAML files or folders offline")
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="YAML files or folders of them")
    parser.set_defaults(handler=run, unexpected_exit=EXIT_UNREADABLE)


def _files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            yield path


def _problems(documents: list[tuple[int, Any]]) -> list[tuple[int, Problem]]:
    if not documents:
        return [(1, Problem("", "holds no YAML document"))]
    found: list[tuple[int, Problem]] = []
    for number, document in documents:
        outcome = parse_rollout(document)
        if isinstance(outcome, list):
            found.extend((number, problem) for problem in outcome)
    return found


def lint_text(text: str) -> list[tuple[int, Problem]]:
    """Problems of every document in a YAML stream, with the document's 1-based position in it;
    DocumentError when the text is not a safe YAML stream."""
    return _problems(load_documents(text.encode("utf-8")))


def _lint_file(path: Path) -> int:
    try:
        documents = read_documents(path)
        problems = _problems(documents)
    except UnreadableFileError as error:
        print(error, file=sys.stderr)
        return EXIT_UNREADABLE
    except Exception as error:  # a bug must not hide the other files' results behind a traceback
        print(f"{file_name(path)}: cannot lint: {internal_error(error)}", file=sys.stderr)
        return EXIT_UNREADABLE
    # In a file of several documents, every problem names its document (file#2), the first one too.
    for line in problem_lines(path, problems, numbered=len(documents) > 1):
        print(line)
    if problems:
        return EXIT_PROBLEMS
    print(f"{file_name(path)}: ok", file=sys.stderr)
    return EXIT_CLEAN


def run(arguments: argparse.Namespace) -> int:
    worst = EXIT_CLEAN
    for path in _files(arguments.paths):
        worst = max(worst, _lint_file(path))
    return worst
