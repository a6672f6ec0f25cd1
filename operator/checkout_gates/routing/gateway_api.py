"""Gateway API: the weights of one HTTPRoute rule's two backendRefs (gateway.networking.k8s.io/v1).

The rule at ``ruleIndex`` must have exactly two backendRefs: the stable and the canary Service
(by name, in the route's namespace). A JSON patch writes both weights as percentages and first
tests that the backendRefs at those positions still name those Services, so a concurrent edit that
reorders them fails the patch instead of sending the weights to the wrong backend.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from checkout_gates.api.spec import GatewayApiRoute
from checkout_gates.api.status import Weights
from checkout_gates.routing.base import (
    RoutingError,
    api_error,
    as_object,
    check_target,
    patch_custom_object,
    read_back,
    split,
)

GROUP = "gateway.networking.k8s.io"
VERSION = "v1"
PLURAL = "httproutes"
DEFAULT_WEIGHT = 1  # Gateway API's default for a backendRef without a weight


class GatewayApiRouter:
    def __init__(
        self,
        api: CustomObjectsApi,
        namespace: str,
        route: GatewayApiRoute,
        *,
        stable_service: str,
        canary_service: str,
    ) -> None:
        self._api = api
        self.namespace = namespace
        self.name = route.http_route
        self.rule_index = route.rule_index
        self.stable_service = stable_service
        self.canary_service = canary_service

    @property
    def description(self) -> str:
        return f"HTTPRoute {self.namespace}/{self.name} rule {self.rule_index}"

    def read_weights(self) -> Weights | None:
        (_, stable), (_, canary) = self._backends(self._get())
        return split(_weight(stable), _weight(canary))

    def set_weights(self, target: Weights) -> Weights:
        check_target(target)
        route = self._get()
        (stable_index, stable), (canary_index, canary) = self._backends(route)
        if (_weight(stable), _weight(canary)) == (target.stable, target.canary) and _has_weights(stable, canary):
            return read_back(split(target.stable, target.canary), self.description)
        base = f"/spec/rules/{self.rule_index}/backendRefs"
        patch: list[dict[str, Any]] = [
            {"op": "test", "path": f"{base}/{stable_index}/name", "value": self.stable_service},
            {"op": "test", "path": f"{base}/{canary_index}/name", "value": self.canary_service},
            {"op": "add", "path": f"{base}/{stable_index}/weight", "value": target.stable},
            {"op": "add", "path": f"{base}/{canary_index}/weight", "value": target.canary},
        ]
        patched = patch_custom_object(
            self._api, GROUP, VERSION, self.namespace, PLURAL, self.name, patch, self.description
        )
        (_, stable), (_, canary) = self._backends(patched)
        return read_back(split(_weight(stable), _weight(canary)), self.description)

    def _get(self) -> dict[str, Any]:
        try:
            route = self._api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, self.name)
        except ApiException as error:
            raise api_error(error, f"HTTPRoute {self.namespace}/{self.name}", "read") from error
        return as_object(route, self.description)

    def _backends(self, route: dict[str, Any]) -> tuple[tuple[int, dict[str, Any]], tuple[int, dict[str, Any]]]:
        """(index, backendRef) of the stable and the canary Service in the rule; RoutingError otherwise."""
        rules = (route.get("spec") or {}).get("rules") or []
        if not isinstance(rules, list) or self.rule_index >= len(rules):
            raise RoutingError(
                f"{self.description}: the route has {len(rules) if isinstance(rules, list) else 0} rule(s), "
                f"so there is no rule at ruleIndex {self.rule_index}"
            )
        refs = (rules[self.rule_index] or {}).get("backendRefs") or []
        found: dict[str, tuple[int, dict[str, Any]]] = {}
        others: list[str] = []
        for index, ref in enumerate(refs):
            name = str(ref.get("name", ""))
            if name in (self.stable_service, self.canary_service) and self._is_local_service(ref):
                if name in found:
                    raise RoutingError(f"{self.description}: Service {name} is named by two backendRefs")
                found[name] = (index, ref)
            else:
                others.append(_describe_ref(ref))
        missing = [name for name in (self.stable_service, self.canary_service) if name not in found]
        if missing or others:
            named = ", ".join(_describe_ref(ref) for ref in refs) or "none"
            problem = (
                f"backendRefs do not name Service {' and '.join(missing)}"
                if missing
                else f"backendRefs name other backends too ({', '.join(others)})"
            )
            raise RoutingError(
                f"{self.description}: {problem}; the rule must split between exactly the stable Service "
                f"{self.stable_service} and the canary Service {self.canary_service} (found: {named})"
            )
        return found[self.stable_service], found[self.canary_service]

    def _is_local_service(self, ref: dict[str, Any]) -> bool:
        return (
            ref.get("group", "") in ("", None)
            and ref.get("kind", "Service") == "Service"
            and ref.get("namespace", self.namespace) == self.namespace
        )


def _weight(ref: dict[str, Any]) -> int:
    value = ref.get("weight", DEFAULT_WEIGHT)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RoutingError(f"backendRef {_describe_ref(ref)} has weight {value!r}, not a whole number >= 0")
    return value


def _has_weights(*refs: dict[str, Any]) -> bool:
    return all("weight" in ref for ref in refs)


def _describe_ref(ref: dict[str, Any]) -> str:
    kind = ref.get("kind", "Service")
    namespace = ref.get("namespace")
    name = ref.get("name", "?")
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
