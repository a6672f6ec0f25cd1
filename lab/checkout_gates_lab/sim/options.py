"""Command-line options of the simulator, shared by ``python -m checkout_gates_lab.sim`` and
``checkout-gates simulate``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from checkout_gates_lab.sim.runner import SimulatorConfig, run
from checkout_gates_lab.sim.scenario import Scenario, ScenarioError, load_scenario
from checkout_gates_lab.sim.weights import RouteTarget, WeightError

EXIT_USAGE = 2


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return value


def _percent(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be within 0..100, not {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=9100, help="metrics port (0: any free port; default 9100)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--rate", type=_non_negative, default=50.0, help="checkout requests per second (default 50)")
    parser.add_argument("--scenario", type=Path, help="scenario YAML of faults (default: none, an A/A run)")
    parser.add_argument("--seed", type=int, help="random seed, for a reproducible run")
    parser.add_argument("--duration", type=_positive, help="stop after this many seconds (default: run until stopped)")
    parser.add_argument("--tick", type=_positive, default=0.1, help="seconds per simulation tick (default 0.1)")
    share = parser.add_argument_group("canary share: a fixed weight, or the weights of an HTTPRoute")
    share.add_argument("--canary-weight", type=_percent, help="the canary's percentage of traffic (default 0)")
    share.add_argument("--http-route", help="follow this HTTPRoute's backendRef weights (read every second)")
    share.add_argument("--stable-service", help="the stable Service named in the route's backendRefs")
    share.add_argument("--canary-service", help="the canary Service named in the route's backendRefs")
    share.add_argument("--namespace", default="default", help="the HTTPRoute's namespace (default: default)")
    share.add_argument("--kubeconfig", type=Path, help="kubeconfig (default: $KUBECONFIG or ~/.kube/config)")


def config_from(arguments: argparse.Namespace) -> SimulatorConfig:
    """The configuration the options describe; raises ValueError or ScenarioError."""
    scenario = load_scenario(arguments.scenario) if arguments.scenario else Scenario(name="aa")
    route = None
    if not arguments.http_route:
        stray = [
            flag
            for flag, value in (
                ("--stable-service", arguments.stable_service),
                ("--canary-service", arguments.canary_service),
                ("--kubeconfig", arguments.kubeconfig),
            )
            if value
        ]
        if stray:
            raise ValueError(f"{', '.join(stray)} only go with --http-route")
    else:
        if arguments.canary_weight is not None:
            raise ValueError("--canary-weight and --http-route exclude each other")
        if not (arguments.stable_service and arguments.canary_service):
            raise ValueError("--http-route needs --stable-service and --canary-service")
        if arguments.kubeconfig and not arguments.kubeconfig.is_file():
            raise ValueError(f"--kubeconfig {arguments.kubeconfig}: no such file")
        route = RouteTarget(
            http_route=arguments.http_route,
            stable_service=arguments.stable_service,
            canary_service=arguments.canary_service,
            namespace=arguments.namespace,
            kubeconfig=arguments.kubeconfig,
        )
    return SimulatorConfig(
        rate=arguments.rate,
        scenario=scenario,
        canary_weight=arguments.canary_weight or 0.0,
        route=route,
        port=arguments.port,
        host=arguments.host,
        seed=arguments.seed,
        duration=arguments.duration,
        tick=arguments.tick,
    )


def main(arguments: argparse.Namespace) -> int:
    """Run the simulator the options describe; exit status 2 on bad options or a bad scenario."""
    try:
        config = config_from(arguments)
    except (ScenarioError, ValueError) as error:
        print(f"simulate: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return asyncio.run(run(config))
    except (OSError, WeightError) as error:  # the port is taken; no kubeconfig
        print(f"simulate: {error}", file=sys.stderr)
        return 1
