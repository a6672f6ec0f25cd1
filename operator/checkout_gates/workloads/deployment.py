"""A Deployment as the workload: the user's Deployment is the canary, ``<name>-stable`` the stable copy.

The copy is the user's Deployment as it was at promotion, with every label of its selector given
the ``-stable`` suffix (in the selector and the pod template), so that the two Deployments'
selectors, and the two Services' selectors, never overlap: the stable Service selects e.g.
``app: checkout-api-stable``. Its rolling update never takes a Ready pod away before a new one
is Ready (``maxUnavailable: 0``). It carries no owner reference: deleting the CheckoutRollout
must not garbage-collect the pods that serve all of checkout; it is labelled with the rollout's
name instead, and a Deployment of that name without the label is refused, never overwritten.

Only two fields of the user's Deployment are ever written: ``spec.replicas`` (scale_canary) and,
for an undo on-call asked for, ``spec.template`` (restore: a stable revision's template, kept on
the copy, written back so that it rolls out as a new revision).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from kubernetes.client import AppsV1Api
from kubernetes.client.exceptions import ApiException

from checkout_gates.api.spec import GROUP, STABLE_SUFFIX
from checkout_gates.api.status import IMAGE_LIMIT
from checkout_gates.apiserver import FIELD_MANAGER, JSON_PATCH, MERGE_PATCH, server_message
from checkout_gates.rollout.workload import DeploymentState, WorkloadState, template_revision
from checkout_gates.workloads.autoscaler import StableAutoscaler
from checkout_gates.workloads.base import WorkloadError, WorkloadNotFoundError

ROLLOUT_LABEL = f"{GROUP}/rollout"
REVISION_ANNOTATION = f"{GROUP}/revision"
# Who last changed the pod template: the chart's MutatingAdmissionPolicy writes the requesting user
# into it (admissionPolicy.stampDeployments); the author of a revision never counts as its approver.
CHANGED_BY_ANNOTATION = f"{GROUP}/template-changed-by"
# The stable revision's pod template as the user's Deployment had it, and the one before: what an
# undo writes back. Kept on the copy (not in status: templates are large), up to this size each
# (annotations share 256 KiB); a larger template is not kept and cannot be undone to.
TEMPLATE_ANNOTATION = f"{GROUP}/template"
PREVIOUS_TEMPLATE_ANNOTATION = f"{GROUP}/previous-template"
TEMPLATE_LIMIT = 100_000
MANAGED_BY = ("app.kubernetes.io/managed-by", "checkout-gates")
# Labels by which GitOps tools track what they own: copied, the copy would look like a stray object
# of the user's application (Argo CD prunes it, the operator re-creates it, in a loop).
GITOPS_LABELS = frozenset(
    {
        "app.kubernetes.io/instance",
        "argocd.argoproj.io/instance",
        "kustomize.toolkit.fluxcd.io/name",
        "kustomize.toolkit.fluxcd.io/namespace",
        "helm.toolkit.fluxcd.io/name",
        "helm.toolkit.fluxcd.io/namespace",
    }
)
LABEL_VALUE_LIMIT = 63


class DeploymentWorkload:
    def __init__(
        self,
        api: AppsV1Api,
        namespace: str,
        name: str,
        *,
        rollout: str,
        autoscaler: str | None = None,
        autoscaling_api: Any = None,
    ) -> None:
        # Any: the client's stubs take models, and these calls send and read plain JSON objects.
        self._api: Any = api
        self.namespace = namespace
        self.name = name
        self.stable_name = name + STABLE_SUFFIX
        self.rollout = rollout
        self._autoscaler = (
            None
            if autoscaler is None
            else StableAutoscaler(
                autoscaling_api,
                namespace,
                autoscaler,
                deployment=name,
                stable_name=self.stable_name,
                labels={MANAGED_BY[0]: MANAGED_BY[1], ROLLOUT_LABEL: rollout},
            )
        )

    @property
    def description(self) -> str:
        return f"Deployment {self.namespace}/{self.name} (stable copy {self.stable_name})"

    # --- reads -------------------------------------------------------------------------------

    def read(self) -> WorkloadState:
        user = self._read(self.name)
        if user is None:
            raise WorkloadNotFoundError(f"Deployment {self.namespace}/{self.name} not found (spec.workloadRef.name)")
        stable = self._read(self.stable_name)
        autoscaler, autoscaler_error = None, ""
        if self._autoscaler is not None:
            try:
                autoscaler = self._autoscaler.read()
            except WorkloadError as error:  # the HPA is the optional part: the Deployments still count
                autoscaler_error = str(error)
        return WorkloadState(
            canary=state_of(user, template_revision(_template(user, self.name))),
            stable=None if stable is None else state_of(stable, self._stable_revision(stable)),
            autoscaler=autoscaler,
            autoscaler_error=autoscaler_error,
        )

    def sync_stable_autoscaler(self) -> None:
        if self._autoscaler is None:
            raise WorkloadError(f"{self.description}: no autoscalerRef, so no autoscaler to mirror")
        stable = self._read(self.stable_name)
        if stable is None:
            raise WorkloadError(f"Deployment {self.namespace}/{self.stable_name} not found: nothing to autoscale yet")
        self._stable_revision(stable)  # refuses to aim an HPA at a Deployment that is not our copy
        self._autoscaler.sync()

    def _stable_revision(self, stable: dict[str, Any]) -> str:
        meta = stable.get("metadata") or {}
        if (meta.get("labels") or {}).get(ROLLOUT_LABEL) != self.rollout:
            raise WorkloadError(
                f"Deployment {self.namespace}/{self.stable_name} exists and is not the stable copy of "
                f"CheckoutRollout {self.rollout} (no {ROLLOUT_LABEL}={self.rollout} label): it is never "
                "overwritten; rename or delete it"
            )
        return str((meta.get("annotations") or {}).get(REVISION_ANNOTATION, ""))

    def _read(self, name: str) -> dict[str, Any] | None:
        try:
            response = self._api.read_namespaced_deployment(name, self.namespace, _preload_content=False)
        except ApiException as error:
            if error.status == 404:
                return None
            raise _error(error, f"Deployment {self.namespace}/{name}", "read") from error
        try:
            document = json.loads(response.data)
        except ValueError as error:
            raise WorkloadError(f"Deployment {self.namespace}/{name}: the API server sent no JSON") from error
        if not isinstance(document, dict):
            raise WorkloadError(f"Deployment {self.namespace}/{name}: the API server sent no object")
        return document

    # --- writes ------------------------------------------------------------------------------

    def scale_canary(self, replicas: int) -> None:
        user = self._read(self.name)
        if user is None:
            raise WorkloadNotFoundError(f"Deployment {self.namespace}/{self.name} not found (spec.workloadRef.name)")
        if (user.get("spec") or {}).get("replicas") != replicas:
            self._scale(self.name, replicas)

    def _scale(self, name: str, replicas: int) -> None:
        try:
            self._api.patch_namespaced_deployment(
                name,
                self.namespace,
                {"spec": {"replicas": replicas}},
                field_manager=FIELD_MANAGER,
                _content_type=MERGE_PATCH,
            )
        except ApiException as error:
            raise _error(error, f"Deployment {self.namespace}/{name}", "scale") from error

    def restore(self, revision: str, replacing: str = "") -> None:
        stable = self._read(self.stable_name)
        what = f"Deployment {self.namespace}/{self.stable_name}"
        if stable is None:
            raise WorkloadError(f"{what} not found: no stable revision to go back to")
        self._stable_revision(stable)
        annotations = (stable.get("metadata") or {}).get("annotations") or {}
        template = None
        for key in (TEMPLATE_ANNOTATION, PREVIOUS_TEMPLATE_ANNOTATION):
            try:
                kept = json.loads(annotations.get(key) or "null")
            except ValueError:
                continue
            if isinstance(kept, dict) and template_revision(kept) == revision:
                template = kept
                break
        if template is None:
            raise WorkloadError(
                f"revision {revision} is not kept by {what} (it keeps the stable revision and the one before, "
                f"each up to {TEMPLATE_LIMIT} bytes): undo it with kubectl or a Git revert instead"
            )
        user = self._read(self.name)
        if user is None:
            raise WorkloadError(f"Deployment {self.namespace}/{self.name} not found (spec.workloadRef.name)")
        current = template_revision(_template(user, self.name))
        if current == revision:
            return
        if replacing and current != replacing:
            raise WorkloadError(
                f"Deployment {self.namespace}/{self.name} changed to revision {current} since the undo was asked "
                f"for (it replaced {replacing}): that newer change is not overwritten"
            )
        version = (user.get("metadata") or {}).get("resourceVersion")
        patch = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": version},
            {"op": "replace", "path": "/spec/template", "value": template},
        ]
        try:
            self._api.patch_namespaced_deployment(
                self.name, self.namespace, patch, field_manager=FIELD_MANAGER, _content_type=JSON_PATCH
            )
        except ApiException as error:
            raise _error(error, f"Deployment {self.namespace}/{self.name}", "restore the template of") from error

    def set_stable(self, revision: str, replicas: int, keep_replicas: bool = False) -> None:
        existing = self._read(self.stable_name)
        if existing is not None and self._stable_revision(existing) == revision:
            # The copy has the revision already (the Deployment may have moved on since): replicas only.
            now = (existing.get("spec") or {}).get("replicas")
            if now != replicas and not (keep_replicas and isinstance(now, int) and now >= replicas):
                self._scale(self.stable_name, replicas)
            return
        user = self._read(self.name)
        if user is None:
            raise WorkloadError(f"Deployment {self.namespace}/{self.name} not found (spec.workloadRef.name)")
        now = template_revision(_template(user, self.name))
        if now != revision:
            raise WorkloadError(
                f"Deployment {self.namespace}/{self.name} moved on to revision {now}: revision {revision} "
                "is not copied (the next pass judges the new one)"
            )
        wanted = stable_copy(user, rollout=self.rollout, revision=revision, replicas=replicas)
        if keep_replicas and existing is not None:
            # An HPA sizes the copy: the new template rolls out at the replicas it has now, or the floor.
            now = (existing.get("spec") or {}).get("replicas")
            wanted["spec"]["replicas"] = max(now, replicas) if isinstance(now, int) else replicas
        what = f"Deployment {self.namespace}/{self.stable_name}"
        if existing is None:
            try:
                self._api.create_namespaced_deployment(self.namespace, wanted, field_manager=FIELD_MANAGER)
            except ApiException as error:
                raise _error(error, what, "create") from error
            return
        self._stable_revision(existing)  # refuses a Deployment that is not our copy
        if (existing.get("spec") or {}).get("selector") != wanted["spec"]["selector"]:
            raise WorkloadError(
                f"{what}: its selector {existing['spec'].get('selector')} is not the one the Deployment's now "
                f"maps to ({wanted['spec']['selector']}); a selector cannot change in place: delete the copy "
                "after moving traffic off it"
            )
        if _same_copy(existing, wanted):
            return
        body = copy.deepcopy(existing)
        body["spec"] = {**existing["spec"], **wanted["spec"]}
        body["metadata"]["labels"] = {**(existing["metadata"].get("labels") or {}), **wanted["metadata"]["labels"]}
        annotations = dict(existing["metadata"].get("annotations") or {})
        if annotations.get(REVISION_ANNOTATION) != revision:
            annotations.pop(PREVIOUS_TEMPLATE_ANNOTATION, None)
            if TEMPLATE_ANNOTATION in annotations:
                annotations[PREVIOUS_TEMPLATE_ANNOTATION] = annotations[TEMPLATE_ANNOTATION]
        annotations |= wanted["metadata"]["annotations"]
        if TEMPLATE_ANNOTATION not in wanted["metadata"]["annotations"]:
            annotations.pop(TEMPLATE_ANNOTATION, None)
        body["metadata"]["annotations"] = annotations
        body.pop("status", None)
        try:  # at the resourceVersion read: a concurrent change is a 409 and the next pass re-reads
            self._api.replace_namespaced_deployment(self.stable_name, self.namespace, body, field_manager=FIELD_MANAGER)
        except ApiException as error:
            raise _error(error, what, "update") from error


# --- pure helpers ----------------------------------------------------------------------------------


def state_of(deployment: dict[str, Any], revision: str) -> DeploymentState:
    """What the Deployment controller reports, and whether the rollout of its template is complete."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    replicas = _int(spec.get("replicas", 1))
    updated, total = _int(status.get("updatedReplicas")), _int(status.get("replicas"))
    available, ready_replicas = _int(status.get("availableReplicas")), _int(status.get("readyReplicas"))
    current = _int(status.get("observedGeneration")) >= _int(meta.get("generation"))
    ready = current and replicas > 0 and updated >= replicas and total == updated and available >= replicas
    failure = ""
    for condition in status.get("conditions") or []:
        if isinstance(condition, dict) and condition.get("reason") == "ProgressDeadlineExceeded" and current:
            failure = f"ProgressDeadlineExceeded: {str(condition.get('message', ''))[:300]}"
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    images = tuple(str(c.get("image", "")) for c in containers if isinstance(c, dict))[:IMAGE_LIMIT]
    changed_by = (meta.get("annotations") or {}).get(CHANGED_BY_ANNOTATION, "")
    return DeploymentState(
        revision=revision,
        images=images,
        replicas=replicas,
        ready_replicas=min(ready_replicas, available),
        ready=ready,
        failure=failure,
        changed_by=changed_by.strip()[:253] if isinstance(changed_by, str) else "",
    )


def stable_copy(user: dict[str, Any], *, rollout: str, revision: str, replicas: int) -> dict[str, Any]:
    """The stable copy of ``user`` at ``revision``: its selector's labels suffixed, never unavailable."""
    meta, spec = user.get("metadata") or {}, user.get("spec") or {}
    name = str(meta.get("name", ""))
    selector = spec.get("selector") or {}
    if selector.get("matchExpressions"):
        raise WorkloadError(
            f"Deployment {name}: selector.matchExpressions cannot be given the {STABLE_SUFFIX} suffix; "
            "select its pods with matchLabels only"
        )
    match = selector.get("matchLabels") or {}
    if not match:
        raise WorkloadError(f"Deployment {name}: its selector has no matchLabels to tell the stable copy apart by")
    rewritten = {str(key): f"{value}{STABLE_SUFFIX}" for key, value in match.items()}
    too_long = [key for key, value in rewritten.items() if len(value) > LABEL_VALUE_LIMIT]
    if too_long:
        raise WorkloadError(
            f"Deployment {name}: selector label {too_long[0]}={match[too_long[0]]} is too long to carry the "
            f"{STABLE_SUFFIX} suffix (label values are at most {LABEL_VALUE_LIMIT} characters)"
        )
    template = copy.deepcopy(_template(user, name))
    template_meta = template.setdefault("metadata", {})
    template_meta["labels"] = {**(template_meta.get("labels") or {}), **rewritten}
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items() if k not in GITOPS_LABELS}
    labels |= {key: rewritten[key] for key in labels if key in rewritten}
    labels |= {MANAGED_BY[0]: MANAGED_BY[1], ROLLOUT_LABEL: rollout}
    copied = {
        key: spec[key] for key in ("minReadySeconds", "progressDeadlineSeconds", "revisionHistoryLimit") if key in spec
    }
    annotations = {REVISION_ANNOTATION: revision}
    kept = json.dumps(_template(user, name), sort_keys=True, separators=(",", ":"))
    if len(kept) <= TEMPLATE_LIMIT:
        annotations[TEMPLATE_ANNOTATION] = kept
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name + STABLE_SUFFIX,
            "namespace": meta.get("namespace"),
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            **copied,
            "replicas": replicas,
            "selector": {"matchLabels": rewritten},
            "template": template,
            # Stable serves all of checkout: no Ready pod goes before its replacement is Ready.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
        },
    }


def _same_copy(existing: dict[str, Any], wanted: dict[str, Any]) -> bool:
    spec = existing.get("spec") or {}
    annotations = (existing.get("metadata") or {}).get("annotations") or {}
    return bool(
        annotations.get(REVISION_ANNOTATION) == wanted["metadata"]["annotations"][REVISION_ANNOTATION]
        and spec.get("replicas") == wanted["spec"]["replicas"]
        and spec.get("strategy") == wanted["spec"]["strategy"]
    )


def _template(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    template = (deployment.get("spec") or {}).get("template")
    if not isinstance(template, dict):
        raise WorkloadError(f"Deployment {name} has no pod template")
    return template


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _error(error: ApiException, what: str, action: str) -> WorkloadError:
    if error.status == 404:
        return WorkloadError(f"{what} not found ({server_message(error)})")
    return WorkloadError(f"cannot {action} {what}: HTTP {error.status} {error.reason}: {server_message(error)}")
