"""The testbed's workloads: Deployments that really roll, on kube-scheduler and kwok's nodes.

The ground the workload lifecycle (issue 15) stands on: pods are scheduled, become Ready, a
`kubectl set image` rolls a new ReplicaSet in and the old one out, and a Service's EndpointSlice
follows the Ready pods. No container runs: kwok plays the kubelets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from checkout_gates_lab.testbed import Kubectl, LocalCluster
from checkout_gates_lab.testbed.processes import wait_until
from checkout_gates_lab.testbed.workloads import WORKLOAD_CONTROLLER_ARGS, WORKLOAD_CONTROLLERS, Workloads
from tests.conftest import _need

pytestmark = pytest.mark.integration

NAMESPACE = "payments"


@pytest.fixture(scope="module")
def workload_kubectl() -> Iterator[Kubectl]:
    cluster = _need(
        lambda: LocalCluster(
            controller_manager=True, controllers=WORKLOAD_CONTROLLERS, controller_manager_args=WORKLOAD_CONTROLLER_ARGS
        ).start()
    )
    try:
        workloads = _need(lambda: Workloads(cluster.kubeconfig, cluster.workdir, nodes=2).start())
        try:
            kubectl = Kubectl(cluster.kubeconfig)
            kubectl("create", "namespace", NAMESPACE)
            yield kubectl
        finally:
            workloads.stop()
    finally:
        cluster.stop()


def deployment(name: str, image: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image, "ports": [{"containerPort": 8080}]}]},
            },
        },
    }


def ready_pods(kubectl: Kubectl, name: str) -> dict[str, str]:
    """Ready pods of the Deployment by name, with the image each runs."""
    pods = kubectl.json("get", "pods", "-n", NAMESPACE, "-l", f"app={name}")["items"]
    return {
        pod["metadata"]["name"]: pod["spec"]["containers"][0]["image"]
        for pod in pods
        if pod["metadata"].get("deletionTimestamp") is None
        and any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))
    }


def test_a_deployment_rolls_to_a_new_image(workload_kubectl: Kubectl) -> None:
    kubectl = workload_kubectl
    kubectl.apply(json.dumps(deployment("checkout-api", "checkout:v1", 3)))
    kubectl("rollout", "status", "deployment/checkout-api", "-n", NAMESPACE, "--timeout=120s")
    first = ready_pods(kubectl, "checkout-api")
    assert sorted(first.values()) == ["checkout:v1"] * 3
    nodes = {
        pod["spec"]["nodeName"]
        for pod in kubectl.json("get", "pods", "-n", NAMESPACE, "-l", "app=checkout-api")["items"]
    }
    assert nodes <= {"kwok-node-0", "kwok-node-1"} and nodes, "bound by kube-scheduler to kwok's nodes"

    kubectl("set", "image", "deployment/checkout-api", "app=checkout:v2", "-n", NAMESPACE)
    kubectl("rollout", "status", "deployment/checkout-api", "-n", NAMESPACE, "--timeout=120s")

    def rolled() -> bool:
        pods = ready_pods(kubectl, "checkout-api")
        return sorted(pods.values()) == ["checkout:v2"] * 3

    wait_until(rolled, timeout=60, what="three Ready pods on checkout:v2, none on v1")
    sets = kubectl.json("get", "replicasets", "-n", NAMESPACE, "-l", "app=checkout-api")["items"]
    replicas = {rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs["spec"]["replicas"] for rs in sets}
    assert replicas == {"checkout:v1": 0, "checkout:v2": 3}


def test_a_service_gets_the_ready_pods_as_endpoints(workload_kubectl: Kubectl) -> None:
    kubectl = workload_kubectl
    kubectl.apply(json.dumps(deployment("refunds", "refunds:v1", 2)))
    kubectl.apply(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "refunds", "namespace": NAMESPACE},
                "spec": {"selector": {"app": "refunds"}, "ports": [{"port": 80, "targetPort": 8080}]},
            }
        )
    )
    kubectl("rollout", "status", "deployment/refunds", "-n", NAMESPACE, "--timeout=120s")

    def endpoints() -> bool:
        slices = kubectl.json("get", "endpointslices", "-n", NAMESPACE, "-l", "kubernetes.io/service-name=refunds")[
            "items"
        ]
        ready = [e for s in slices for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready")]
        return len(ready) == 2

    wait_until(endpoints, timeout=60, what="an EndpointSlice with the two Ready pods")
