"""``checkout-gates crd``: print the CustomResourceDefinition generated from the API models."""

from __future__ import annotations

import argparse
import sys

from checkout_gates.api.crd import crd_yaml, freeze_crd_yaml


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("crd", help="print the CheckoutRollout CRD (kubectl apply -f -)")
    parser.add_argument("--freeze", action="store_true", help="print the CheckoutFreeze CRD instead")
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    sys.stdout.write(freeze_crd_yaml() if arguments.freeze else crd_yaml())
    return 0
