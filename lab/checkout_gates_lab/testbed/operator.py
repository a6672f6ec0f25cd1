"""The operator's command line on the testbed, shared by the demo, the tests and the benchmarks."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path


def operator_argv(
    kubeconfig: Path,
    *,
    health_address: str,
    metrics_address: str,
    log_level: str = "info",
    extra: Sequence[str] = (),
    python: Sequence[str] = (),
) -> list[str]:
    """``checkout-gates run`` under this interpreter; ``python`` adds interpreter options (a profiler)."""
    return [
        sys.executable,
        *python,
        "-m",
        "checkout_gates.cli.main",
        "run",
        "--kubeconfig",
        str(kubeconfig),
        "--health-address",
        health_address,
        "--metrics-address",
        metrics_address,
        "--log-level",
        log_level,
        *extra,
    ]
