"""Replica ratio: the split as the replica counts of the stable and the canary Deployment.

For a canary weight ``w`` out of ``totalReplicas`` replicas, the canary gets ``round(total * w / 100)``
(halves round up) and stable the rest, but stable keeps at least one replica while ``w < 100``.
The weights read back are the counts' ratio (``spec.replicas``), which is the split the Service
really makes when it balances evenly over ready pods, and may differ from the target (5 % of 10
replicas is 1 replica, 10 %). Scaling adds capacity before it removes any: the side that grows
is scaled first.
"""

from __future__ import annotations

from kubernetes.client import AppsV1Api, V1Deployment
from kubernetes.client.exceptions import ApiException

from checkout_gates.api.spec import ReplicaRatio
from checkout_gates.api.status import Weights
from checkout_gates.apiserver import FIELD_MANAGER, MERGE_PATCH
from checkout_gates.routing.base import (
    api_error,
    check_target,
    read_back,
    round_half_up,
    split,
)


def replica_counts(total: int, canary_weight: int) -> tuple[int, int]:
    """(stable, canary) replicas for a canary weight in percent."""
    canary = round_half_up(total * canary_weight / 100)
    if canary_weight < 100:
        canary = min(canary, total - 1)
    return total - canary, canary


class ReplicaRouter:
    def __init__(self, api: AppsV1Api, namespace: str, ratio: ReplicaRatio) -> None:
        self._api = api
        self.namespace = namespace
        self.stable_deployment = ratio.stable_deployment
        self.canary_deployment = ratio.canary_deployment
        self.total_replicas = ratio.total_replicas

    @property
    def description(self) -> str:
        return (
            f"Deployments {self.namespace}/{self.stable_deployment} (stable) and "
            f"{self.namespace}/{self.canary_deployment} (canary), {self.total_replicas} replicas"
        )

    def read_weights(self) -> Weights | None:
        stable, canary = self._replicas()
        return split(stable, canary)

    def set_weights(self, target: Weights) -> Weights:
        check_target(target)
        current = self._replicas()
        wanted = replica_counts(self.total_replicas, target.canary)
        stable_first = wanted[0] > current[0]  # grow before shrinking
        order = [(0, self.stable_deployment), (1, self.canary_deployment)]
        if not stable_first:
            order.reverse()
        result = list(current)
        for side, name in order:
            if current[side] != wanted[side]:
                result[side] = self._scale(name, wanted[side])
        return read_back(split(result[0], result[1]), self.description)

    def _replicas(self) -> tuple[int, int]:
        return _replicas_of(self._read(self.stable_deployment)), _replicas_of(self._read(self.canary_deployment))

    def _read(self, name: str) -> V1Deployment:
        try:
            return self._api.read_namespaced_deployment(name, self.namespace)
        except ApiException as error:
            raise api_error(error, f"Deployment {self.namespace}/{name}", "read") from error

    def _scale(self, name: str, replicas: int) -> int:
        body = {"spec": {"replicas": replicas}}
        try:
            deployment = self._api.patch_namespaced_deployment(
                name, self.namespace, body, field_manager=FIELD_MANAGER, _content_type=MERGE_PATCH
            )
        except ApiException as error:
            raise api_error(error, f"Deployment {self.namespace}/{name}", "scale") from error
        return _replicas_of(deployment)


def _replicas_of(deployment: V1Deployment) -> int:
    # An unset spec.replicas defaults to 1 (the API server fills it in; a bare object may lack it).
    if deployment.spec is None or deployment.spec.replicas is None:
        return 1
    return deployment.spec.replicas
