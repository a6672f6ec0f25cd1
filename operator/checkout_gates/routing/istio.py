"""Istio: the weights of one VirtualService HTTP route's two destinations (networking.istio.io).

The HTTP route is the ``spec.http[]`` entry named ``routeName`` (the first one when no name is
given); its ``route[]`` must have exactly two destinations, whose hosts are the stable and the
canary Service (short name, ``name.namespace``, or ``name.namespace.svc[.cluster domain]``).
The API version is ``v1`` where the cluster serves it, else ``v1beta1`` (Istio before 1.22).
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from checkout_gates.api.spec import IstioRoute
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

GROUP = "networking.istio.io"
VERSIONS = ("v1", "v1beta1")
PLURAL = "virtualservices"

_Destination = tuple[int, dict[str, Any]]


class IstioRouter:
    def __init__(
        self,
        api: CustomObjectsApi,
        namespace: str,
        route: IstioRoute,
        *,
        stable_service: str,
        canary_service: str,
        version: str | None = None,
    ) -> None:
        self._api = api
        self.namespace = namespace
        self.name = route.virtual_service
        self.route_name = route.route_name
        self.stable_service = stable_service
        self.canary_service = canary_service
        self._version = version

    @property
    def description(self) -> str:
        which = f"route {self.route_name}" if self.route_name else "first HTTP route"
        return f"VirtualService {self.namespace}/{self.name} {which}"

    @property
    def version(self) -> str:
        """The served API version of VirtualService, discovered once."""
        if self._version is None:
            self._version = self._discover_version()
        return self._version

    def read_weights(self) -> Weights | None:
        _, (_, stable), (_, canary) = self._destinations(self._get())
        return split(_weight(stable), _weight(canary))

    def set_weights(self, target: Weights) -> Weights:
        check_target(target)
        service = self._get()
        http_index, (stable_index, stable), (canary_index, canary) = self._destinations(service)
        if ("weight" in stable and "weight" in canary) and (_weight(stable), _weight(canary)) == (
            target.stable,
            target.canary,
        ):
            return read_back(split(target.stable, target.canary), self.description)
        base = f"/spec/http/{http_index}/route"
        patch: list[dict[str, Any]] = []
        if self.route_name is not None:
            patch.append({"op": "test", "path": f"/spec/http/{http_index}/name", "value": self.route_name})
        patch += [
            {"op": "test", "path": f"{base}/{stable_index}/destination/host", "value": _host(stable)},
            {"op": "test", "path": f"{base}/{canary_index}/destination/host", "value": _host(canary)},
            {"op": "add", "path": f"{base}/{stable_index}/weight", "value": target.stable},
            {"op": "add", "path": f"{base}/{canary_index}/weight", "value": target.canary},
        ]
        patched = patch_custom_object(
            self._api, GROUP, self.version, self.namespace, PLURAL, self.name, patch, self.description
        )
        _, (_, stable), (_, canary) = self._destinations(patched)
        return read_back(split(_weight(stable), _weight(canary)), self.description)

    def _discover_version(self) -> str:
        for version in VERSIONS:
            try:
                resources = self._api.get_api_resources(GROUP, version)
            except ApiException as error:
                if error.status == 404:
                    continue
                raise api_error(error, f"API {GROUP}/{version}", "discover") from error
            if any(resource.name == PLURAL for resource in resources.resources or []):
                return version
        raise RoutingError(
            f"{self.description}: the cluster serves no VirtualService API ({GROUP} {' or '.join(VERSIONS)}); "
            "is Istio installed?"
        )

    def _get(self) -> dict[str, Any]:
        try:
            service = self._api.get_namespaced_custom_object(GROUP, self.version, self.namespace, PLURAL, self.name)
        except ApiException as error:
            raise api_error(error, f"VirtualService {self.namespace}/{self.name}", "read") from error
        return as_object(service, self.description)

    def _destinations(self, service: dict[str, Any]) -> tuple[int, _Destination, _Destination]:
        """The HTTP route's index and the (index, route entry) of the stable and the canary destination."""
        routes = (service.get("spec") or {}).get("http") or []
        if not isinstance(routes, list) or not routes:
            raise RoutingError(f"{self.description}: the VirtualService has no spec.http routes")
        if self.route_name is None:
            http_index = 0
        else:
            names = [str((route or {}).get("name", "")) for route in routes]
            if self.route_name not in names:
                shown = ", ".join(name or "(unnamed)" for name in names)
                raise RoutingError(
                    f"{self.description}: no spec.http entry is named {self.route_name} (found: {shown})"
                )
            http_index = names.index(self.route_name)
        entries = (routes[http_index] or {}).get("route") or []
        found: dict[str, _Destination] = {}
        others: list[str] = []
        for index, entry in enumerate(entries):
            host = _host(entry)
            service_name = self._service_of(host)
            if service_name is None:
                others.append(host or "(no host)")
                continue
            if service_name in found:
                raise RoutingError(
                    f"{self.description}: Service {service_name} is the destination of two route entries "
                    "(subsets are not supported: the router splits between two Services)"
                )
            found[service_name] = (index, entry)
        missing = [name for name in (self.stable_service, self.canary_service) if name not in found]
        if missing or others:
            hosts = ", ".join(_host(entry) or "(no host)" for entry in entries) or "none"
            problem = (
                f"no destination is Service {' or '.join(missing)}"
                if missing
                else f"other destinations too ({', '.join(others)})"
            )
            raise RoutingError(
                f"{self.description}: {problem}; the route must split between exactly the stable Service "
                f"{self.stable_service} and the canary Service {self.canary_service} (destination hosts: {hosts})"
            )
        return http_index, found[self.stable_service], found[self.canary_service]

    def _service_of(self, host: str) -> str | None:
        for service in (self.stable_service, self.canary_service):
            local = f"{service}.{self.namespace}"
            if host in (service, local, f"{local}.svc") or host.startswith(f"{local}.svc."):
                return service
        return None


def _host(entry: dict[str, Any]) -> str:
    return str(((entry or {}).get("destination") or {}).get("host", ""))


def _weight(entry: dict[str, Any]) -> int:
    value = entry.get("weight", 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RoutingError(f"route destination {_host(entry)} has weight {value!r}, not a whole number >= 0")
    return value
