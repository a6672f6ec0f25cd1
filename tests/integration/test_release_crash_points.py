"""The operator killed (SIGKILL) at the workload's crash points, then started again: the release
ends as if nothing happened.

The points (controller/crashpoints.py): ``after-stable-copy`` (the copy created at adoption, or
given the new revision at promotion) and ``after-canary-scale`` (the Deployment scaled to 0 at
adoption, up for the rollout, to 0 at promotion), each time with status not yet saying so. Each
point gets its own operator watching only its own namespace, all at once, on one kwok cluster.
Afterwards, for every point: v2 is stable and runs on the copy, traffic is 100% stable, the
canary has 0 replicas, and every transition is in history exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from checkout_gates.controller.crashpoints import WORKLOAD_CRASH_POINTS
from checkout_gates_lab.testbed import Kubectl, Prometheus

from .checkout_traffic import CheckoutTraffic
from .operator_harness import wait_for
from .release_harness import NAME, Release, ready_images
from .reliability import OperatorProcess, duplicate_history

pytestmark = pytest.mark.integration

DEADLINE = 300.0  # seconds for one point's whole story; they all run at once


@dataclass(frozen=True)
class Point:
    name: str
    skip: int
    label: str

    @property
    def id(self) -> str:
        return f"{self.name}@{self.label}"


POINTS = (
    Point("after-stable-copy", 0, "adoption"),
    Point("after-stable-copy", 1, "promotion"),
    Point("after-canary-scale", 0, "adoption-scale-down"),
    Point("after-canary-scale", 1, "scale-up"),
    Point("after-canary-scale", 2, "promotion-scale-down"),
)


@dataclass
class Run:
    point: Point
    release: Release
    operator: OperatorProcess
    marker: Path
    crash_returncode: int | None = None
    status: dict[str, Any] | None = None
    error: BaseException | None = None


def stable_images(status: dict[str, Any]) -> list[str]:
    return list(((status.get("revisions") or {}).get("stable") or {}).get("images") or [])


def drive(run: Run) -> None:
    release, operator = run.release, run.operator
    started = time.monotonic()
    image_set = False
    while time.monotonic() - started < DEADLINE:
        if run.crash_returncode is None and run.marker.exists():
            assert operator.process is not None
            run.crash_returncode = operator.process.wait(30)
            operator.process = None
            operator.start()  # without the crash variable
        status = release.status
        promoted = status.get("phase") == "Promoted"
        if promoted and stable_images(status) == ["checkout:v1"] and not image_set:
            release.set_image("checkout:v2")
            image_set = True
        released = promoted and stable_images(status) == ["checkout:v2"] and run.crash_returncode is not None
        if released and release.deployment(NAME)["spec"]["replicas"] == 0:
            run.status = status
            return
        time.sleep(1.0)
    crashed = "crashed" if run.crash_returncode is not None else "never reached the crash point"
    raise AssertionError(f"{run.point.id}: {crashed}; not finished after {DEADLINE:.0f}s; status: {release.status}")


@pytest.fixture(scope="module")
def runs(
    release_cluster: tuple[Kubectl, Path],
    scraping_prometheus: Prometheus,
    traffic: CheckoutTraffic,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Run]]:
    kubectl, kubeconfig = release_cluster
    workdir = tmp_path_factory.mktemp("release-crash-points")
    prepared: dict[str, Run] = {}
    for point in POINTS:
        name = f"crash-{point.label}"
        release = Release(kubectl, scraping_prometheus, traffic, name)
        operator = OperatorProcess(kubeconfig, workdir / f"{point.id}.log", args=["-n", release.namespace])
        prepared[point.id] = Run(point, release, operator, workdir / f"{point.id}.crashed")
    for run in prepared.values():
        run.operator.start(
            CHECKOUT_GATES_CRASH_AT=run.point.name,
            CHECKOUT_GATES_CRASH_MARKER=str(run.marker),
            CHECKOUT_GATES_CRASH_SKIP=str(run.point.skip),
        )
    time.sleep(3)
    for run in prepared.values():
        run.release.apply()
    with ThreadPoolExecutor(len(prepared)) as pool:
        futures = {name: pool.submit(drive, run) for name, run in prepared.items()}
        for name, future in futures.items():
            prepared[name].error = future.exception()
    yield prepared
    with ThreadPoolExecutor(len(prepared)) as pool:
        list(pool.map(lambda run: run.operator.stop(), prepared.values()))
    for run in prepared.values():
        if run.error is not None:
            print(f"--- {run.point.id} ---\n{run.operator.logs.read_text(errors='replace')[-3000:]}")


def test_every_workload_crash_point_is_exercised() -> None:
    assert {point.name for point in POINTS} == set(WORKLOAD_CRASH_POINTS)


@pytest.mark.parametrize("point", [p.id for p in POINTS])
def test_a_crash_at_a_workload_action_changes_nothing(runs: dict[str, Run], point: str) -> None:
    run = runs[point]
    if run.error is not None:
        raise run.error
    assert run.marker.read_text() == run.point.name
    assert run.crash_returncode == -9, "the first process died of SIGKILL at the point"
    status = run.status
    assert status is not None
    history = status["history"]
    assert not duplicate_history(history), duplicate_history(history)
    actions = [entry["action"] for entry in history]
    assert actions.count("Promoted") == 2, actions  # the adoption of v1, the promotion of v2
    assert actions.count("Started") == 2 and actions.count("CanaryReady") == 1, actions
    assert actions.count("Promoting") == 1 and "Halted" not in actions and "Aborted" not in actions, actions
    release = run.release
    assert release.route_weights() == (100, 0) and status["routerTarget"] == {"stable": 100, "canary": 0}
    copy = release.deployment(f"{NAME}-stable")
    assert copy["spec"]["template"]["spec"]["containers"][0]["image"] == "checkout:v2"
    assert copy["spec"]["replicas"] == 3
    assert release.deployment(NAME)["spec"]["replicas"] == 0
    wait_for(
        lambda: sorted(ready_images(release.kubectl, release.namespace, f"{NAME}-stable")) == ["checkout:v2"] * 3,
        "three Ready stable pods on checkout:v2, none on v1",
    )
