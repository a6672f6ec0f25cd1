"""The local demo (``checkout-gates demo``) and its building blocks, shared with the end-to-end tests.

``stack`` starts and stops the moving parts (control plane, CRDs, Alertmanager, simulators,
Prometheus, operator); ``manifests`` holds the demo rollout (package data ``rollout.yaml``) and the
HTTPRoute; ``scenarios`` finds the fault scenarios (the repository's ``examples/scenarios/``);
``outcome`` reads what became of a rollout; ``view`` prints it; ``main`` runs the demo.

This module itself imports nothing heavy, so that the CLI can build its help quickly.
"""

from __future__ import annotations

import os
from pathlib import Path

# Simulated checkout requests per second. At 1 % exposure the canary then serves 10 a second, so a
# fault as rare as duplicate charges (0.5 % of payments) shows up within a step or two; at 200 a
# second the demo's short windows would let such a canary through now and then.
DEFAULT_RATE = 1000.0
DEFAULT_TIMEOUT = 600.0  # seconds


def scenarios_folder() -> Path:
    """Where the named scenarios are: ``$CHECKOUT_GATES_SCENARIOS``, else the repository's ``examples/scenarios/``.

    The lab is installed from the repository (editable), so the examples beside it are the one copy."""
    configured = os.environ.get("CHECKOUT_GATES_SCENARIOS")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[3] / "examples" / "scenarios"


def scenario_names() -> list[str]:
    """The names of the scenarios in :func:`scenarios_folder`, sorted (none if it is not there)."""
    folder = scenarios_folder()
    if not folder.is_dir():
        return []
    return sorted(entry.stem for entry in folder.glob("*.yaml"))
