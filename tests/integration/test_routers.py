"""The traffic routers against a real kube-apiserver (the local testbed, or KUBECONFIG_FOR_TESTS).

No gateway, mesh or ingress controller runs, and no Deployment controller: the routers' job is
the objects, and the API server stores, validates and versions them as it would anywhere.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import config as kube_config
from kubernetes.client import ApiClient, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from checkout_gates.api.spec import CheckoutRolloutSpec
from checkout_gates.api.status import Weights
from checkout_gates.routing import RouteNotFoundError, Router, RoutingError, make_router
from checkout_gates.routing.base import split
from checkout_gates.routing.gateway_api import GatewayApiRouter
from checkout_gates.routing.istio import IstioRouter
from checkout_gates.routing.replicas import replica_counts
from checkout_gates_lab.testbed import ExternalCluster, Kubectl, LocalCluster, gateway_api_crds, wait_until

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parents[1] / "examples" / "gates" / "card-payments.yaml"
ISTIO_CRD = HERE / "manifests" / "istio-virtualservice-crd.yaml"
STABLE, CANARY = "checkout-api-stable", "checkout-api-canary"
TOTAL_REPLICAS = 20  # 5 % and 25 % of 20 replicas are whole numbers: read-back equals the target
STEPS = (0, 5, 25, 100)

integration = pytest.mark.integration


# --- pure parts (no server) --------------------------------------------------------------------


def test_replica_counts() -> None:
    assert replica_counts(20, 0) == (20, 0)
    assert replica_counts(20, 5) == (19, 1)
    assert replica_counts(10, 5) == (9, 1)  # 0.5 rounds up
    assert replica_counts(10, 4) == (10, 0)
    assert replica_counts(10, 99) == (1, 9)  # stable keeps a replica until 100 %
    assert replica_counts(10, 100) == (0, 10)
    assert replica_counts(1, 50) == (1, 0)


def test_split() -> None:
    assert split(9, 1) == Weights(stable=90, canary=10)
    assert split(0, 0) is None


# --- the testbed ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_client(kube: LocalCluster | ExternalCluster) -> Iterator[ApiClient]:
    client = kube_config.new_client_from_config(config_file=str(kube.kubeconfig), persist_config=False)
    yield client
    client.close()


@pytest.fixture(scope="module")
def crds(kubectl: Kubectl) -> None:
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(gateway_api_crds()))
    kubectl.apply(ISTIO_CRD)
    kubectl.wait_established("httproutes.gateway.networking.k8s.io")
    kubectl.wait_established("virtualservices.networking.istio.io")


@pytest.fixture
def namespace(kubectl: Kubectl) -> Iterator[str]:
    name = f"routers-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", name)
    yield name
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def spec_with(routing: dict[str, Any]) -> CheckoutRolloutSpec:
    document = yaml.safe_load(EXAMPLE.read_text())["spec"]
    document["routing"] = routing
    return CheckoutRolloutSpec.model_validate(document)


def http_route(name: str = "checkout-api", backends: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    refs = backends or [{"name": STABLE, "port": 80, "weight": 100}, {"name": CANARY, "port": 80, "weight": 0}]
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "public"}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/health"}}],
                    "backendRefs": [{"name": STABLE, "port": 80}],
                },
                {"backendRefs": refs},
            ],
        },
    }


def virtual_service(namespace: str, name: str = "checkout-api", route_name: str = "primary") -> dict[str, Any]:
    """The canary destination by its full name, the stable one by its short name."""
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": {
            "hosts": ["checkout-api"],
            "http": [
                {"name": "mirror", "route": [{"destination": {"host": "mirror"}}]},
                {
                    "name": route_name,
                    "route": [
                        {"destination": {"host": STABLE}, "weight": 100},
                        {"destination": {"host": f"{CANARY}.{namespace}.svc.cluster.local"}},
                    ],
                },
            ],
        },
    }


def ingress(name: str = "checkout-api-canary", service: str = CANARY) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "annotations": {"nginx.ingress.kubernetes.io/canary": "true"}},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": "checkout.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": service, "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ],
        },
    }


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/checkout:1"}]},
            },
        },
    }


@dataclass(frozen=True)
class Case:
    """One router kind: its objects, its spec.routing, a hand edit, and how to see its versions."""

    routing: dict[str, Any]
    objects: Callable[[str], list[dict[str, Any]]]  # namespace -> objects
    kinds: tuple[tuple[str, str], ...]  # (kubectl resource, name) whose resourceVersions a write changes
    hand_edit: tuple[str, str, list[dict[str, Any]]]  # (resource, name, JSON patch) someone applies by hand
    missing: dict[str, Any]  # spec.routing naming objects that do not exist
    missing_text: str


CASES = {
    "gateway-api": Case(
        routing={"gatewayAPI": {"httpRoute": "checkout-api", "ruleIndex": 1}},
        objects=lambda ns: [http_route()],
        kinds=(("httproutes.gateway.networking.k8s.io", "checkout-api"),),
        hand_edit=(
            "httproutes.gateway.networking.k8s.io",
            "checkout-api",
            [{"op": "replace", "path": "/spec/rules/1/backendRefs/1/weight", "value": 50}],
        ),
        missing={"gatewayAPI": {"httpRoute": "absent"}},
        missing_text="HTTPRoute {ns}/absent not found",
    ),
    "istio": Case(
        routing={"istio": {"virtualService": "checkout-api", "routeName": "primary"}},
        objects=lambda ns: [virtual_service(ns)],
        kinds=(("virtualservices.networking.istio.io", "checkout-api"),),
        hand_edit=(
            "virtualservices.networking.istio.io",
            "checkout-api",
            [{"op": "replace", "path": "/spec/http/1/route/0/weight", "value": 0}],
        ),
        missing={"istio": {"virtualService": "absent"}},
        missing_text="VirtualService {ns}/absent not found",
    ),
    "ingress-nginx": Case(
        routing={"ingressNginx": {"canaryIngress": "checkout-api-canary"}},
        objects=lambda ns: [ingress()],
        kinds=(("ingresses.networking.k8s.io", "checkout-api-canary"),),
        hand_edit=(
            "ingresses.networking.k8s.io",
            "checkout-api-canary",
            [
                {
                    "op": "replace",
                    "path": "/metadata/annotations/nginx.ingress.kubernetes.io~1canary-weight",
                    "value": "40",
                }
            ],
        ),
        missing={"ingressNginx": {"canaryIngress": "absent"}},
        missing_text="Ingress {ns}/absent not found",
    ),
    "replicas": Case(
        routing={
            "replicas": {
                "stableDeployment": "checkout-api-stable",
                "canaryDeployment": "checkout-api-canary",
                "totalReplicas": TOTAL_REPLICAS,
            }
        },
        objects=lambda ns: [deployment(STABLE, TOTAL_REPLICAS), deployment(CANARY, 0)],
        kinds=(("deployments.apps", STABLE), ("deployments.apps", CANARY)),
        hand_edit=("deployments.apps", CANARY, [{"op": "replace", "path": "/spec/replicas", "value": 10}]),
        missing={
            "replicas": {"stableDeployment": "absent", "canaryDeployment": "checkout-api-canary", "totalReplicas": 4}
        },
        missing_text="Deployment {ns}/absent not found",
    ),
}


def create(kubectl: Kubectl, namespace: str, objects: list[dict[str, Any]]) -> None:
    for item in objects:
        kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(item))


def versions(kubectl: Kubectl, namespace: str, case: Case) -> list[str]:
    return [
        kubectl.json("get", resource, name, "-n", namespace)["metadata"]["resourceVersion"]
        for resource, name in case.kinds
    ]


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


@integration
def test_weights_step_up_read_back_and_are_idempotent(
    case: Case, api_client: ApiClient, kubectl: Kubectl, crds: None, namespace: str
) -> None:
    create(kubectl, namespace, case.objects(namespace))
    router: Router = make_router(spec_with(case.routing), namespace, api_client)
    for canary in STEPS:
        target = Weights.canary_at(canary)
        assert router.set_weights(target) == target
        assert router.read_weights() == target
        before = versions(kubectl, namespace, case)
        assert router.set_weights(target) == target  # the same target again: no write at all
        assert versions(kubectl, namespace, case) == before


@integration
def test_hand_edit_is_drift(case: Case, api_client: ApiClient, kubectl: Kubectl, crds: None, namespace: str) -> None:
    create(kubectl, namespace, case.objects(namespace))
    router = make_router(spec_with(case.routing), namespace, api_client)
    expected = router.set_weights(Weights.canary_at(5))
    assert router.read_weights() == expected
    resource, name, patch = case.hand_edit
    kubectl("patch", resource, name, "-n", namespace, "--type=json", "-p", json.dumps(patch))
    # What the decision core compares (rollout/machine.py, router drift): the read-back differs.
    assert router.read_weights() != expected
    # Setting the target again repairs it.
    assert router.set_weights(Weights.canary_at(5)) == expected
    assert router.read_weights() == expected


@integration
def test_missing_object(case: Case, api_client: ApiClient, crds: None, namespace: str) -> None:
    router = make_router(spec_with(case.missing), namespace, api_client)
    text = case.missing_text.format(ns=namespace)
    with pytest.raises(RouteNotFoundError, match=text):
        router.read_weights()
    with pytest.raises(RouteNotFoundError, match=text):
        router.set_weights(Weights.canary_at(5))


# --- malformed objects --------------------------------------------------------------------------


@integration
def test_http_route_without_the_rule_or_the_services(
    api_client: ApiClient, kubectl: Kubectl, crds: None, namespace: str
) -> None:
    create(kubectl, namespace, [http_route(backends=[{"name": STABLE, "port": 80}, {"name": "other", "port": 80}])])
    router = make_router(
        spec_with({"gatewayAPI": {"httpRoute": "checkout-api", "ruleIndex": 5}}), namespace, api_client
    )
    with pytest.raises(RoutingError, match="has 2 rule\\(s\\), so there is no rule at ruleIndex 5"):
        router.read_weights()
    router = make_router(
        spec_with({"gatewayAPI": {"httpRoute": "checkout-api", "ruleIndex": 1}}), namespace, api_client
    )
    with pytest.raises(RoutingError) as error:
        router.set_weights(Weights.canary_at(5))
    assert f"backendRefs do not name Service {CANARY}" in str(error.value)
    assert "found: Service checkout-api-stable, Service other" in str(error.value)


@integration
def test_virtual_service_without_the_route(api_client: ApiClient, kubectl: Kubectl, crds: None, namespace: str) -> None:
    create(kubectl, namespace, [virtual_service(namespace, route_name="main")])
    router = make_router(
        spec_with({"istio": {"virtualService": "checkout-api", "routeName": "primary"}}), namespace, api_client
    )
    with pytest.raises(RoutingError, match=r"no spec.http entry is named primary \(found: mirror, main\)"):
        router.read_weights()
    first = make_router(spec_with({"istio": {"virtualService": "checkout-api"}}), namespace, api_client)
    with pytest.raises(RoutingError, match=f"no destination is Service {STABLE} or {CANARY}"):
        first.set_weights(Weights.canary_at(5))


@integration
def test_ingress_for_another_service(api_client: ApiClient, kubectl: Kubectl, crds: None, namespace: str) -> None:
    create(kubectl, namespace, [ingress(service="somebody-else")])
    router = make_router(spec_with({"ingressNginx": {"canaryIngress": "checkout-api-canary"}}), namespace, api_client)
    with pytest.raises(RoutingError, match=f"does not route to the canary Service {CANARY}"):
        router.set_weights(Weights.canary_at(5))


@integration
def test_ingress_not_yet_canary_reads_none(api_client: ApiClient, kubectl: Kubectl, crds: None, namespace: str) -> None:
    plain = ingress()
    plain["metadata"]["annotations"] = {}
    create(kubectl, namespace, [plain])
    router = make_router(spec_with({"ingressNginx": {"canaryIngress": "checkout-api-canary"}}), namespace, api_client)
    assert router.read_weights() is None
    assert router.set_weights(Weights.canary_at(25)) == Weights.canary_at(25)
    annotations = kubectl.json("get", "ingress", "checkout-api-canary", "-n", namespace)["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/canary"] == "true"
    assert annotations["nginx.ingress.kubernetes.io/canary-weight"] == "25"


@integration
def test_istio_falls_back_to_v1beta1(api_client: ApiClient, kubectl: Kubectl, crds: None, namespace: str) -> None:
    create(kubectl, namespace, [virtual_service(namespace)])
    crd = "virtualservices.networking.istio.io"
    serve_v1 = [{"op": "replace", "path": "/spec/versions/0/served", "value": False}]
    kubectl("patch", "crd", crd, "--type=json", "-p", json.dumps(serve_v1))
    api = CustomObjectsApi(api_client)

    def v1_gone() -> bool:
        try:
            api.get_api_resources("networking.istio.io", "v1")
        except ApiException as error:
            return error.status == 404
        return False

    try:
        wait_until(v1_gone, timeout=30, what="networking.istio.io/v1 to stop being served")
        router = make_router(spec_with(CASES["istio"].routing), namespace, api_client)
        assert isinstance(router, IstioRouter)
        assert router.set_weights(Weights.canary_at(25)) == Weights.canary_at(25)
        assert router.version == "v1beta1"
    finally:
        serve_v1[0]["value"] = True
        kubectl("patch", "crd", crd, "--type=json", "-p", json.dumps(serve_v1))
    wait_until(lambda: not v1_gone(), timeout=30, what="networking.istio.io/v1 to be served again")
    assert make_router(spec_with(CASES["istio"].routing), namespace, api_client).read_weights() == Weights.canary_at(25)


@integration
def test_reordered_backends_between_read_and_write_are_not_patched(
    api_client: ApiClient, kubectl: Kubectl, crds: None, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    create(kubectl, namespace, [http_route()])
    router = make_router(spec_with(CASES["gateway-api"].routing), namespace, api_client)
    assert isinstance(router, GatewayApiRouter)
    stale = router._get()
    swapped = [
        {"op": "replace", "path": "/spec/rules/1/backendRefs/0", "value": {"name": CANARY, "port": 80, "weight": 0}},
        {"op": "replace", "path": "/spec/rules/1/backendRefs/1", "value": {"name": STABLE, "port": 80, "weight": 100}},
    ]
    kubectl("patch", "httproute", "checkout-api", "-n", namespace, "--type=json", "-p", json.dumps(swapped))
    monkeypatch.setattr(router, "_get", lambda: stale)  # as if the edit landed just after our read
    with pytest.raises(RoutingError, match="a JSON patch test failed"):
        router.set_weights(Weights.canary_at(25))
    monkeypatch.undo()
    assert router.read_weights() == Weights.canary_at(0)
