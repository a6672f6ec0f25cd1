"""The demo's fault scenarios: found by name or path, their clocks compressed, their expected outcome.

A name is a file of ``examples/scenarios/`` (see :func:`checkout_gates_lab.demo.scenarios_folder`);
any other scenario is given by its path.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from checkout_gates_lab.demo import scenario_names, scenarios_folder
from checkout_gates_lab.sim.scenario import Scenario, ScenarioError, load_scenario, parse_scenario

AA = "aa"
__all__ = ["AA", "TIME_COMPRESSION", "compress", "expects_halt", "load", "scenario_names", "timed"]
# Scenario clocks run this much faster in the demo: a fault "after 300 s, for 600 s" starts 30 s
# after the simulator and lasts 60 s, so that it happens within a rollout of two minutes.
TIME_COMPRESSION = 10.0


def load(name_or_path: str) -> Scenario:
    """A shipped scenario by name (``duplicate-charges``), or a scenario file by path.

    Raises ScenarioError (unknown name, unreadable or invalid file)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or "/" in name_or_path:
        return load_scenario(path)
    entry = scenarios_folder() / f"{name_or_path}.yaml"
    if not entry.is_file():
        known = ", ".join(scenario_names()) or f"none in {scenarios_folder()}"
        raise ScenarioError(name_or_path, [f"no such scenario (known: {known}; or give a path to a YAML file)"])
    data = yaml.safe_load(entry.read_text(encoding="utf-8"))
    if isinstance(data, dict) and "name" not in data:
        data = {**data, "name": name_or_path}
    return parse_scenario(data, str(entry))


def compress(scenario: Scenario, factor: float = TIME_COMPRESSION) -> Scenario:
    """The scenario with its fault clocks (``afterSeconds``, ``forSeconds``) divided by ``factor``."""
    faults = []
    for fault in scenario.faults:
        update: dict[str, object] = {}
        if fault.start.after_seconds:
            update["start"] = fault.start.model_copy(update={"after_seconds": fault.start.after_seconds / factor})
        if fault.for_seconds is not None:
            update["for_seconds"] = fault.for_seconds / factor
        faults.append(fault.model_copy(update=update))
    return scenario.model_copy(update={"faults": tuple(faults)})


def timed(scenario: Scenario) -> bool:
    """Whether any fault starts after a time or lasts for a time (so compression changes it)."""
    return any(fault.start.after_seconds or fault.for_seconds is not None for fault in scenario.faults)


def expects_halt(scenario: Scenario) -> bool:
    """Whether the gates should stop this canary: some fault hits the canary alone.

    A fault on both variants (a provider outage) is not the canary's fault: gates that compare the
    canary with stable must let it through. No fault at all is an A/A run: it must be promoted.
    """
    return any(fault.variant == "canary" for fault in scenario.faults)
