"""``checkout-gates simulate``: run the simulated checkout service (see ``checkout_gates_lab.sim``)."""

from __future__ import annotations

import argparse

from checkout_gates_lab.sim.__main__ import DESCRIPTION
from checkout_gates_lab.sim.options import add_arguments, main


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("simulate", help="simulated checkout traffic with Prometheus metrics and faults")
    parser.description = DESCRIPTION
    add_arguments(parser)
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    return main(arguments)
