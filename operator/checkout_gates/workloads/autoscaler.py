"""The Deployment's HorizontalPodAutoscaler, mirrored onto the stable copy (docs/workloads.md, Capacity).

Flagger's answer to an HPA, for the same reason: the user's HPA aims at the user's Deployment, which
is the canary during a rollout and at 0 replicas between rollouts (where an HPA does nothing: it
never scales a target at 0). The stable copy serves all of checkout between rollouts, so it needs
an HPA of its own: ``<deployment>-stable``, the user's HPA's spec with ``scaleTargetRef`` aimed
at the copy, labelled with the rollout's name. An HPA of that name without the label is refused,
never overwritten; the mirror is never deleted (removing the autoscalerRef leaves it scaling the
copy). The user's HPA is only read.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from kubernetes.client.exceptions import ApiException

from checkout_gates.apiserver import FIELD_MANAGER, server_message
from checkout_gates.rollout.workload import AutoscalerState
from checkout_gates.workloads.base import WorkloadError

HPA = "HorizontalPodAutoscaler"


class StableAutoscaler:
    def __init__(
        self,
        api: Any,
        namespace: str,
        name: str,
        *,
        deployment: str,
        stable_name: str,
        labels: dict[str, str],
    ) -> None:
        # Any: an AutoscalingV2Api; these calls send and read plain JSON objects.
        self._api = api
        self.namespace, self.name = namespace, name
        self.deployment, self.stable_name = deployment, stable_name
        self.labels = labels

    def read(self) -> AutoscalerState:
        user = self._user()
        spec = user.get("spec") or {}
        low = _int(spec.get("minReplicas"), 1)
        if low < 1:
            raise WorkloadError(
                f"{HPA} {self.namespace}/{self.name} has minReplicas {low} (scale to zero): not supported with a "
                "workloadRef, which holds the Deployment at 0 between rollouts itself; set minReplicas to 1 or more"
            )
        mirror = self._read(self.stable_name)
        return AutoscalerState(
            min_replicas=low,
            max_replicas=_int(spec.get("maxReplicas"), 1),
            stable_in_sync=mirror is not None and self._ours(mirror) and mirror.get("spec") == self._mirrored(user),
        )

    def sync(self) -> None:
        user = self._user()
        wanted = self._mirrored(user)
        existing = self._read(self.stable_name)
        what = f"{HPA} {self.namespace}/{self.stable_name}"
        if existing is None:
            body = {
                "apiVersion": "autoscaling/v2",
                "kind": HPA,
                "metadata": {"name": self.stable_name, "namespace": self.namespace, "labels": self.labels},
                "spec": wanted,
            }
            try:
                self._api.create_namespaced_horizontal_pod_autoscaler(self.namespace, body, field_manager=FIELD_MANAGER)
            except ApiException as error:
                raise _error(error, what, "create") from error
            return
        if not self._ours(existing):
            raise WorkloadError(
                f"{what} exists and is not the stable copy's autoscaler (no labels {self.labels}): it is never "
                "overwritten; rename or delete it"
            )
        if existing.get("spec") == wanted:
            return
        body = copy.deepcopy(existing)
        body["spec"] = wanted
        body.pop("status", None)
        try:  # at the resourceVersion read: a concurrent change is a 409 and the next pass re-reads
            self._api.replace_namespaced_horizontal_pod_autoscaler(
                self.stable_name, self.namespace, body, field_manager=FIELD_MANAGER
            )
        except ApiException as error:
            raise _error(error, what, "update") from error

    def _user(self) -> dict[str, Any]:
        user = self._read(self.name)
        what = f"{HPA} {self.namespace}/{self.name}"
        if user is None:
            raise WorkloadError(f"{what} not found (spec.workloadRef.autoscalerRef.name)")
        target = (user.get("spec") or {}).get("scaleTargetRef") or {}
        if target.get("kind") != "Deployment" or target.get("name") != self.deployment:
            raise WorkloadError(
                f"{what} scales {target.get('kind', '?')} {target.get('name', '?')}, not Deployment "
                f"{self.deployment} (spec.workloadRef.autoscalerRef.name names the HPA of the workload)"
            )
        return user

    def _mirrored(self, user: dict[str, Any]) -> dict[str, Any]:
        spec = copy.deepcopy(user.get("spec") or {})
        spec["scaleTargetRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.stable_name}
        return dict(spec)

    def _ours(self, hpa: dict[str, Any]) -> bool:
        labels = (hpa.get("metadata") or {}).get("labels") or {}
        return all(labels.get(key) == value for key, value in self.labels.items())

    def _read(self, name: str) -> dict[str, Any] | None:
        what = f"{HPA} {self.namespace}/{name}"
        try:
            response = self._api.read_namespaced_horizontal_pod_autoscaler(name, self.namespace, _preload_content=False)
        except ApiException as error:
            if error.status == 404:
                return None
            raise _error(error, what, "read") from error
        try:
            document = json.loads(response.data)
        except ValueError as error:
            raise WorkloadError(f"{what}: the API server sent no JSON") from error
        if not isinstance(document, dict):
            raise WorkloadError(f"{what}: the API server sent no object")
        return document


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _error(error: ApiException, what: str, action: str) -> WorkloadError:
    return WorkloadError(f"cannot {action} {what}: HTTP {error.status} {error.reason}: {server_message(error)}")
