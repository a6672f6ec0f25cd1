"""``python -m checkout_gates_lab.sim``: the simulated checkout service (same options as ``checkout-gates simulate``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from checkout_gates_lab.sim import options

DESCRIPTION = "Simulated checkout traffic for a stable and a canary variant, with Prometheus metrics."


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m checkout_gates_lab.sim", description=DESCRIPTION)
    options.add_arguments(parser)
    return options.main(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
