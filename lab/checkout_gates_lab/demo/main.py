"""``checkout-gates demo``: a gated rollout of a simulated checkout service, live, on this machine.

Starts a local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
kwok's simulated nodes, so that Deployments really roll) with the CheckoutRollout and Gateway API
CRDs, Alertmanager, a simulated checkout service whose traffic follows the HTTPRoute's weights,
Prometheus scraping it every second, and the operator (``checkout-gates run``). The release story:
the Deployment ``checkout-api`` runs ``checkout:v1``; the demo rollout (``demo/rollout.yaml`` with
a ``workloadRef``) adopts it as stable; then ``kubectl set image`` deploys ``checkout:v2`` (with a
fault scenario, ``checkout:v2-<scenario>``: the simulated canary has the scenario's faults only
while its pods run that image) and the rollout starts by itself. It ends with v2 stable, or
halted and paged, aborted by the demo as on-call, v1 still stable and v2 scaled down. Then a
summary, and everything is stopped and removed again (also on Ctrl-C or an error).

Exit codes: 0 the expected outcome (promoted without a fault, or with a fault on both variants
alike; halted or aborted and paged with a fault on the canary), 1 anything else (including an
error or the timeout), 2 the testbed is not built or the scenario is unknown, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import re
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
from checkout_gates_lab.demo.manifests import demo_rollout, manifests_yaml, rollout_template, services, workload
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
from checkout_gates_lab.sim.revision import RevisionTarget
from checkout_gates_lab.sim.runner import Simulator, SimulatorConfig
from checkout_gates_lab.sim.scenario import Scenario, ScenarioError
from checkout_gates_lab.sim.weights import RouteTarget
from checkout_gates_lab.testbed import TestbedError, wait_until

EXIT_EXPECTED, EXIT_UNEXPECTED, EXIT_SETUP, EXIT_INTERRUPTED = 0, 1, 2, 130
NAMESPACE = "checkout-demo"
NAME = "checkout-api"
ACTOR = "demo"
ALERT_WAIT = 30.0
REFRESH = 1.0
STABLE_IMAGE = "checkout:v1"
RELEASE_IMAGE = "checkout:v2"
ADOPTION_WAIT = 180.0  # seconds for the first revision to be copied to stable and take the traffic
SCALE_DOWN_WAIT = 60.0


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
    testbed.start_cluster(workloads=True)
    testbed.install_crds()
    testbed.add_services([Service(NAMESPACE, NAME, stable, canary)])
    kubectl = testbed.kubectl
    assert kubectl is not None

    def deploy() -> None:
        kubectl.apply(manifests_yaml(*workload(NAME, NAMESPACE, STABLE_IMAGE, stable, canary)))
        kubectl("rollout", "status", f"deployment/{NAME}", "-n", NAMESPACE, "--timeout=120s")

    progress.run(f"deploying {NAME} {STABLE_IMAGE} (3 replicas on kwok's nodes)", deploy)
    alertmanager = testbed.start_alertmanager()
    traffic = testbed.start_traffic()
    release_image = release_image_for(scenario)
    config = SimulatorConfig(
        rate=options.rate,
        scenario=scenario,
        route=RouteTarget(NAME, stable, canary, namespace=NAMESPACE, kubeconfig=testbed.kubeconfig),
        revision=RevisionTarget(NAMESPACE, f"app={NAME}", _marker(scenario), kubeconfig=testbed.kubeconfig),
        port=0,
        seed=options.seed,
    )
    simulator = progress.run(
        f"starting the simulated checkout ({options.rate:g} req/s, following HTTPRoute {NAME})",
        lambda: traffic.add(config),
    )
    prometheus = testbed.start_prometheus({simulator.target: {"namespace": NAMESPACE}})
    testbed.start_operator()
    rollout = demo_rollout(
        name=NAME, namespace=NAMESPACE, prometheus=prometheus.url, alertmanager=alertmanager.url, workload=NAME
    )
    progress.run(f"applying the rollout {NAMESPACE}/{NAME}", lambda: kubectl.apply(manifests_yaml(rollout)))
    progress.run(f"adopting {STABLE_IMAGE} as the stable revision ({NAME}-stable)", lambda: _adopted(testbed))
    print(
        f"\nwatch it from another terminal too:\n  checkout-gates status --watch -n {NAMESPACE} {NAME} "
        f"--kubeconfig {testbed.kubeconfig}\n",
        file=out,
    )
    print(f"deploying the new version, as a release engineer would:\n  {_set_image_command(release_image)}\n", file=out)
    out.flush()
    kubectl("set", "image", f"deployment/{NAME}", f"app={release_image}", "-n", NAMESPACE)

    expect_halt = scenarios.expects_halt(scenario)
    run = _watch(testbed, simulator, scenario, options, out, release_image)
    if run.facts is None:
        print("the rollout could not be read", file=out)
        return EXIT_UNEXPECTED
    alerts = run.alerts or []
    fault_started = _first_fault(testbed, simulator)
    stable_images = _stable_images(run.facts)
    canary_replicas = _replicas(testbed)
    if expect_halt:
        ok = run.facts.halted and len(alerts) >= 1 and stable_images == [STABLE_IMAGE] and canary_replicas == 0
        expected = f"halted or aborted, and paged; {STABLE_IMAGE} still stable, {release_image} scaled down"
    else:
        ok = run.facts.phase == "Promoted" and stable_images == [release_image] and canary_replicas == 0
        expected = f"promoted: {release_image} stable"
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
        release=_release_lines(run.facts, canary_replicas),
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


def release_image_for(scenario: Scenario) -> str:
    """The image the demo deploys: a faulty build's tag names its scenario (the simulator reads it)."""
    return RELEASE_IMAGE + _marker(scenario) if scenarios.expects_halt(scenario) else RELEASE_IMAGE


def _marker(scenario: Scenario) -> str:
    return "-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", scenario.name).strip("-.")[:100] or "faulty")


def _set_image_command(image: str) -> str:
    return f"kubectl set image deployment/{NAME} app={image} -n {NAMESPACE}"


def _adopted(testbed: DemoTestbed) -> None:
    rollouts = Rollouts(testbed.kubeconfig)

    def stable() -> bool:
        return _stable_images(facts(rollouts.get(NAMESPACE, NAME))) == [STABLE_IMAGE]

    wait_until(stable, timeout=ADOPTION_WAIT, what=f"{STABLE_IMAGE} adopted as stable", process=testbed.operator)


def _stable_images(current: Facts) -> list[str]:
    revisions = current.status.revisions
    return list(revisions.stable.images) if revisions is not None and revisions.stable is not None else []


def _replicas(testbed: DemoTestbed) -> int | None:
    """The Deployment's (the canary's) replicas; None when it cannot be read."""
    kubectl = testbed.kubectl
    try:
        return int(kubectl.json("get", "deployment", NAME, "-n", NAMESPACE)["spec"]["replicas"]) if kubectl else None
    except (TestbedError, KeyError, ValueError, TypeError):
        return None


def _release_lines(current: Facts, canary_replicas: int | None) -> list[str]:
    revisions = current.status.revisions
    if revisions is None or revisions.stable is None:
        return []
    stable = revisions.stable
    lines = [f"stable:    revision {stable.hash} ({', '.join(stable.images)}) on {NAME}-stable"]
    replicas = "unknown" if canary_replicas is None else str(canary_replicas)
    lines.append(f"canary:    Deployment {NAME} at {replicas} replicas")
    return lines


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
    release_image: str,
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
    aborted = False
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
            if run.alerts is None or not run.alerts:
                run.alerts = alertmanager.alerts(rollout=NAME, namespace=NAMESPACE)
                if run.alerts:
                    live.note(f"the page reached Alertmanager: {len(run.alerts)} alert(s)")
            if run.alerts and current.phase == "Halted" and not aborted:
                # On-call's answer to the page: stop exposure; the canary is scaled down once it has no traffic.
                rollouts.annotate(NAMESPACE, NAME, annotation_key("abort"), ACTOR)
                aborted = True
                live.note(
                    f"aborted as on-call `{ACTOR}`: kubectl annotate cro/{NAME} -n {NAMESPACE} {annotation_key('abort')}={ACTOR}"
                )
            scaled_down = current.phase == "Aborted" and _replicas(testbed) == 0
            waited = now - halted_since
            if (
                (run.alerts and scaled_down)
                or waited > ALERT_WAIT + SCALE_DOWN_WAIT
                or (not run.alerts and waited > ALERT_WAIT)
            ):
                live.show(raw, _header(simulator, scenario, now - begun))
                return run
        elif current.phase == "Promoted" and _stable_images(current) == [release_image] and _replicas(testbed) == 0:
            live.show(raw, _header(simulator, scenario, now - begun))
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
