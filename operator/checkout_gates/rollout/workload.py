"""What the controller saw of a rollout's workload, as data for the state machine.

The Workload adapter (workloads/deployment.py) reads the user's Deployment (the canary: its pod
template is the desired revision) and the operator's stable copy; the state machine
(rollout/release.py) decides from these alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

REVISION_LENGTH = 10


@dataclass(frozen=True)
class DeploymentState:
    """One Deployment as its controller reports it."""

    revision: str
    """Its pod template's revision (``template_revision``); for the stable copy, the revision copied."""
    images: tuple[str, ...] = ()
    replicas: int = 0
    """spec.replicas."""
    ready_replicas: int = 0
    ready: bool = False
    """Rolled out: the controller has seen the latest spec, every replica runs the current template
    and is available, and no old replica is left (what ``kubectl rollout status`` waits for)."""
    failure: str = ""
    """The Deployment controller's own verdict when it gave up (ProgressDeadlineExceeded: ...)."""
    changed_by: str = ""
    """Who last changed its pod template, as admission stamped it; empty where nothing did."""


@dataclass(frozen=True)
class AutoscalerState:
    """The Deployment's HorizontalPodAutoscaler (workloadRef.autoscalerRef), and its stable mirror."""

    min_replicas: int
    max_replicas: int
    stable_in_sync: bool
    """Whether the stable copy's HPA (<name>-stable) exists with this HPA's spec, aimed at the copy."""

    def clamp(self, replicas: int) -> int:
        """``replicas`` within the HPA's bounds (what it would scale a woken Deployment to at once)."""
        return max(self.min_replicas, min(self.max_replicas, replicas))


@dataclass(frozen=True)
class WorkloadState:
    canary: DeploymentState
    """The Deployment the rollout names: people and GitOps change it; during a rollout, the canary."""
    stable: DeploymentState | None
    """The stable copy (<name>-stable), None until the operator has created it."""
    autoscaler: AutoscalerState | None = None
    """With an autoscalerRef: the HPA as read now; None when it cannot be read (then why, below:
    the Deployments are still read and tended, and replicas the HPA would manage still are not set)."""
    autoscaler_error: str = ""


def template_revision(template: Mapping[str, Any]) -> str:
    """A short, stable hash of a pod template as the API server returns it (JSON, keys sorted).

    Not the Deployment's own pod-template-hash: that one lives on ReplicaSets, is computed with
    a collision count, and is not on the Deployment an adapter reads."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:REVISION_LENGTH]
