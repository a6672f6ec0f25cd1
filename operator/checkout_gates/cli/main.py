"""The ``checkout-gates`` command (and ``kubectl checkout``): one sub-command per module."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from checkout_gates import __version__
from checkout_gates.cli import backtest, crd_command, demo, evaluate, lint, oncall, run, simulate, status

# Each module adds its sub-command; keeping the list here makes the command's shape easy to read.
COMMANDS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    lint.register,
    crd_command.register,
    run.register,
    evaluate.register,
    backtest.register,
    simulate.register,
    status.register,
    oncall.register,
    demo.register,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        # As a kubectl plugin (the kubectl-checkout executable), help speaks of `kubectl checkout`.
        prog="kubectl checkout" if sys.argv[0].rsplit("/", 1)[-1] == "kubectl-checkout" else "checkout-gates",
        description="Gated exposure rollouts for checkout and payment services.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMANDS:
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = arguments.handler
    return handler(arguments)


if __name__ == "__main__":
    sys.exit(main())
