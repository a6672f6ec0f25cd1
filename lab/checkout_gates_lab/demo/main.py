"""``checkout-gates demo``: a gated rollout of a simulated checkout service, live, on this machine.

Starts a local control plane (etcd, kube-apiserver) with the CheckoutRollout and Gateway API CRDs,
Alertmanager, a simulated checkout service whose traffic follows the HTTPRoute's weights (with the
faults of a scenario injected into the canary), Prometheus scraping it every second, and the
operator (``checkout-gates run``); applies the demo rollout (``demo/rollout.yaml``) and shows it
step by step until it is promoted, or halted and paged. Then a summary, and everything is stopped
and removed again (also on Ctrl-C or an error).

Exit codes: 0 the expected outcome (promoted without a fault, or with a fault on both variants
alike; halted or aborted and paged with a fault on the canary), 1 anything else (including an
error or the timeout), 2 the testbed is not built or the scenario is unknown, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from checkout_gates.cli.output import colour_for
from checkout_gates.rollout.annotations import annotation_key
from checkout_gates_lab.demo import DEFAULT_RATE, DEFAULT_TIMEOUT, scenarios
from checkout_gates_lab.demo.manifests import demo_rollout, manifests_yaml, rollout_template, services
from checkout_gates_lab.demo.outcome import Facts, facts
from checkout_gates_lab.demo.stack import (
    BUILD_HINT,
    DemoTestbed,
    Progress,
    Rollouts,
    Service,
    log_to_file,
    missing_components,
)
from checkout_gates_lab.demo.view import LiveView, clock, summary_lines
from checkout_gates_lab.sim.runner import Simulator, SimulatorConfig
from checkout_gates_lab.sim.scenario import Scenario, ScenarioError
from checkout_gates_lab.sim.weights import RouteTarget
from checkout_gates_lab.testbed import TestbedError

EXIT_EXPECTED, EXIT_UNEXPECTED, EXIT_SETUP, EXIT_INTERRUPTED = 0, 1, 2, 130
NAMESPACE = "checkout-demo"
NAME = "checkout-api"
ACTOR = "demo"
ALERT_WAIT = 30.0
REFRESH = 1.0


@dataclass(frozen=True)
class DemoOptions:
    fault: str | None = None
    rate: float = DEFAULT_RATE
    keep: bool = False
    timeout: float = DEFAULT_TIMEOUT
    seed: int | None = None


@dataclass
class _Run:
    """What the watch loop learnt."""

    facts: Facts | None = None
    alerts: list[dict[str, Any]] | None = None
    timed_out: bool = False


def run_demo(options: DemoOptions, out: TextIO | None = None) -> int:
    out = out if out is not None else sys.stdout
    err = sys.stderr if out is sys.stdout else out
    missing = missing_components()
    if missing:
        print("checkout-gates demo runs a local testbed, and parts of it are missing:", file=err)
        for line in missing:
            print(f"  {line}", file=err)
        print(BUILD_HINT, file=err)
        return EXIT_SETUP
    try:
        scenario = scenarios.load(options.fault or scenarios.AA)
    except ScenarioError as error:
        print(f"demo: {error}", file=err)
        return EXIT_SETUP
    compressed = scenarios.timed(scenario)
    if compressed:
        scenario = scenarios.compress(scenario)

    workdir = Path(tempfile.mkdtemp(prefix="checkout-gates-demo-"))
    _intro(out, scenario, options, workdir, compressed)
    testbed = DemoTestbed(workdir, Progress(out))
    log_stream = log_to_file(workdir / "demo.log")
    started = time.monotonic()
    code = EXIT_UNEXPECTED
    with _sigterm_as_interrupt():
        try:
            code = _run(testbed, scenario, options, out, started)
            if options.keep:
                _keep_running(testbed, out)
        except KeyboardInterrupt:
            print("\ninterrupted: stopping the demo", file=out)
            code = EXIT_INTERRUPTED
        except (TestbedError, ValueError, OSError) as error:
            print(f"\ndemo failed: {error}", file=out)
            _operator_tail(testbed, out)
            code = EXIT_UNEXPECTED
        finally:
            progress = Progress(out)
            with contextlib.suppress(KeyboardInterrupt):
                progress.run(
                    "stopping the operator, Prometheus, Alertmanager, the simulator and the cluster", testbed.stop
                )
            log_stream.close()
            if options.keep:
                print(f"kept the work directory (logs, kubeconfig): {workdir}", file=out)
            else:
                shutil.rmtree(workdir, ignore_errors=True)
    return code


def _intro(out: TextIO, scenario: Scenario, options: DemoOptions, workdir: Path, compressed: bool) -> None:
    print("checkout-gates demo: a gated rollout of a simulated checkout service, on a local control plane", file=out)
    description = f" ({scenario.description})" if scenario.description else ""
    print(f"scenario: {scenario.name}{description}", file=out)
    if compressed:
        print(f"  its fault clocks run {scenarios.TIME_COMPRESSION:g}x faster here, to fit a short rollout", file=out)
    expected = "halted or aborted, and the owner paged" if scenarios.expects_halt(scenario) else "promoted"
    print(f"traffic: {options.rate:g} checkout requests/s; expected outcome: {expected}", file=out)
    print(f"work directory: {workdir}", file=out)
    print(file=out)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops the demo the way Ctrl-C does: cleaning up."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(testbed: DemoTestbed, scenario: Scenario, options: DemoOptions, out: TextIO, started: float) -> int:
    progress = testbed.progress
    stable, canary = services(rollout_template())
    testbed.start_cluster()
    testbed.install_crds()
    testbed.add_services([Service(NAMESPACE, NAME, stable, canary)])
    alertmanager = testbed.start_alertmanager()
    traffic = testbed.start_traffic()
    config = SimulatorConfig(
        rate=options.rate,
        scenario=scenario,
        route=RouteTarget(NAME, stable, canary, namespace=NAMESPACE, kubeconfig=testbed.kubeconfig),
        port=0,
        seed=options.seed,
    )
    simulator = progress.run(
        f"starting the simulated checkout ({options.rate:g} req/s, following HTTPRoute {NAME})",
        lambda: traffic.add(config),
    )
    prometheus = testbed.start_prometheus({simulator.target: {"namespace": NAMESPACE}})
    testbed.start_operator()
    rollout = demo_rollout(name=NAME, namespace=NAMESPACE, prometheus=prometheus.url, alertmanager=alertmanager.url)
    kubectl = testbed.kubectl
    assert kubectl is not None
    progress.run(f"applying the rollout {NAMESPACE}/{NAME}", lambda: kubectl.apply(manifests_yaml(rollout)))
    print(
        f"\nwatch it from another terminal too:\n  checkout-gates status --watch -n {NAMESPACE} {NAME} "
        f"--kubeconfig {testbed.kubeconfig}\n",
        file=out,
    )
    out.flush()

    expect_halt = scenarios.expects_halt(scenario)
    run = _watch(testbed, simulator, scenario, options, out, expect_halt)
    if run.facts is None:
        print("the rollout could not be read", file=out)
        return EXIT_UNEXPECTED
    alerts = run.alerts or []
    fault_started = _first_fault(testbed, simulator)
    if expect_halt:
        ok = run.facts.halted and len(alerts) >= 1
        expected = "halted or aborted, and paged"
    else:
        ok = run.facts.phase == "Promoted"
        expected = "promoted"
    if run.timed_out:
        print(f"\ntimed out after {clock(options.timeout)} (phase {run.facts.phase})", file=out)
        ok = False
    lines = summary_lines(
        run.facts,
        expected=expected,
        ok=ok,
        elapsed=time.monotonic() - started,
        fault_started=fault_started,
        alerts=alerts,
        alertmanager=alertmanager.url,
        colour=colour_for(out),
    )
    print("\n".join(lines), file=out)
    if expect_halt and run.facts.phase == "Promoted":
        print(
            f"\nthe gates did not catch this fault at {options.rate:g} requests/s: 1 % of that traffic carries too few of "
            "the fault's events within a step's window. Try a higher --rate (the end-to-end test halts every "
            "scenario at its first step with 80000).",
            file=out,
        )
    out.flush()
    return EXIT_EXPECTED if ok else EXIT_UNEXPECTED


def _first_fault(testbed: DemoTestbed, simulator: Simulator) -> datetime | None:
    if testbed.traffic is None:
        return None
    moments = [t for t in testbed.traffic.fault_started_at(simulator).values() if t is not None]
    return datetime.fromtimestamp(min(moments), UTC) if moments else None


def _header(simulator: Simulator, scenario: Scenario, elapsed: float) -> list[str]:
    flags = simulator.engine.schedule.flags()
    active = [name for name, on in flags.items() if on]
    faults = f"fault active: {', '.join(active)}" if active else ("no fault active" if flags else "no fault (A/A)")
    return [
        f"checkout-gates demo  scenario {scenario.name}  elapsed {clock(elapsed)}",
        f"simulated traffic: {simulator.config.rate:g} req/s, canary share {simulator.weights.weight():.1f}%  ({faults})",
    ]


def _watch(
    testbed: DemoTestbed,
    simulator: Simulator,
    scenario: Scenario,
    options: DemoOptions,
    out: TextIO,
    expect_halt: bool,
) -> _Run:
    rollouts = Rollouts(testbed.kubeconfig)
    alertmanager = testbed.alertmanager
    assert alertmanager is not None
    live = LiveView(out)
    begun = time.monotonic()
    deadline = begun + options.timeout
    approved: set[int] = set()
    run = _Run()
    halted_since: float | None = None
    errors = 0
    while True:
        now = time.monotonic()
        try:
            raw = rollouts.get(NAMESPACE, NAME)
            errors = 0
        except Exception as error:  # the API server is local; a blip is retried, a lasting failure is not
            errors += 1
            if errors >= 10:
                raise TestbedError(f"cannot read the rollout: {error}") from error
            time.sleep(REFRESH)
            continue
        current = facts(raw)
        run.facts = current
        live.show(raw, _header(simulator, scenario, now - begun))
        if current.phase == "AwaitingApproval" and current.status.current_step not in approved:
            approved.add(current.status.current_step)
            rollouts.annotate(NAMESPACE, NAME, annotation_key("approve"), ACTOR)
            live.note(
                f"approved step {current.status.current_step} as `{ACTOR}`: kubectl annotate cro/{NAME} "
                f"-n {NAMESPACE} {annotation_key('approve')}={ACTOR}"
            )
        if current.halted:
            halted_since = halted_since or now
            run.alerts = alertmanager.alerts(rollout=NAME, namespace=NAMESPACE)
            if run.alerts or now - halted_since > ALERT_WAIT:
                if run.alerts:
                    live.note(f"the page reached Alertmanager: {len(run.alerts)} alert(s)")
                    live.show(raw, _header(simulator, scenario, now - begun))
                return run
        elif current.phase == "Promoted":
            return run
        if now > deadline:
            run.timed_out = True
            return run
        time.sleep(REFRESH)


def _keep_running(testbed: DemoTestbed, out: TextIO) -> None:
    print("\n--keep: everything stays up until Ctrl-C:", file=out)
    print(f"  kubeconfig    {testbed.kubeconfig}", file=out)
    if testbed.prometheus is not None:
        print(f"  Prometheus    {testbed.prometheus.url}", file=out)
    if testbed.alertmanager is not None:
        print(f"  Alertmanager  {testbed.alertmanager.url}", file=out)
    print(f"  operator log  {testbed.operator_log}", file=out)
    print(f"  checkout-gates status -n {NAMESPACE} {NAME} --kubeconfig {testbed.kubeconfig}", file=out)
    out.flush()
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)


def _operator_tail(testbed: DemoTestbed, out: TextIO, lines: int = 20) -> None:
    path = testbed.operator_log
    if not path.is_file():
        return
    tail = path.read_text(errors="replace").splitlines()[-lines:]
    if tail:
        print(f"--- the last {len(tail)} lines of the operator's log ---", file=out)
        print("\n".join(tail), file=out)
