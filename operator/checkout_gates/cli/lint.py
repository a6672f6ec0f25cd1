"""``checkout-gates lint``: validate rollout YAML offline, one line per problem.

Exit codes: 0 clean, 1 problems found, 2 a file could not be read or parsed as YAML.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

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


def lint_text(text: str) -> list[tuple[int, Problem]]:
    """Problems of every document in a YAML stream, with the 1-based document number."""
    found: list[tuple[int, Problem]] = []
    documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    if not documents:
        return [(1, Problem("", "holds no YAML document"))]
    for number, document in enumerate(documents, start=1):
        outcome = parse_rollout(document)
        if isinstance(outcome, list):
            found.extend((number, problem) for problem in outcome)
    return found


def run(arguments: argparse.Namespace) -> int:
    worst = EXIT_CLEAN
    for path in _files(arguments.paths):
        try:
            problems = lint_text(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as error:
            print(f"{path}: cannot read: {error}", file=sys.stderr)
            worst = EXIT_UNREADABLE
            continue
        except yaml.YAMLError as error:
            print(f"{path}: not valid YAML: {error}".replace("\n", " "), file=sys.stderr)
            worst = EXIT_UNREADABLE
            continue
        many = len({number for number, _ in problems}) > 1 or any(number > 1 for number, _ in problems)
        for number, problem in problems:
            where = f"{path}#{number}" if many else str(path)
            print(f"{where}:{problem}")
        if problems:
            worst = max(worst, EXIT_PROBLEMS)
        else:
            print(f"{path}: ok", file=sys.stderr)
    return worst
