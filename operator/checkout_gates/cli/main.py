"""The ``checkout-gates`` command (and ``kubectl checkout``): one sub-command per module.

Further sub-commands come from installed distributions through the ``checkout_gates.commands``
entry-point group (the lab's ``demo`` and ``simulate``): each entry point names a ``register``
function like the ones below. The product itself never imports them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from checkout_gates import __version__
from checkout_gates.cli import audit, backtest, crd_command, evaluate, lint, oncall, plan, run, status
from checkout_gates.cli.common import internal_error

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

# Each module adds its sub-command; keeping the list here makes the command's shape easy to read.
COMMANDS: tuple[Register, ...] = (
    lint.register,
    crd_command.register,
    run.register,
    evaluate.register,
    backtest.register,
    plan.register,
    status.register,
    oncall.register,
    audit.register,
)
PLUGIN_GROUP = "checkout_gates.commands"


def plugin_commands() -> list[tuple[str, Register]]:
    """The ``register`` functions of installed plugins, by entry-point name (sorted, so help is stable).

    A plugin that cannot be loaded is left out with a one-line warning: a broken development
    install must not take the operator's own commands down with it."""
    found: list[tuple[str, Register]] = []
    for point in sorted(entry_points(group=PLUGIN_GROUP), key=lambda p: p.name):
        try:
            register = point.load()
        except Exception as error:  # any import failure of a plugin is reported the same way
            print(f"checkout-gates: plugin command {point.name!s} not loaded: {type(error).__name__}", file=sys.stderr)
            continue
        found.append((point.name, register))
    return found


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
    for _name, register in plugin_commands():
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = arguments.handler
    # lint, evaluate and backtest promise their exit codes (CI acts on them): for those, an
    # unforeseen exception is one line and the command's invalid-input code, not a traceback and 1.
    unexpected_exit: int | None = getattr(arguments, "unexpected_exit", None)
    if unexpected_exit is None:
        return handler(arguments)
    try:
        return handler(arguments)
    except Exception as error:  # MemoryError and RecursionError included
        print(f"checkout-gates {arguments.command}: {internal_error(error)}", file=sys.stderr)
        return unexpected_exit


if __name__ == "__main__":
    sys.exit(main())
