"""The controller's few calls to the Kubernetes API, off the event loop.

The official client is synchronous; every call runs on a bounded thread pool so that kopf's
event loop never waits on a socket, and a slow API server cannot pile up unbounded threads.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi, EventsV1Api
from kubernetes.client.exceptions import ApiException

from checkout_gates.api.destinations import DESTINATIONS_ANNOTATION, DESTINATIONS_KEY
from checkout_gates.api.spec import GROUP, PLURAL, VERSION
from checkout_gates.apiserver import GONE_OR_CHANGED, JSON_PATCH, MERGE_PATCH, pointer, remove_if_unchanged

T = TypeVar("T")
Raw = dict[str, Any]
REPORTING_CONTROLLER = "gates.checkout.dev/checkout-gates"


def _older(meta: Raw, than: Raw) -> bool:
    """Whether ``meta``'s resourceVersion is older than ``than``'s. Resource versions are opaque in
    general, but etcd-backed ones are increasing integers; anything else counts as not older."""
    try:
        return int(meta.get("resourceVersion", "")) < int(than.get("resourceVersion", ""))
    except ValueError:
        return False


class ConflictError(Exception):
    """The object changed since it was read (HTTP 409): re-read and re-decide."""


class KubeApi:
    def __init__(self, api_client: ApiClient, *, max_workers: int = 8, instance: str = "checkout-gates") -> None:
        self.api_client = api_client
        self._custom = CustomObjectsApi(api_client)
        self._core = CoreV1Api(api_client)
        self._events = EventsV1Api(api_client)
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="kube")
        self.instance = instance
        # The latest version of each rollout seen (the watch, our own writes): a pass starts from
        # it instead of a GET. A stale copy costs a 409 and a fresh read, never a wrong write.
        self._latest: dict[tuple[str, str], Raw] = {}

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def run(self, call: Callable[[], T]) -> T:
        """Run a blocking client call on the pool (also used for the routers)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def observe(self, raw: Raw) -> None:
        """Remember a rollout version from the watch, unless a newer one is known (our own write)."""
        meta = raw.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        known = self._latest.get(key)
        if known is None or not _older(meta, known.get("metadata") or {}):
            self._latest[key] = raw

    def forget(self, namespace: str, name: str) -> None:
        self._latest.pop((namespace, name), None)

    async def get_rollout(self, namespace: str, name: str, *, fresh: bool = False) -> Raw | None:
        """The rollout: the latest version seen, or (``fresh``, or none seen) read from the API server."""
        if not fresh:
            seen = self._latest.get((namespace, name))
            if seen is not None:
                return seen
        try:
            raw = await self.run(
                lambda: cast(Raw, self._custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name))
            )
        except ApiException as error:
            if error.status == 404:
                self.forget(namespace, name)
                return None
            raise
        self._latest[(namespace, name)] = raw
        return raw

    async def replace_status(self, raw: Raw, status: Raw) -> Raw:
        """Write status with the resourceVersion it was read at; ConflictError when it moved on."""
        meta = raw["metadata"]
        body = {
            "apiVersion": raw["apiVersion"],
            "kind": raw["kind"],
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "resourceVersion": meta["resourceVersion"],
            },
            "spec": raw.get("spec", {}),
            "status": status,
        }
        try:
            written = await self.run(
                lambda: cast(
                    Raw,
                    self._custom.replace_namespaced_custom_object_status(
                        GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], body
                    ),
                )
            )
        except ApiException as error:
            if error.status in (404, 409):  # 404: deleted since (a remembered copy); the re-read says so
                raise ConflictError(f"{meta['namespace']}/{meta['name']} changed since it was read") from None
            raise
        self._latest[(meta["namespace"], meta["name"])] = written
        return written

    async def patch_status(self, namespace: str, name: str, status: Raw) -> None:
        """Merge-patch a few status fields; for objects too broken to decide on."""
        body = {"status": status}
        await self.run(
            lambda: self._custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, body, _content_type=MERGE_PATCH
            )
        )

    async def remove_annotation(self, namespace: str, name: str, key: str, value: str) -> bool:
        """Remove ``key`` only if it still holds ``value`` (a JSON patch test), so a newer one stays."""
        patch = remove_if_unchanged(pointer("metadata", "annotations", key), value)
        try:
            await self.run(
                lambda: self._custom.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, name, patch, _content_type=JSON_PATCH
                )
            )
        except ApiException as error:
            if error.status in GONE_OR_CHANGED:  # gone, or the value changed: not ours to remove
                return False
            raise
        return True

    async def secret_values(self, namespace: str, refs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The values of (Secret name, key) pairs; missing ones are left out (the caller says which).

        Key DESTINATIONS_KEY is the Secret's destinations annotation (see api/destinations.py)."""
        values: dict[tuple[str, str], str] = {}
        for secret_name in sorted({name for name, _ in refs}):
            try:
                secret = await self.run(lambda n=secret_name: self._core.read_namespaced_secret(n, namespace))  # type: ignore[misc]
            except ApiException as error:
                if error.status in (403, 404):
                    continue
                raise
            for key, encoded in (secret.data or {}).items():
                values[(secret_name, key)] = base64.b64decode(encoded).decode("utf-8", "replace")
            bound_to = ((secret.metadata and secret.metadata.annotations) or {}).get(DESTINATIONS_ANNOTATION)
            if bound_to is not None:
                values[(secret_name, DESTINATIONS_KEY)] = bound_to
        return {ref: values[ref] for ref in refs if ref in values}

    async def create_event(self, raw: Raw, kind: str, reason: str, message: str) -> None:
        meta = raw["metadata"]
        now = datetime.now(UTC)
        body: Raw = {
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}-", "namespace": meta["namespace"]},
            "eventTime": now.isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self.instance,
            "action": reason,
            "reason": reason,
            "type": kind,
            "note": message[:1024],
            "regarding": {
                "apiVersion": raw["apiVersion"],
                "kind": raw["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid", ""),
                "resourceVersion": meta.get("resourceVersion", ""),
            },
        }
        await self.run(lambda: self._events.create_namespaced_event(meta["namespace"], cast(Any, body)))
