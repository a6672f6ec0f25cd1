"""The operator's neighbours failing for a while: Prometheus down, slow, failing or answering NaN,
kube-apiserver restarted, Alertmanager down at a halt. Each time the rollout holds (no step opens
on missing evidence), says why in a condition, and recovers by itself when the neighbour is
back, with nothing lost from its history."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from checkout_gates_lab.testbed import Alertmanager, ExternalCluster, LocalCluster, Prometheus

from .operator_harness import Operator, wait_for
from .reliability import ONE_GATE, TWO_GATES, LiveRollout, PrometheusProxy, analysis, assert_clean_history

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def proxy(scraping_prometheus: Prometheus) -> Iterator[PrometheusProxy]:
    server = PrometheusProxy(scraping_prometheus.url, delay=3.0).start()
    yield server
    server.stop()


def holds_at_gate(rollout: LiveRollout, seconds: float, step: int = 1) -> dict[str, Any]:
    """Watch the rollout for a while: it must stay Progressing at the gate step, no halt, no advance."""
    deadline = time.monotonic() + seconds
    status = rollout.status
    while time.monotonic() < deadline:
        status = rollout.status
        assert status["phase"] == "Progressing" and status["currentStep"] == step, (status["phase"], status["message"])
        time.sleep(0.5)
    return status


def test_prometheus_down_holds_then_recovers_before_the_inconclusive_limit(
    live: Callable[..., LiveRollout], scraping_prometheus: Prometheus
) -> None:
    rollout = live(steps=ONE_GATE, analysis=analysis(inconclusive_limit=30))
    rollout.apply()
    wait_for(lambda: rollout.status.get("currentStep") == 1, "the gate step")
    scraping_prometheus.stop()
    try:
        down = wait_for(
            lambda: rollout.condition("MetricsAvailable").get("status") == "False" and rollout.status,
            "MetricsAvailable=False",
        )
        assert "cannot connect to Prometheus" in rollout.condition("MetricsAvailable", down)["message"]
        held = holds_at_gate(rollout, 6.0)
        assert {g["verdict"] for g in held["gates"]} == {"Inconclusive"}
        assert 1 <= held["inconclusives"] < 30, "counted, below the limit"
        assert held["weights"]["canary"] == 1 and rollout.route_weights() == (99, 1)
    finally:
        scraping_prometheus.start()
    status = rollout.wait_phase("Promoted")
    assert rollout.condition("MetricsAvailable", status)["status"] == "True"
    assert_clean_history(rollout, status)
    assert [e["action"] for e in status["history"]].count("Halted") == 0


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("slow", "did not answer within 1s (spec.prometheus.timeout)"),
        ("error", "Prometheus failed the query (HTTP 500"),
        ("nan", "returned NaN"),
    ],
    ids=["slow", "error", "nan"],
)
def test_slow_failing_or_nan_prometheus_is_inconclusive_and_holds(
    live: Callable[..., LiveRollout], proxy: PrometheusProxy, fault: Any, reason: str
) -> None:
    rollout = live(steps=ONE_GATE, analysis=analysis(inconclusive_limit=30))
    rollout.manifest["spec"]["prometheus"] = {"address": proxy.url, "timeout": "1s"}
    rollout.apply()
    wait_for(lambda: rollout.status.get("currentStep") == 1, "the gate step")
    with proxy.faulty(fault):

        def inconclusive() -> dict[str, Any] | None:
            status = rollout.status
            gates = status.get("gates", [])
            if gates and all(g["verdict"] == "Inconclusive" and reason in g["reason"] for g in gates):
                return status
            return None

        status = wait_for(inconclusive, f"Inconclusive verdicts saying {reason!r}")
        assert rollout.condition("MetricsAvailable", status)["status"] == "False"
        assert reason in rollout.condition("MetricsAvailable", status)["message"]
        assert rollout.condition("GatesPassing", status)["status"] == "Unknown"
        holds_at_gate(rollout, 5.0)
    status = rollout.wait_phase("Promoted")
    assert rollout.condition("MetricsAvailable", status)["status"] == "True"
    assert_clean_history(rollout, status)


def test_kube_apiserver_restart_is_survived(
    live: Callable[..., LiveRollout], kube: LocalCluster | ExternalCluster, operator: Operator
) -> None:
    if not isinstance(kube, LocalCluster):
        pytest.skip("restarting kube-apiserver needs the local testbed")
    rollout = live(steps=TWO_GATES)
    rollout.apply()
    wait_for(lambda: (rollout.status.get("routerTarget") or {}).get("canary") == 1, "the first step applied")
    before = rollout.status
    kube.restart_apiserver(down_for=5.0)
    assert operator.process is not None and operator.process.poll() is None, "the operator survived"
    status = rollout.wait_phase("Promoted", timeout=180)
    assert operator.process.poll() is None
    assert status["history"][: len(before["history"])] == before["history"], "no history lost"
    assert_clean_history(rollout, status)
    assert rollout.route_weights() == (0, 100)


def test_alertmanager_down_at_the_halt_then_back(live: Callable[..., LiveRollout], alertmanager: Alertmanager) -> None:
    rollout = live(owner={"name": "payments-oncall", "page": [{"alertmanager": {"url": alertmanager.url}}]})
    rollout.service.canary.approval = 0.80
    alertmanager.stop()
    try:
        rollout.apply()
        rollout.wait_phase("Halted")
        failed = wait_for(
            lambda: (c := rollout.condition("PageDelivered")).get("status") == "False" and c, "PageDelivered=False"
        )
        assert "page[0]:alertmanager" in failed["message"]
        page = rollout.status["page"]
        assert page["deliveries"][0]["attempts"] >= 1 and not page["deliveries"][0].get("deliveredAt")
    finally:
        alertmanager.start()
    delivered = wait_for(
        lambda: (s := rollout.status)["page"]["deliveries"][0].get("deliveredAt") and s, "the page delivered"
    )
    assert rollout.condition("PageDelivered", delivered)["status"] == "True"
    time.sleep(6)  # another retry period: nothing more is sent
    alerts = alertmanager.alerts(dedup_key=delivered["page"]["dedupKey"])
    assert len(alerts) == 1, alerts
    status = rollout.status
    assert [e["action"] for e in status["history"]].count("Halted") == 1
    assert status["page"]["dedupKey"] == delivered["page"]["dedupKey"]
    assert_clean_history(rollout, status)
