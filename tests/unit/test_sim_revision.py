"""The simulated canary is faulty only while it runs a faulty build (sim/revision.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from checkout_gates_lab.sim.catalog import ATTEMPTS, COMPLETIONS, DUPLICATE_CHARGES
from checkout_gates_lab.sim.model import Engine
from checkout_gates_lab.sim.revision import CanaryRevision, RevisionTarget
from checkout_gates_lab.sim.scenario import parse_scenario

SCENARIO = parse_scenario(
    {
        "name": "duplicate-charges",
        "faults": [
            {"variant": "canary", "effect": {"duplicateChargeRate": 0.5}},
            {"variant": "both", "effect": {"completionDrop": 0.5}},
        ],
    },
    "test",
)


def pod(image: str, *, ready: bool = True, deleting: bool = False) -> Any:
    condition = SimpleNamespace(type="Ready", status="True" if ready else "False")
    return SimpleNamespace(
        metadata=SimpleNamespace(deletion_timestamp="now" if deleting else None),
        status=SimpleNamespace(conditions=[condition]),
        spec=SimpleNamespace(containers=[SimpleNamespace(image=image)]),
    )


class Pods:
    def __init__(self, *pods: Any, fail: bool = False) -> None:
        self.pods, self.fail = list(pods), fail

    def list_namespaced_pod(self, namespace: str, **_: Any) -> Any:
        if self.fail:
            raise OSError("connection refused")
        return SimpleNamespace(items=self.pods)


def totals(faulty: bool) -> Any:
    engine = Engine(SCENARIO, rate=2000, seed=3)
    for _ in range(100):
        engine.step(50.0, faulty)
    return engine.totals


def completion(totals: Any, variant: str) -> float:
    return float(totals.count(COMPLETIONS, variant=variant) / totals.count(ATTEMPTS, variant=variant))


def test_a_good_build_leaves_out_the_canarys_faults_but_not_those_on_both() -> None:
    good, bad = totals(False), totals(True)
    baseline = Engine(parse_scenario({"name": "aa"}, "test"), rate=2000, seed=3)
    for _ in range(100):
        baseline.step(50.0)
    normal = baseline.totals.count(DUPLICATE_CHARGES, variant="canary")
    assert good.count(DUPLICATE_CHARGES, variant="canary") <= normal + 3
    assert bad.count(DUPLICATE_CHARGES, variant="canary") > 10 * (normal + 3)
    for variant in ("stable", "canary"):  # the fault on both variants applies either way
        assert completion(good, variant) < completion(baseline.totals, variant) - 0.2


def test_the_canary_is_faulty_while_a_ready_pod_runs_an_image_tagged_with_the_marker() -> None:
    target = RevisionTarget("payments", "app=checkout-api", "-duplicate-charges")
    cases = [
        (Pods(pod("checkout:v2-duplicate-charges")), True),
        (Pods(pod("checkout:v2")), False),
        (Pods(pod("checkout:v2-duplicate-charges", ready=False), pod("checkout:v1")), False),
        (Pods(pod("checkout:v2-duplicate-charges", deleting=True)), False),
        (Pods(pod("registry.local:5000/checkout:v2")), False),  # a port is not a tag
        (Pods(), False),
    ]
    for api, expected in cases:
        revision = CanaryRevision(target, api=api)
        asyncio.run(revision.refresh())
        assert revision.canary_faulty() is expected, api.pods


def test_a_failed_read_keeps_the_last_answer() -> None:
    api = Pods(pod("checkout:v2-duplicate-charges"))
    revision = CanaryRevision(RevisionTarget("payments", "app=checkout-api", "-duplicate-charges"), api=api)
    asyncio.run(revision.refresh())
    api.fail = True
    asyncio.run(revision.refresh())
    assert revision.canary_faulty()
