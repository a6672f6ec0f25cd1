"""What every workload adapter offers (docs/workloads.md), like routing/base.py for traffic.

A workload has a *desired* revision (the object people and GitOps change, which runs as the
canary during a rollout) and a *stable* side the operator keeps on the last promoted revision.
Every call states a target, so repeating it changes nothing; all run on the synchronous
Kubernetes client, off the event loop.
"""

from __future__ import annotations

from typing import Protocol

from checkout_gates.rollout.workload import WorkloadState


class WorkloadError(Exception):
    """The workload cannot be read or changed: missing, malformed, not ours, or refused."""


class WorkloadNotFoundError(WorkloadError):
    """The workload the rollout names does not exist (the canary's pods are gone with it)."""


class Workload(Protocol):
    @property
    def description(self) -> str:
        """The objects in words, e.g. ``Deployment payments/checkout-api (stable copy checkout-api-stable)``."""
        ...

    def read(self) -> WorkloadState:
        """Both sides as their controller reports them now."""
        ...

    def scale_canary(self, replicas: int) -> None:
        """Make the desired side run ``replicas`` replicas (no write when it already does)."""
        ...

    def restore(self, revision: str, replacing: str = "") -> None:
        """Write stable revision ``revision`` (the current or the previous one) back into the desired
        side (no write when it has it already), only while that side still has revision
        ``replacing`` (when given); WorkloadError when that revision is not kept or it moved on."""
        ...

    def set_stable(self, revision: str, replicas: int, keep_replicas: bool = False) -> None:
        """Make the stable side run the desired side's template, which must still be ``revision``
        (WorkloadError when it moved on: the newer one is for the next decision), at ``replicas``
        (with ``keep_replicas``, at least ``replicas``: an autoscaler sizes it above that)."""
        ...

    def sync_stable_autoscaler(self) -> None:
        """Give the stable side an autoscaler with the desired side's autoscaler's spec, aimed at
        the stable side (no write when it has it already)."""
        ...
