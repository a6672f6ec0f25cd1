"""ingress-nginx: the canary Ingress' ``canary`` and ``canary-weight`` annotations.

ingress-nginx sends ``canary-weight`` out of ``canary-weight-total`` (default 100) of the
requests for the canary Ingress' host and paths to its backend, and the rest to the main Ingress
(stable). The canary Ingress must route to the canary Service. An Ingress without
``canary: "true"`` is not a canary Ingress yet: :meth:`IngressNginxRouter.read_weights` reads
None, and the first ``set_weights`` marks it.
"""

from __future__ import annotations

from kubernetes.client import NetworkingV1Api, V1Ingress
from kubernetes.client.exceptions import ApiException

from checkout_gates.api.spec import IngressNginxRoute
from checkout_gates.api.status import Weights
from checkout_gates.apiserver import FIELD_MANAGER, MERGE_PATCH
from checkout_gates.routing.base import (
    RoutingError,
    api_error,
    check_target,
    read_back,
    split,
)

PREFIX = "nginx.ingress.kubernetes.io/"
CANARY = PREFIX + "canary"
WEIGHT = PREFIX + "canary-weight"
WEIGHT_TOTAL = PREFIX + "canary-weight-total"
DEFAULT_TOTAL = 100


class IngressNginxRouter:
    def __init__(self, api: NetworkingV1Api, namespace: str, route: IngressNginxRoute, *, canary_service: str) -> None:
        self._api = api
        self.namespace = namespace
        self.name = route.canary_ingress
        self.canary_service = canary_service

    @property
    def description(self) -> str:
        return f"canary Ingress {self.namespace}/{self.name}"

    def read_weights(self) -> Weights | None:
        return self._weights(self._get())

    def set_weights(self, target: Weights) -> Weights:
        check_target(target)
        ingress = self._get()
        annotations = _annotations(ingress)
        wanted = {CANARY: "true", WEIGHT: str(target.canary)}
        if annotations.get(WEIGHT_TOTAL, str(DEFAULT_TOTAL)) != str(DEFAULT_TOTAL):
            wanted[WEIGHT_TOTAL] = str(DEFAULT_TOTAL)
        if all(annotations.get(key) == value for key, value in wanted.items()):
            return read_back(self._weights(ingress), self.description)
        body = {"metadata": {"annotations": wanted}}
        try:
            patched = self._api.patch_namespaced_ingress(
                self.name, self.namespace, body, field_manager=FIELD_MANAGER, _content_type=MERGE_PATCH
            )
        except ApiException as error:
            raise api_error(error, self.description, "patch") from error
        return read_back(self._weights(patched), self.description)

    def _get(self) -> V1Ingress:
        try:
            ingress = self._api.read_namespaced_ingress(self.name, self.namespace)
        except ApiException as error:
            raise api_error(error, f"Ingress {self.namespace}/{self.name}", "read") from error
        self._check_backend(ingress)
        return ingress

    def _weights(self, ingress: V1Ingress) -> Weights | None:
        annotations = _annotations(ingress)
        if annotations.get(CANARY) != "true":
            return None
        weight = _whole(annotations.get(WEIGHT, "0"), WEIGHT, self.description)
        total = _whole(annotations.get(WEIGHT_TOTAL, str(DEFAULT_TOTAL)), WEIGHT_TOTAL, self.description)
        if total <= 0:
            raise RoutingError(f"{self.description}: {WEIGHT_TOTAL} is {total}; it must be above 0")
        return split(max(0, total - weight), min(weight, total))

    def _check_backend(self, ingress: V1Ingress) -> None:
        services = _backend_services(ingress)
        if self.canary_service not in services:
            found = ", ".join(sorted(services)) or "none"
            raise RoutingError(
                f"{self.description} does not route to the canary Service {self.canary_service} (its backends: {found})"
            )


def _annotations(ingress: V1Ingress) -> dict[str, str]:
    metadata = ingress.metadata
    return dict(metadata.annotations or {}) if metadata is not None else {}


def _backend_services(ingress: V1Ingress) -> set[str]:
    spec = ingress.spec
    if spec is None:
        return set()
    backends = [spec.default_backend] if spec.default_backend is not None else []
    for rule in spec.rules or []:
        if rule.http is not None:
            backends += [path.backend for path in rule.http.paths]
    return {backend.service.name for backend in backends if backend is not None and backend.service is not None}


def _whole(text: str, key: str, what: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise RoutingError(f"{what}: annotation {key} is {text!r}, not a whole number") from None
