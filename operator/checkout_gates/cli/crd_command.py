"""``checkout-gates crd``: print the CustomResourceDefinition generated from the API models."""

from __future__ import annotations

import argparse
import sys

from checkout_gates.api.crd import crd_yaml


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("crd", help="print the CheckoutRollout CRD (kubectl apply -f -)")
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    sys.stdout.write(crd_yaml())
    return 0
