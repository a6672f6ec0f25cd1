"""What every traffic router offers, and the errors and arithmetic they share.

A router owns the split between the stable and the canary Service in one object (an HTTPRoute
rule, a VirtualService route, a canary Ingress, a pair of Deployments). It states targets, never
deltas: ``set_weights`` may be called any number of times with the same target and changes
nothing after the first, and it does not even write when the object is already at the target.
Routers use the synchronous Kubernetes client; run them off the event loop.
"""

from __future__ import annotations

import math
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from checkout_gates.api.status import Weights
from checkout_gates.apiserver import FIELD_MANAGER, JSON_PATCH, JSON_PATCH_TEST_FAILED, server_message


class RoutingError(Exception):
    """The route cannot be read or set: missing, malformed, or refused by the API server."""


class RouteNotFoundError(RoutingError):
    """The object the rollout routes through does not exist."""


class Router(Protocol):
    """A traffic split between the stable and the canary Service."""

    @property
    def description(self) -> str:
        """The object in words, e.g. ``HTTPRoute payments/checkout-api rule 0``."""
        ...

    def read_weights(self) -> Weights | None:
        """The split in effect now; None when the object states none (no canary split at all)."""
        ...

    def set_weights(self, target: Weights) -> Weights:
        """Make the split ``target`` (skipping the write when it already is); the weights read back.

        The weights read back may differ from the target where the router cannot express it
        exactly (replica counts): keep them as what to expect, to detect drift against.
        """
        ...


def check_target(target: Weights) -> None:
    if target.stable + target.canary != 100:
        raise RoutingError(
            f"target weights must add up to 100 (stable {target.stable} + canary {target.canary} "
            f"= {target.stable + target.canary})"
        )


def round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def split(stable: float, canary: float) -> Weights | None:
    """Percent weights from relative ones (e.g. 9 and 1, or replica counts); None when both are 0."""
    if stable < 0 or canary < 0:
        raise RoutingError(f"negative weight (stable {stable:g}, canary {canary:g})")
    if stable + canary == 0:
        return None
    return Weights.canary_at(round_half_up(100 * canary / (stable + canary)))


def api_error(error: ApiException, what: str, action: str) -> RoutingError:
    """A RoutingError with the API server's own message; RouteNotFoundError for a 404."""
    message = server_message(error)
    if error.status == 404:
        return RouteNotFoundError(f"{what} not found ({message})")
    if error.status == 422 and message == JSON_PATCH_TEST_FAILED:
        message += " (a JSON patch test failed: the object changed between read and write; the next try re-reads it)"
    return RoutingError(f"cannot {action} {what}: HTTP {error.status} {error.reason}: {message}")


def as_object(value: object, what: str) -> dict[str, Any]:
    """A custom object as returned by CustomObjectsApi (a dict), or a RoutingError."""
    if not isinstance(value, dict):
        raise RoutingError(f"{what}: the API server returned {type(value).__name__}, not an object")
    return value


def read_back(weights: Weights | None, what: str) -> Weights:
    """The weights read back after a write, which must state a split."""
    if weights is None:
        raise RoutingError(f"{what}: both backends have weight 0 after the write")
    return weights


def patch_custom_object(
    api: Any, group: str, version: str, namespace: str, plural: str, name: str, patch: list[dict[str, Any]], what: str
) -> dict[str, Any]:
    """Apply a JSON patch (its ``test`` ops guard against a concurrent reorder) and return the object."""
    try:
        patched = api.patch_namespaced_custom_object(
            group, version, namespace, plural, name, patch, field_manager=FIELD_MANAGER, _content_type=JSON_PATCH
        )
    except ApiException as error:
        raise api_error(error, what, "patch") from error
    return as_object(patched, what)
