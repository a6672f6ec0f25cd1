"""Whether the canary's faults are in force: always, or only while the canary runs a faulty build.

``CanaryRevision`` follows the pods of a workload's Deployment (the canary, in the workload model
of docs/workloads.md): while any of its Ready pods runs an image whose tag carries ``marker``
(``checkout:v2-duplicate-charges``), the scenario's canary faults apply; otherwise the canary
behaves like stable. So "deploy a bad image" is what makes the simulated canary bad, and a
rollout that moves on to a good image (or back to stable's) stops the fault. Faults on stable or
both variants are not the canary's build and always apply. A failed read keeps the last answer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

REQUEST_TIMEOUT = 5.0

log = structlog.get_logger("checkout_gates_lab.sim")


class FaultGate(Protocol):
    def canary_faulty(self) -> bool:
        """Whether the canary's faults apply now."""
        ...

    async def follow(self) -> None:
        """Keep the answer current until cancelled."""
        ...


class AlwaysFaulty:
    """The canary is the faulty build from the start (a simulator without workloads)."""

    def canary_faulty(self) -> bool:
        return True

    async def follow(self) -> None:
        return None


@dataclass(frozen=True)
class RevisionTarget:
    """The canary's pods, by label selector, and the image tag marker of a faulty build."""

    namespace: str
    selector: str  # e.g. app=checkout-api
    marker: str  # e.g. -duplicate-charges
    kubeconfig: Path | None = None
    interval: float = 1.0


class CanaryRevision:
    def __init__(self, target: RevisionTarget, api: Any = None) -> None:
        self.target = target
        self._api = api if api is not None else _core_api(target.kubeconfig)
        self._faulty = False
        self._failing = False

    def canary_faulty(self) -> bool:
        return self._faulty

    def read(self) -> bool:
        pods = self._api.list_namespaced_pod(
            self.target.namespace, label_selector=self.target.selector, _request_timeout=REQUEST_TIMEOUT
        )
        return any(_ready(pod) and _carries(pod, self.target.marker) for pod in pods.items)

    async def refresh(self) -> None:
        try:
            faulty = await asyncio.to_thread(self.read)
        except Exception as error:  # API errors, network errors: keep the last answer
            if not self._failing:
                log.warning("cannot read the canary's pods", selector=self.target.selector, error=str(error))
            self._failing = True
            return
        self._failing = False
        if faulty != self._faulty:
            log.info("canary build", faulty=faulty, marker=self.target.marker)
        self._faulty = faulty

    async def follow(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.target.interval)


def _ready(pod: Any) -> bool:
    if pod.metadata.deletion_timestamp is not None:
        return False
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _carries(pod: Any, marker: str) -> bool:
    return any(marker in (container.image or "").rsplit(":", 1)[-1] for container in pod.spec.containers)


def _core_api(kubeconfig: Path | None) -> Any:
    from kubernetes import client, config  # noqa: PLC0415 - a second to import; only when used

    api_client = config.new_client_from_config(config_file=str(kubeconfig) if kubeconfig else None)  # type: ignore[no-untyped-call]
    return client.CoreV1Api(api_client)
