"""Every fault scenario of examples/scenarios/ end to end, all at once, through the demo's path.

One testbed (kube-apiserver, Alertmanager, Prometheus, one operator) and, per scenario, a namespace,
an HTTPRoute, a simulated checkout service following that route's weights with the scenario's
faults, and the demo rollout (``lab/checkout_gates_lab/demo/rollout.yaml``) with a schedule of its own. Each
faulted canary must halt before its exposure passes the step where its fault began, and page once;
``aa`` must be promoted; ``shared-provider-outage`` (both variants alike) must never be aborted.

The table of outcomes is printed (``pytest -s``). It is written into a results file (between the
``scenarios`` markers) only when ``CHECKOUT_GATES_RESULTS`` names one, as the benchmark command in
bench/RESULTS.md does: a plain test run leaves the work tree as it found it.

Traffic and schedule: the demo runs 1,000 requests/s with pass windows 30/25/25 s; here every
service runs 80,000 requests/s and the first step (1 %) holds 60 s, so that 1 % of the traffic
carries enough events to judge even the rarest signal within that step (adyen refunds: about 14 a
second at 1 %, of which 0.1 fail when healthy and 0.8 under the fault), and the later windows are
20 s. The rate costs nothing: the simulator draws counts, not requests. Scenario clocks run 10x
faster (the shared outage starts 30 s in and lasts 60 s).
"""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from checkout_gates.rollout.annotations import annotation_key
from checkout_gates_lab.demo import scenarios
from checkout_gates_lab.demo.manifests import demo_rollout, manifests_yaml, rollout_template, services
from checkout_gates_lab.demo.outcome import Facts, facts
from checkout_gates_lab.demo.stack import DemoTestbed, Progress, Rollouts, Service, log_to_file, missing_components
from checkout_gates_lab.demo.view import clock
from checkout_gates_lab.sim.runner import Simulator, SimulatorConfig
from checkout_gates_lab.sim.scenario import Scenario, load_scenario
from checkout_gates_lab.sim.weights import RouteTarget

pytestmark = [pytest.mark.integration, pytest.mark.slow]
# From the route's patch to the history entry of the step it completes (the confirming pass).
CONFIRMATION_LAG = timedelta(seconds=5)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "scenarios"
START, END = "<!-- scenarios:start -->", "<!-- scenarios:end -->"
RATE = 80_000.0
WINDOWS = ("60s", "20s", "20s")
ROUTE = "checkout-api"
DEADLINE = 420.0  # seconds for every rollout to be decided (about 2 minutes on an idle 2-core machine)
PROMOTES = {"aa"}
NEVER_ABORTS = {"shared-provider-outage"}


@dataclass
class Case:
    name: str
    scenario: Scenario
    namespace: str
    simulator: Simulator | None = None
    facts: Facts | None = None
    alerts: int = 0
    fault_at: datetime | None = None  # when its first fault became active
    trace: list[str] = field(default_factory=list)  # phase, step and verdict, on every change

    def observe(self, seconds: float, current: Facts) -> None:
        status = current.status
        line = f"{status.phase} step {status.current_step} canary {status.weights.canary}% {status.verdict or '-'}"
        worst = next((g for g in status.gates if g.verdict != "Pass"), None)
        if worst is not None:
            line += f" ({worst.reason[:100]})"
        if not self.trace or not self.trace[-1].endswith(line):
            self.trace.append(f"+{seconds:5.0f}s {line}")

    @property
    def expected(self) -> str:
        if self.name in PROMOTES:
            return "promoted"
        if self.name in NEVER_ABORTS:
            return "not aborted"
        return "halted at the fault's step"

    def fault_weight(self) -> int | None:
        """The exposure in force when the fault began (a fault before the first step: that step's).

        History records a setWeight step once the router has confirmed it, a pass after the route
        was patched; the simulators see the patched route at once (a fault ``atCanaryWeight`` begins
        then). So the weight in force is read at the fault's moment plus that lag."""
        if self.fault_at is None or self.facts is None:
            return None
        weight = self.facts.weight_at(self.fault_at + CONFIRMATION_LAG)
        return weight if weight > 0 else first_weight()


def first_weight() -> int:
    return int(next(s["setWeight"] for s in rollout_template()["spec"]["steps"] if "setWeight" in s))


def test_every_scenario_halts_in_time_concurrently(tmp_path: Path) -> None:
    missing = missing_components()
    if missing:
        message = "testbed not built: " + "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    cases = [
        Case(path.stem, scenarios.compress(load_scenario(path)), f"e2e-{path.stem}")
        for path in sorted(EXAMPLES.glob("*.yaml"))
    ]
    assert {c.name for c in cases} >= PROMOTES | NEVER_ABORTS
    began = time.monotonic()
    log = log_to_file(tmp_path / "simulators.log")
    testbed = DemoTestbed(tmp_path / "testbed", Progress(sys.stdout))
    try:
        run_all(testbed, cases)
    finally:
        testbed.stop()
        log.close()
        print(f"\noperator log: {testbed.operator_log}")
    wall = time.monotonic() - began

    for case in cases:
        print(f"\n{case.name}: " + "\n  ".join(case.trace))
    table = results_table(cases)
    print("\n" + table)
    results = os.environ.get("CHECKOUT_GATES_RESULTS")
    if results:
        write_results(Path(results), table, wall)
    check(cases)


def run_all(testbed: DemoTestbed, cases: list[Case]) -> None:
    stable, canary = services(rollout_template())
    testbed.start_cluster()
    testbed.install_crds()
    testbed.add_services([Service(c.namespace, ROUTE, stable, canary) for c in cases])
    alertmanager = testbed.start_alertmanager()
    traffic = testbed.start_traffic()

    def simulators() -> None:
        for seed, case in enumerate(cases, start=1):
            route = RouteTarget(ROUTE, stable, canary, namespace=case.namespace, kubeconfig=testbed.kubeconfig)
            config = SimulatorConfig(rate=RATE, scenario=case.scenario, route=route, port=0, seed=seed)
            case.simulator = traffic.add(config)

    testbed.progress.run(f"starting {len(cases)} simulated checkout services ({RATE:,.0f} req/s each)", simulators)
    prometheus = testbed.start_prometheus(
        {c.simulator.target: {"namespace": c.namespace} for c in cases if c.simulator is not None}
    )
    testbed.start_operator()
    documents = [
        demo_rollout(
            name=ROUTE,
            namespace=c.namespace,
            prometheus=prometheus.url,
            alertmanager=alertmanager.url,
            windows=WINDOWS,
        )
        for c in cases
    ]
    kubectl = testbed.kubectl
    assert kubectl is not None
    testbed.progress.run(f"applying {len(documents)} rollouts", lambda: kubectl.apply(manifests_yaml(*documents)))

    rollouts = Rollouts(testbed.kubeconfig)
    by_namespace = {c.namespace: c for c in cases}
    applied = time.monotonic()
    deadline = applied + DEADLINE
    while time.monotonic() < deadline:
        for raw in rollouts.list():
            case = by_namespace.get(raw["metadata"]["namespace"])
            if case is None:
                continue
            case.facts = facts(raw)
            case.observe(time.monotonic() - applied, case.facts)
            if case.facts.phase == "AwaitingApproval" and not raw["metadata"].get("annotations", {}).get(
                annotation_key("approve")
            ):
                rollouts.annotate(case.namespace, ROUTE, annotation_key("approve"), "e2e")
        if all(c.facts is not None and c.facts.decided for c in cases):
            break
        time.sleep(1.0)
    time.sleep(3.0)  # pages go out after the halt is written
    for case in cases:
        case.facts = facts(rollouts.get(case.namespace, ROUTE))
        case.alerts = len(alertmanager.alerts(rollout=ROUTE, namespace=case.namespace))
        if case.simulator is not None:
            moments = [t for t in traffic.fault_started_at(case.simulator).values() if t is not None]
            case.fault_at = datetime.fromtimestamp(min(moments), UTC) if moments else None


def outcome_cells(case: Case) -> list[str]:
    f = case.facts
    if f is None:
        return [case.name, case.expected, "never read", "-", "-", "-", "-", "-", "-"]
    fault = "-"
    if case.fault_at is not None and f.started_at is not None:
        offset = (case.fault_at - f.started_at).total_seconds()
        fault = f"{case.fault_weight()}% ({'before the start' if offset <= 0 else f'+{clock(offset)}'})"
    elif case.scenario.faults:
        fault = "not begun"
    outcome = f.phase if f.decided else f"{f.phase} (undecided)"
    where = f"step {f.step}, {f.weight}%"
    to_halt = "-"
    if f.halted and f.decided_at is not None and f.started_at is not None:
        since = max(case.fault_at, f.started_at) if case.fault_at else f.started_at
        to_halt = clock((f.decided_at - since).total_seconds())
    took = f.seconds()
    total = clock(took) if took is not None else "-"
    return [
        case.name,
        case.expected,
        outcome,
        where,
        fault,
        f.gate or "-",
        f.segment or "-",
        to_halt,
        total,
        str(case.alerts),
    ]


HEADERS = (
    "scenario",
    "expected",
    "outcome",
    "stopped at",
    "fault began at",
    "gate",
    "segment",
    "time to halt",
    "rollout time",
    "pages",
)


def results_table(cases: list[Case]) -> str:
    rows = [outcome_cells(c) for c in cases]
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "|".join(":--" for _ in HEADERS) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(results: Path, table: str, wall: float) -> None:
    rollout = rollout_template()
    gates = ", ".join(g["name"] for g in rollout["spec"]["gates"])
    section = "\n".join(
        [
            START,
            "## Scenarios end to end",
            "",
            "Command: `. hack/testbed-env.sh && CHECKOUT_GATES_RESULTS=bench/RESULTS.md "
            ".venv/bin/pytest -m slow -s tests/integration/test_scenarios_e2e.py`  ",
            f"Machine: nproc {os.cpu_count()}, Python {platform.python_version()}, {platform.system()} "
            f"{platform.release()}  ",
            f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; wall time {clock(wall)} for all scenarios at once.",
            "",
            f"Every scenario of `examples/scenarios/` at the same time on one testbed (kube-apiserver, one "
            f"operator, one Prometheus scraping every simulator each second, Alertmanager): per scenario a "
            f"namespace, an HTTPRoute, a simulated checkout service at {RATE:,.0f} requests/s following the "
            f"route's weights, and the demo rollout (`lab/checkout_gates_lab/demo/rollout.yaml`: gates "
            f"{gates}; steps 1% → 5% → approval → 25% → 100%) with pass windows "
            f"{' / '.join(WINDOWS)} and a 5 s analysis interval. Scenario clocks run "
            f"{scenarios.TIME_COMPRESSION:g}x faster. *stopped at*: the step and the highest canary weight "
            "reached (an abort then sets 0 %); *fault began at*: the exposure in force when the fault became "
            "active; *time to halt*: from the fault becoming active (or the rollout's start, if later) to the "
            "halt; *pages*: alerts in Alertmanager for the rollout.",
            "",
            table,
            END,
        ]
    )
    text = results.read_text(encoding="utf-8") if results.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    found = pattern.search(text)
    text = pattern.sub(lambda _: section, text) if found else text.rstrip("\n") + "\n\n" + section + "\n"
    results.write_text(text, encoding="utf-8")


def check(cases: list[Case]) -> None:
    problems: list[str] = []
    for case in cases:
        f = case.facts
        if f is None:
            problems.append(f"{case.name}: never read")
            continue
        if case.name in PROMOTES:
            if f.phase != "Promoted":
                problems.append(f"{case.name}: {f.phase}, expected Promoted ({f.status.halt_reason})")
            continue
        if case.name in NEVER_ABORTS:
            if f.phase == "Aborted" or any(e.action == "Aborted" for e in f.status.history):
                problems.append(f"{case.name}: aborted ({f.status.halt_reason})")
            continue
        if not (f.decided and f.halted):
            problems.append(f"{case.name}: {f.phase}, expected a halt")
            continue
        limit = case.fault_weight()
        if limit is None:
            problems.append(f"{case.name}: its fault never began")
        elif f.weight > limit:
            problems.append(f"{case.name}: halted at {f.weight}%, past the {limit}% step where its fault began")
        if case.alerts != 1:
            problems.append(f"{case.name}: {case.alerts} alerts in Alertmanager, expected exactly 1")
    assert not problems, "\n".join(problems)
