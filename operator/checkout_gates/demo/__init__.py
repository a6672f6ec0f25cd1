"""The local demo (``checkout-gates demo``) and its building blocks, shared with the end-to-end tests.

``stack`` starts and stops the moving parts (control plane, CRDs, Alertmanager, simulators,
Prometheus, operator); ``manifests`` holds the demo rollout (package data ``rollout.yaml``) and the
HTTPRoute; ``scenarios`` finds the fault scenarios (package copies of ``examples/scenarios/``);
``outcome`` reads what became of a rollout; ``view`` prints it; ``main`` runs the demo.

This module itself imports nothing heavy, so that the CLI can build its help quickly.
"""

from __future__ import annotations

from importlib import resources

# Simulated checkout requests per second. At 1 % exposure the canary then serves 10 a second, so a
# fault as rare as duplicate charges (0.5 % of payments) shows up within a step or two; at 200 a
# second the demo's short windows would let such a canary through now and then.
DEFAULT_RATE = 1000.0
DEFAULT_TIMEOUT = 600.0  # seconds


def scenario_names() -> list[str]:
    """The names of the scenarios shipped with the package (copies of examples/scenarios/), sorted."""
    folder = resources.files(__name__).joinpath("scenarios")
    return sorted(entry.name.removesuffix(".yaml") for entry in folder.iterdir() if entry.name.endswith(".yaml"))
