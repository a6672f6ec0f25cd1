"""A simulated checkout service for the demo, the end-to-end tests and the benchmarks.

The engine (``Engine``) is pure: rate, canary weight, scenario and seed in, counts out. The
``Simulator`` steps it in real time, serves its metrics over HTTP and follows a fixed weight or
an HTTPRoute's weights.

From the command line (``checkout-gates simulate`` takes the same options)::

    python -m checkout_gates_lab.sim --port 9100 --rate 50 --canary-weight 10 \
        --scenario examples/scenarios/duplicate-charges.yaml --seed 1 --duration 600
    python -m checkout_gates_lab.sim --port 9100 --rate 50 --kubeconfig admin.kubeconfig --namespace payments \
        --http-route checkout-api --stable-service checkout-api-stable --canary-service checkout-api-canary

From Python, on a running event loop::

    config = SimulatorConfig(rate=50, port=0, seed=1, scenario=load_scenario(path),
                             route=RouteTarget("checkout-api", "checkout-api-stable", "checkout-api-canary",
                                               namespace="payments", kubeconfig=kubeconfig))
    async with Simulator(config) as sim:    # sim.target == "127.0.0.1:<port>", sim.url == ".../metrics"
        ...

Without a server, for tests and benchmarks::

    engine = Engine(load_scenario(path), rate=50, seed=1, tick=1.0)
    totals = engine.run(600, canary_weight=5)   # or a function of elapsed seconds
    totals.count(catalog.ATTEMPTS, variant="canary") - totals.count(catalog.COMPLETIONS, variant="canary")
"""

from checkout_gates_lab.sim.model import Engine
from checkout_gates_lab.sim.runner import Simulator, SimulatorConfig, run
from checkout_gates_lab.sim.scenario import Scenario, ScenarioError, load_scenario, parse_scenario
from checkout_gates_lab.sim.totals import Tick, Totals
from checkout_gates_lab.sim.weights import FixedWeight, RouteTarget, RouteWeights

__all__ = [
    "Engine",
    "FixedWeight",
    "RouteTarget",
    "RouteWeights",
    "Scenario",
    "ScenarioError",
    "Simulator",
    "SimulatorConfig",
    "Tick",
    "Totals",
    "load_scenario",
    "parse_scenario",
    "run",
]
