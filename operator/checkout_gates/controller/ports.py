"""The ports of the reconcile pass: what the Reconciler needs from the API server, and its routers.

``controller.kube.KubeApi`` implements :class:`KubernetesPort` against a real API server; the unit
tests of the pass (tests/unit/test_reconcile.py) implement it in memory. Keeping it this small is
the point: every call here is a read or a write whose order the pass answers for (reconcile.py).
mypy checks KubeApi against the Protocol where handlers.py hands one to the Reconciler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from checkout_gates.api.spec import CheckoutRolloutSpec
from checkout_gates.controller.kube import ConflictError, Raw
from checkout_gates.routing.base import Router
from checkout_gates.workloads.base import Workload

__all__ = ["ConflictError", "KubernetesPort", "Raw", "RouterFactory", "WorkloadFactory"]

T = TypeVar("T")

# The router (routing/base.py) a rollout's spec names, in the rollout's namespace.
RouterFactory = Callable[[CheckoutRolloutSpec, str], Router]
# The workload a rollout's spec.workloadRef names, in the rollout's namespace, for the rollout of
# that name; None when the spec names none.
WorkloadFactory = Callable[[CheckoutRolloutSpec, str, str], Workload | None]


class KubernetesPort(Protocol):
    async def get_rollout(self, namespace: str, name: str, *, fresh: bool = False) -> Raw | None:
        """The rollout (None when it is gone): the latest version seen (the watch, our own writes),
        or with ``fresh`` (after a conflict) read from the API server."""
        ...

    async def replace_status(self, raw: Raw, status: Raw) -> Raw:
        """Write ``status`` at the resourceVersion ``raw`` was read at and return the object written;
        ConflictError (409, or 404 for an object deleted since) when it moved on. Never forced."""
        ...

    async def patch_status(self, namespace: str, name: str, status: Raw) -> None:
        """Merge-patch a few status fields, with no resourceVersion: for specs too broken to decide on."""
        ...

    async def remove_annotation(self, namespace: str, name: str, key: str, value: str) -> bool:
        """Remove ``key`` only while it still holds ``value``; False when it no longer does (or is gone)."""
        ...

    async def secret_values(self, namespace: str, refs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The values of (Secret name, key) pairs; missing or unreadable ones are left out.

        The key ``api.destinations.DESTINATIONS_KEY`` (never a Secret data key: those match
        ``[-._a-zA-Z0-9]+``) asks for the Secret's destinations annotation instead of a value."""
        ...

    async def create_event(self, raw: Raw, kind: str, reason: str, message: str) -> None:
        """Post an Event about the rollout ``raw``; ``kind`` is Normal or Warning."""
        ...

    async def run(self, call: Callable[[], T]) -> T:
        """Run a blocking call (the routers' synchronous client) off the event loop."""
        ...

    def close(self) -> None: ...
