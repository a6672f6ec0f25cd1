"""The operator killed (SIGKILL) at each crash point of the reconcile pass, then started again:
the rollout finishes as if nothing happened.

Each point gets its own operator process (the crash variable is process-wide) watching only its
own rollout's namespace (``-n``), so all points run at once, each through one kill and one
restart. What must hold afterwards, for every point:

- every step advanced exactly once (StepAdvanced entries unique, none missing);
- the HTTPRoute's weights are status.weights, and status says the router confirmed them;
- one page per halt: Alertmanager holds one alert for the halt's dedup key;
- no history entry twice (same time, action, actor and step);
- the audit sink holds every transition, once per key, as the status history says it; only a
  crash between the sink's answer and the status write that records it sends records again, with
  the same keys.

The order of a pass and where each point sits are in controller/crashpoints.py and reconcile.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from checkout_gates.controller.crashpoints import CRASH_POINTS, WORKLOAD_CRASH_POINTS
from checkout_gates_lab.testbed import Alertmanager, ExternalCluster, Kubectl, LocalCluster, Prometheus

from .checkout_traffic import CheckoutTraffic
from .operator_harness import ABORT, APPROVE
from .receivers import Receiver, serving
from .reliability import LiveRollout, OperatorProcess, assert_clean_history

pytestmark = pytest.mark.integration

Flow = Literal["promote", "halt", "abort"]
DEADLINE = 240.0  # seconds for one point's whole story; they all run at once


@dataclass(frozen=True)
class Point:
    name: str
    flow: Flow
    skip: int = 0  # let the point pass this many times first, to crash mid-rollout
    label: str = ""  # tells apart two crashes at the same point

    @property
    def id(self) -> str:
        return f"{self.name}@{self.label}" if self.label else self.name


POINTS = (
    Point("before-status-write", "promote", skip=3),
    Point("after-status-write", "promote", skip=4),
    Point("after-weights-patch", "promote", skip=1),  # the 5% patch
    Point("after-outcome-write", "promote", skip=1),
    # The promotion waits for the router: crash with 100% patched but unconfirmed, then confirmed
    # but not yet Promoted; the restarted operator confirms and promotes once.
    Point("after-weights-patch", "promote", skip=3, label="promotion"),
    # Outcome writes: each confirmed weight (1, 5, 25, 100%) and each pass that recorded a
    # transition with no weights to confirm (its audit records delivered): the 100% confirmation
    # is the 8th (Started+1%, 1% step, 5%, 5% step, AwaitingApproval, Approved+25%, 25% step, 100%).
    Point("after-outcome-write", "promote", skip=7, label="promotion"),
    Point("after-event", "promote", skip=2),  # the StepAdvanced event of the first gate step
    Point("mid-approval", "promote"),
    Point("after-annotation-removed", "promote"),
    Point("after-promotion-write", "promote"),
    Point("after-halt-write", "halt"),
    Point("before-page-delivery", "halt"),
    Point("after-page-delivery", "halt"),
    # The sink took the records of a step; the restarted operator sends them again, same keys.
    Point("before-audit-delivery", "promote", skip=2),
    Point("after-audit-delivery", "promote", skip=2),
    Point("after-abort-write", "abort"),
)


@dataclass
class Run:
    point: Point
    rollout: LiveRollout
    operator: OperatorProcess
    marker: Path
    crash_returncode: int | None = None
    crashed_after: float = 0.0
    status_at_crash: dict[str, Any] = field(default_factory=dict)
    finished_after: float = 0.0
    status: dict[str, Any] = field(default_factory=dict)
    route: tuple[int, int] = (0, 0)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    alerts_before_resolution: list[dict[str, Any]] = field(default_factory=list)
    annotations: dict[str, str] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)
    error: BaseException | None = None


def drive(run: Run, alertmanager: Alertmanager, sink: Receiver) -> None:
    """Crash, restart without the variable, and take the rollout to its end."""
    rollout, operator, point = run.rollout, run.operator, run.point
    started = time.monotonic()
    approved = aborted = False
    while time.monotonic() - started < DEADLINE:
        if run.crash_returncode is None and run.marker.exists():
            assert operator.process is not None
            run.crash_returncode = operator.process.wait(30)
            run.crashed_after = time.monotonic() - started
            run.status_at_crash = rollout.status  # what the dead process left
            operator.process = None
            operator.start()  # without the crash variable
        status = rollout.status
        phase = status.get("phase")
        if phase == "AwaitingApproval" and not approved:
            rollout.annotate(APPROVE, "alice")
            approved = True
        settled = status.get("routerTarget") == status.get("weights") and all(
            d.get("deliveredAt") for d in (status.get("page") or {}).get("deliveries", [])
        )
        if run.crash_returncode is not None and settled:
            if point.flow == "halt" and phase == "Halted" and not aborted:
                key = status["page"]["dedupKey"]
                run.alerts_before_resolution = alertmanager.alerts(dedup_key=key)
                rollout.annotate(ABORT, "oncall-bob")
                aborted = True
            done = {"promote": phase == "Promoted", "abort": phase == "Aborted"}.get(point.flow)
            if point.flow == "halt":
                page = status.get("page") or {}
                done = phase == "Aborted" and all(d.get("resolvedAt") for d in page.get("deliveries", []))
            exported = (status.get("audit") or {}).get("delivered") == status.get("epoch")
            if done and exported and not rollout.annotations():
                run.audit = sink.audit_records(audit_path(point))
                run.finished_after = time.monotonic() - started
                run.status = status
                run.route = rollout.route_weights()
                run.annotations = rollout.annotations()
                if status.get("page"):
                    run.alerts = alertmanager.alerts(dedup_key=status["page"]["dedupKey"])
                return
        time.sleep(1.0)
    crashed = "crashed" if run.crash_returncode is not None else "never reached the crash point"
    raise AssertionError(f"{point.id}: {crashed}; not finished after {DEADLINE:.0f}s; status: {rollout.status}")


@pytest.fixture(scope="module")
def sink() -> Iterator[Receiver]:
    with serving() as receiver:
        yield receiver


def audit_path(point: Point) -> str:
    return f"/audit/{point.id}"


@pytest.fixture(scope="module")
def runs(
    kube: LocalCluster | ExternalCluster,
    cluster_ready: Kubectl,
    scraping_prometheus: Prometheus,
    traffic: CheckoutTraffic,
    alertmanager: Alertmanager,
    sink: Receiver,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Run]]:
    workdir = tmp_path_factory.mktemp("crash-points")
    page = [{"alertmanager": {"url": alertmanager.url}}]
    prepared: dict[str, Run] = {}
    for point in POINTS:
        overrides: dict[str, Any] = {}
        if point.flow != "promote":
            overrides["owner"] = {"name": "payments-oncall", "page": page}
        rollout = LiveRollout(cluster_ready, scraping_prometheus, traffic, kube.kubeconfig, **overrides)
        if point.flow == "halt":
            rollout.service.canary.approval = 0.80
        if point.flow == "abort":
            rollout.service.canary.duplicates_per_second = 2.0
        audit = ["--audit-url", f"{sink.url}{audit_path(point)}"]
        operator = OperatorProcess(kube.kubeconfig, workdir / f"{point.id}.log", args=["-n", rollout.namespace, *audit])
        prepared[point.id] = Run(point, rollout, operator, workdir / f"{point.id}.crashed")
    for run in prepared.values():
        run.operator.start(
            CHECKOUT_GATES_CRASH_AT=run.point.name,
            CHECKOUT_GATES_CRASH_MARKER=str(run.marker),
            CHECKOUT_GATES_CRASH_SKIP=str(run.point.skip),
        )
    time.sleep(3)  # let them start before there is anything to do
    for run in prepared.values():
        run.rollout.apply()
    started = time.monotonic()
    with ThreadPoolExecutor(len(prepared)) as pool:
        futures = {name: pool.submit(drive, run, alertmanager, sink) for name, run in prepared.items()}
        for name, future in futures.items():
            prepared[name].error = future.exception()
    print(f"\nall crash points driven in {time.monotonic() - started:.0f}s")
    for run in prepared.values():
        print(
            f"  {run.point.id:36} crashed at {run.crashed_after:5.1f}s, finished at {run.finished_after:5.1f}s"
            f"  ({run.status.get('phase', '?')})"
        )
    yield prepared
    with ThreadPoolExecutor(len(prepared)) as pool:
        list(pool.map(lambda run: run.operator.stop(), prepared.values()))
    for run in prepared.values():
        run.rollout.delete()
        if run.error is not None:
            print(f"--- {run.point.id} ---\n{run.operator.logs.read_text(errors='replace')[-3000:]}")


def test_every_crash_point_is_exercised() -> None:
    assert {p.name for p in POINTS} == set(CRASH_POINTS) - set(WORKLOAD_CRASH_POINTS)
    assert len(POINTS) >= 10


@pytest.mark.parametrize("point", [p.id for p in POINTS])
def test_crash_and_restart_changes_nothing(runs: dict[str, Run], point: str) -> None:
    run = runs[point]
    if run.error is not None:
        raise run.error
    assert run.marker.read_text() == run.point.name
    if run.point.label == "promotion":
        left = run.status_at_crash
        assert left["weights"]["canary"] == 100 and left["phase"] != "Promoted", "crashed while the promotion waited"
        confirmed = run.point.name == "after-outcome-write"
        assert (left.get("routerTarget") == left["weights"]) is confirmed, left.get("routerTarget")
    assert run.crash_returncode == -9, "the first process died of SIGKILL at the point"
    status = run.status
    assert_clean_history(run.rollout, status)
    weights = status["weights"]
    assert run.route == (weights["stable"], weights["canary"])
    assert status["routerTarget"] == weights
    assert not run.annotations, "every on-call annotation consumed"
    actions = [e["action"] for e in status["history"]]
    if run.point.flow == "promote":
        assert status["phase"] == "Promoted" and weights["canary"] == 100
        assert actions.count("Approved") == 1 and actions.count("Promoted") == 1
        assert "page" not in status or status["page"] is None
    else:
        halt = "Halted" if run.point.flow == "halt" else "Aborted"
        assert actions.count(halt) == 1, actions
        page = status["page"]
        # Alertmanager lists active alerts only: the halt's before on-call resolved it, the abort's now.
        alerts = run.alerts_before_resolution if run.point.flow == "halt" else run.alerts
        assert len(alerts) == 1, f"one alert for {page['dedupKey']}: {alerts}"
        assert alerts[0]["labels"]["dedup_key"] == page["dedupKey"]
        assert all(d["deliveredAt"] for d in page["deliveries"])
        assert run.rollout.condition("PageDelivered", status)["status"] == "True"
    assert_audited_once(run, status)
    if run.point.flow == "halt":
        assert run.alerts == [], "the page resolved by on-call's abort"
        assert status["phase"] == "Aborted" and weights["canary"] == 0
        assert actions.count("Aborted") == 1
        assert all(d["resolvedAt"] for d in status["page"]["deliveries"])


def assert_audited_once(run: Run, status: dict[str, Any]) -> None:
    """The sink holds the status history, once per key; repeats only where the crash made them."""
    history = status["history"]
    assert status["epoch"] == len(history), "the whole history is in the status (fewer than 50)"
    meta = run.rollout.get()["metadata"]
    by_key: dict[str, dict[str, Any]] = {}
    for record in run.audit:
        assert by_key.setdefault(record["key"], record) == record, f"a repeat differs: {record['key']}"
    expected = [
        (f"{meta['namespace']}/{meta['name']}/{meta['uid']}/{e['seq']}", e["seq"], e["action"], e["actor"], e["reason"])
        for e in history
    ]
    got = [(r["key"], r["seq"], r["action"], r["actor"], r["reason"]) for r in by_key.values()]
    assert sorted(got, key=lambda r: r[1]) == expected
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))
    repeats = len(run.audit) - len(by_key)
    if run.point.name == "after-audit-delivery":
        assert repeats > 0, "the batch the sink took before the crash came again"
    else:
        assert repeats == 0, f"{repeats} records sent twice without a crash between delivery and record"
