"""The router a rollout's ``spec.routing`` names."""

from __future__ import annotations

from kubernetes.client import ApiClient, AppsV1Api, CustomObjectsApi, NetworkingV1Api

from checkout_gates.api.spec import CheckoutRolloutSpec
from checkout_gates.routing.base import Router
from checkout_gates.routing.gateway_api import GatewayApiRouter
from checkout_gates.routing.ingress_nginx import IngressNginxRouter
from checkout_gates.routing.istio import IstioRouter
from checkout_gates.routing.replicas import ReplicaRouter


def make_router(spec: CheckoutRolloutSpec, namespace: str, api_client: ApiClient) -> Router:
    routing = spec.routing
    stable, canary = spec.stable.service, spec.canary.service
    if routing.gateway_api is not None:
        return GatewayApiRouter(
            CustomObjectsApi(api_client), namespace, routing.gateway_api, stable_service=stable, canary_service=canary
        )
    if routing.istio is not None:
        return IstioRouter(
            CustomObjectsApi(api_client), namespace, routing.istio, stable_service=stable, canary_service=canary
        )
    if routing.ingress_nginx is not None:
        return IngressNginxRouter(NetworkingV1Api(api_client), namespace, routing.ingress_nginx, canary_service=canary)
    if routing.replicas is not None:
        return ReplicaRouter(AppsV1Api(api_client), namespace, routing.replicas)
    raise ValueError("spec.routing names no router")  # the spec's validation makes this unreachable
