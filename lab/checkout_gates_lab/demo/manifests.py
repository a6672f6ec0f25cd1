"""What the demo applies: a namespace, the HTTPRoute the canary rolls out through, and the rollout.

The rollout is package data (``rollout.yaml``, which ``checkout-gates lint`` passes); the demo fills
in its name, namespace, the Prometheus to ask and the Alertmanager to page.
"""

from __future__ import annotations

import copy
from functools import cache
from importlib import resources
from typing import Any

import yaml

from checkout_gates.api.resource import parse_rollout

PACKAGE = "checkout_gates_lab.demo"
ROUTE_PORT = 8080


@cache
def _template() -> dict[str, Any]:
    text = resources.files(PACKAGE).joinpath("rollout.yaml").read_text(encoding="utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    return document


def rollout_template() -> dict[str, Any]:
    """The packaged rollout as it is in the file (a fresh copy)."""
    return copy.deepcopy(_template())


def demo_rollout(
    *,
    name: str,
    namespace: str,
    prometheus: str,
    alertmanager: str,
    windows: tuple[str, ...] | None = None,
    workload: str | None = None,
) -> dict[str, Any]:
    """The demo rollout for one simulated service, ready to apply; ValueError if it does not lint.

    ``windows`` replaces the gate steps' pass windows, in order (a shortened or longer schedule);
    ``workload`` names the Deployment it releases (``workloadRef``).
    """
    document = rollout_template()
    document["metadata"] = {"name": name, "namespace": namespace}
    spec = document["spec"]
    spec["routing"]["gatewayAPI"]["httpRoute"] = name
    spec["prometheus"]["address"] = prometheus
    spec["owner"]["page"] = [{"alertmanager": {"url": alertmanager}}]
    if workload is not None:
        spec["workloadRef"] = {"name": workload, "progressDeadline": "2m"}
    if windows is not None:
        gate_steps = [step["gate"] for step in spec["steps"] if "gate" in step]
        if len(windows) != len(gate_steps):
            raise ValueError(f"{len(windows)} windows given for {len(gate_steps)} gate steps")
        for gate, window in zip(gate_steps, windows, strict=True):
            gate["window"] = window
    outcome = parse_rollout(document)
    if isinstance(outcome, list):
        raise ValueError("the demo rollout does not lint: " + "; ".join(str(problem) for problem in outcome))
    return document


def services(rollout: dict[str, Any]) -> tuple[str, str]:
    """The stable and canary Services the rollout names."""
    spec = rollout["spec"]
    return str(spec["stable"]["service"]), str(spec["canary"]["service"])


def workload(name: str, namespace: str, image: str, stable_service: str, canary_service: str) -> list[dict[str, Any]]:
    """The Deployment a rollout releases and the two Services: the canary's selects the
    Deployment's pods, stable's the operator's copy of it (``<name>-stable``, docs/workloads.md)."""
    labels = {"app": name}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": labels},
            "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": image, "ports": [{"containerPort": ROUTE_PORT}]}]},
            },
        },
    }

    def service(service_name: str, app: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": service_name, "namespace": namespace},
            "spec": {"selector": {"app": app}, "ports": [{"port": ROUTE_PORT, "targetPort": ROUTE_PORT}]},
        }

    return [deployment, service(stable_service, f"{name}-stable"), service(canary_service, name)]


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def http_route(name: str, namespace: str, stable_service: str, canary_service: str) -> dict[str, Any]:
    """An HTTPRoute sending everything to stable (canary weight 0), as before a rollout."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": "edge"}],
            "rules": [
                {
                    "backendRefs": [
                        {"name": stable_service, "port": ROUTE_PORT, "weight": 100},
                        {"name": canary_service, "port": ROUTE_PORT, "weight": 0},
                    ]
                }
            ],
        },
    }


def manifests_yaml(*documents: dict[str, Any]) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False)
