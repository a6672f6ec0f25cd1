"""``checkout-gates lint``: validate rollout YAML offline, one line per problem.

Exit codes: 0 clean, 1 problems found, 2 a file could not be read or parsed as YAML.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from checkout_gates.api.resource import Problem, parse_rollout

EXIT_CLEAN, EXIT_PROBLEMS, EXIT_UNREADABLE = 0, 1, 2


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("lint", help="validate CheckoutRollout YAML files or folders offline")
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="YAML files or folders of them")
    parser.set_defaults(handler=run)


def _files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            yield path


def _documents(text: str) -> list[tuple[int, Any]]:
    """The non-empty documents of a YAML stream, each with its 1-based position in the stream."""
    return [(number, doc) for number, doc in enumerate(yaml.safe_load_all(text), start=1) if doc is not None]


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
    """Problems of every document in a YAML stream, with the document's 1-based position in it."""
    return _problems(_documents(text))


def run(arguments: argparse.Namespace) -> int:
    worst = EXIT_CLEAN
    for path in _files(arguments.paths):
        try:
            documents = _documents(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as error:
            print(f"{path}: cannot read: {error}", file=sys.stderr)
            worst = EXIT_UNREADABLE
            continue
        except yaml.YAMLError as error:
            print(f"{path}: not valid YAML: {error}".replace("\n", " "), file=sys.stderr)
            worst = EXIT_UNREADABLE
            continue
        problems = _problems(documents)
        # In a file of several documents, every problem names its document (file#2), the first one too.
        many = len(documents) > 1
        for number, problem in problems:
            where = f"{path}#{number}" if many else str(path)
            print(f"{where}:{problem}" if problem.path else f"{where}: {problem}")
        if problems:
            worst = max(worst, EXIT_PROBLEMS)
        else:
            print(f"{path}: ok", file=sys.stderr)
    return worst
