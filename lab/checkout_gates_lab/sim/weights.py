"""Where the canary's share of simulated traffic comes from: a fixed weight, or an HTTPRoute.

``RouteWeights`` reads ``spec.rules[ruleIndex].backendRefs[].weight`` of a Gateway API HTTPRoute
every ``interval`` seconds and applies canary / (stable + canary) as the canary's percentage:
the simulated traffic follows whatever the operator (or a person) writes to the route. A
backendRef without a weight counts 1 (Gateway API's default); a service missing from the rule
gets no traffic. When a read fails, the last weight read stays in force.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"
REQUEST_TIMEOUT = 5.0

log = structlog.get_logger("checkout_gates_lab.sim")


class WeightError(ValueError):
    """The route does not say how to split traffic between the two services."""


class WeightSource(Protocol):
    def weight(self) -> float:
        """The canary's share of traffic now, in percent."""
        ...

    async def follow(self) -> None:
        """Keep the weight current until cancelled."""
        ...


class FixedWeight:
    def __init__(self, percent: float) -> None:
        if not 0.0 <= percent <= 100.0:
            raise ValueError(f"canary weight must be within 0..100, not {percent}")
        self.percent = percent

    def weight(self) -> float:
        return self.percent

    async def follow(self) -> None:
        return None


def canary_percent(route: Mapping[str, Any], stable_service: str, canary_service: str, rule_index: int = 0) -> float:
    """The canary's percentage of one HTTPRoute rule's traffic between the two services."""
    try:
        refs = route["spec"]["rules"][rule_index].get("backendRefs") or []
    except (KeyError, IndexError, TypeError, AttributeError) as error:
        raise WeightError(f"the route has no spec.rules[{rule_index}]") from error
    weights: dict[str, float] = {}
    for ref in refs:
        name = ref.get("name")
        if name in (stable_service, canary_service) and ref.get("kind", "Service") == "Service":
            weights[name] = weights.get(name, 0.0) + float(ref.get("weight", 1))
    if not weights:
        raise WeightError(f"spec.rules[{rule_index}].backendRefs names neither {stable_service} nor {canary_service}")
    total = sum(weights.values())
    return 100.0 * weights.get(canary_service, 0.0) / total if total > 0 else 0.0


@dataclass(frozen=True)
class RouteTarget:
    """Which HTTPRoute to follow, and how to reach the API server."""

    http_route: str
    stable_service: str
    canary_service: str
    namespace: str = "default"
    kubeconfig: Path | None = None  # None: $KUBECONFIG or ~/.kube/config
    rule_index: int = 0
    interval: float = 1.0


class RouteWeights:
    """Follows an HTTPRoute's weights; starts at 0 % until the first successful read."""

    def __init__(self, target: RouteTarget, api: Any = None) -> None:
        self.target = target
        self._api = api if api is not None else _custom_objects_api(target.kubeconfig)
        self._percent = 0.0
        self._failing = False
        self.reads = 0  # successful reads so far

    def weight(self) -> float:
        return self._percent

    def read(self) -> float:
        """Read the route once (blocking) and return the canary's percentage."""
        t = self.target
        route = self._api.get_namespaced_custom_object(
            GROUP, VERSION, t.namespace, PLURAL, t.http_route, _request_timeout=REQUEST_TIMEOUT
        )
        return canary_percent(route, t.stable_service, t.canary_service, t.rule_index)

    async def refresh(self) -> None:
        """One read in a worker thread; a failure keeps the last weight and is logged once."""
        try:
            percent = await asyncio.to_thread(self.read)
        except Exception as error:  # API errors, network errors, a malformed route: keep going
            if not self._failing:
                log.warning("cannot read canary weight", route=self.target.http_route, error=str(error))
            self._failing = True
            return
        if self._failing:
            log.info("canary weight readable again", route=self.target.http_route)
        self._failing = False
        if percent != self._percent or self.reads == 0:
            log.info("canary weight", route=self.target.http_route, percent=round(percent, 3))
        self._percent = percent
        self.reads += 1

    async def follow(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.target.interval)


def _custom_objects_api(kubeconfig: Path | None) -> Any:
    # The kubernetes client takes a second to import: only a simulator that follows a route pays for it.
    from kubernetes import client, config  # noqa: PLC0415

    try:
        api_client = config.new_client_from_config(config_file=str(kubeconfig) if kubeconfig else None)  # type: ignore[no-untyped-call]
    except (config.ConfigException, OSError) as error:
        raise WeightError(f"cannot load the kubeconfig: {error}") from error
    return client.CustomObjectsApi(api_client)
