"""Leader election over a ``coordination.k8s.io/v1`` Lease: several replicas run, one acts.

Why a Lease elector of our own rather than kopf's peering:

- kopf's peering pauses kopf's own event processing, but the rollouts' passes run in our scheduler
  (controller/scheduler.py), one loop per rollout, outside kopf: a paused replica would go on
  stepping the rollouts it already carries. We need to stop those loops the moment leadership is
  lost and start them when it is won; kopf offers no such hook.
- kopf's peering is priority-based: replicas of one Deployment with the same priority all pause
  (each sees an equal peer), so each would need a distinct priority, and a standby only takes over
  once the leader's peering record expires (60 s by default). A Lease is mutual exclusion by
  construction, with a standby taking over within the lease duration (15 s).
- a Lease is what the rest of Kubernetes uses (client-go, controller-runtime): ``kubectl get lease``
  shows the holder, and the rights are get/create/update of leases in one namespace, with no CRD of
  our own to install.

The protocol is client-go's. Every ``retry_period`` each replica reads the Lease. A holder renews
it (replace with the resourceVersion it read, so two writers cannot both succeed). A candidate takes
it when it is free (no holder) or expired, and a Lease counts as expired when its record has not
changed for ``leaseDurationSeconds`` as measured by the candidate's own monotonic clock since it
first saw that record, so clock skew between nodes does not matter. A leader that has not renewed
successfully for ``renew_deadline`` (shorter than the lease duration) stops acting, before anyone
else may take over; one that reads another holder's name stops at once. On a clean shutdown the
leader releases the Lease (empty holder), so a standby takes over on its next attempt.

While not leading, ``is_leader`` is False and the scheduler is inactive: no pass runs, and a pass
in flight when leadership is lost is cancelled at its next await (the reconciler also asks
``is_leader`` before each write). A write already on the wire when that happens still carries the
resourceVersion its pass read, so it cannot overwrite the new leader's status; the weights it
states and the pages it sends are keyed, as after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

log = structlog.get_logger("checkout_gates.leadership")

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_LEASE_NAME = "checkout-gates-leader"
RELEASE_ATTEMPTS = 3  # a release read-then-write that meets a renewal still in flight tries again


class LeaseConflictError(Exception):
    """The Lease changed (409) or already exists (on create): someone else wrote first."""


@dataclass(frozen=True)
class LeaseRecord:
    holder: str = ""
    lease_duration_seconds: int = 15
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    transitions: int = 0
    resource_version: str = ""


class LeaseStore(Protocol):
    async def get(self) -> LeaseRecord | None: ...

    async def create(self, record: LeaseRecord) -> LeaseRecord: ...

    async def replace(self, record: LeaseRecord) -> LeaseRecord:
        """Write ``record`` if the Lease is still at ``record.resource_version``, else LeaseConflictError."""
        ...


@dataclass(frozen=True)
class ElectionConfig:
    namespace: str
    name: str = DEFAULT_LEASE_NAME
    identity: str = ""
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs retry period < renew deadline < lease duration "
                f"(got {self.retry_period:g}s, {self.renew_deadline:g}s, {self.lease_duration:g}s)"
            )


def default_identity() -> str:
    """The pod's name (POD_NAME, else the host name) and a random suffix: unique per process start."""
    base = os.environ.get("POD_NAME") or socket.gethostname()
    return f"{base}_{uuid.uuid4().hex[:8]}"


def default_namespace() -> str:
    """POD_NAMESPACE, else the ServiceAccount's namespace in a pod, else ``default``."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    with contextlib.suppress(OSError):
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    return "default"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    """Runs the election loop; ``is_leader`` may be asked at any time, from any coroutine."""

    def __init__(
        self,
        store: LeaseStore,
        config: ElectionConfig,
        *,
        on_started_leading: Callable[[], Awaitable[None] | None] = lambda: None,
        on_stopped_leading: Callable[[], Awaitable[None] | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.store = store
        self.config = config
        self.identity = config.identity or default_identity()
        self.on_started_leading = on_started_leading
        self.on_stopped_leading = on_stopped_leading
        self._clock = clock
        self._wall = wall_clock
        self._leading = False
        self._renewed_at = float("-inf")
        self._observed: LeaseRecord | None = None
        self._observed_at = float("-inf")
        self._holder = ""
        self.transitions = 0  # times this replica became leader

    # --- what the rest of the operator asks ------------------------------------------------------

    def is_leader(self) -> bool:
        """True while this replica holds the Lease and renewed it within the renew deadline."""
        return self._leading and self._clock() - self._renewed_at < self.config.renew_deadline

    @property
    def holder(self) -> str:
        """The holder last read from the Lease ("" when free or unknown)."""
        return self._holder

    # --- the loop --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Try to acquire or renew every retry period, for ever (cancel the task to stop)."""
        log.info(
            "leader election: candidate",
            identity=self.identity,
            lease=f"{self.config.namespace}/{self.config.name}",
            lease_duration=self.config.lease_duration,
        )
        while True:
            await self.step()
            period = self.config.retry_period
            if not self._leading:
                period *= 1.0 + 0.2 * random.random()  # jitter, so standbys do not ask in step
            await asyncio.sleep(period)

    async def step(self) -> bool:
        """One attempt: acquire or renew, then start or stop leading accordingly. True when leading."""
        try:
            held = await asyncio.wait_for(self._try_acquire_or_renew(), timeout=self.config.retry_period * 2)
        except LeaseConflictError:
            held = False
        except Exception as error:  # the API server may be away; the deadline decides what that means
            held = False
            log.warning("leader election: could not read or write the lease", error=f"{type(error).__name__}: {error}")
        if held:
            self._renewed_at = self._clock()
            if not self._leading:
                self._leading = True
                self.transitions += 1
                log.info("leader election: leading", identity=self.identity)
                await _call(self.on_started_leading)
        elif self._leading:
            lost_to = self._holder if self._holder and self._holder != self.identity else ""
            if lost_to or not self.is_leader():
                await self._step_down(f"the lease is held by {lost_to}" if lost_to else "renewal deadline passed")
        return self._leading

    async def _step_down(self, why: str) -> None:
        self._leading = False
        log.warning("leader election: stopped leading", identity=self.identity, reason=why)
        await _call(self.on_stopped_leading)

    async def release(self) -> None:
        """Give the Lease up (on a clean shutdown), so that a standby takes over at once."""
        if not self._leading:
            return
        was_leader = self.is_leader()
        self._leading = False
        await _call(self.on_stopped_leading)
        if not was_leader:
            return
        # A renewal cancelled a moment ago may still be on the wire (the store runs calls on a thread
        # that a cancellation does not stop) and land between our read and our write: re-read, retry.
        for attempt in range(1, RELEASE_ATTEMPTS + 1):
            try:
                current = await asyncio.wait_for(self.store.get(), timeout=self.config.retry_period * 2)
                if current is None or current.holder != self.identity:
                    return
                now = self._wall()
                await asyncio.wait_for(
                    self.store.replace(replace(current, holder="", lease_duration_seconds=1, renew_time=now)),
                    timeout=self.config.retry_period * 2,
                )
                log.info("leader election: lease released", identity=self.identity)
                return
            except LeaseConflictError:
                if attempt == RELEASE_ATTEMPTS:
                    log.warning("leader election: could not release the lease", error="it kept changing")
            except Exception as error:
                log.warning("leader election: could not release the lease", error=f"{type(error).__name__}: {error}")
                return

    async def _try_acquire_or_renew(self) -> bool:
        now = self._wall()
        duration = round(self.config.lease_duration)
        current = await self.store.get()
        if current is None:
            self._holder = self.identity
            created = await self.store.create(
                LeaseRecord(holder=self.identity, lease_duration_seconds=duration, acquire_time=now, renew_time=now)
            )
            self._observe(created)
            return True
        self._observe(current)
        self._holder = current.holder
        if current.holder and current.holder != self.identity:
            expires = self._observed_at + max(current.lease_duration_seconds, 1)
            if self._clock() < expires:
                return False  # held by another replica, which renewed within its lease
        taking_over = current.holder != self.identity
        record = replace(
            current,
            holder=self.identity,
            lease_duration_seconds=duration,
            renew_time=now,
            acquire_time=now if taking_over else current.acquire_time,
            transitions=current.transitions + 1 if taking_over and current.holder else current.transitions,
        )
        written = await self.store.replace(record)
        self._holder = self.identity
        self._observe(written)
        if taking_over:
            log.info("leader election: lease taken", identity=self.identity, previous=current.holder or None)
        return True

    def _observe(self, record: LeaseRecord) -> None:
        """Remember when the record last changed, by the local clock (how expiry is measured)."""
        if self._observed is None or (record.holder, record.renew_time, record.resource_version) != (
            self._observed.holder,
            self._observed.renew_time,
            self._observed.resource_version,
        ):
            self._observed = record
            self._observed_at = self._clock()


async def _call(callback: Callable[[], Awaitable[None] | None]) -> None:
    result = callback()
    if result is not None:
        await result


# --- the election on a thread of its own ---------------------------------------------------------


class ElectionThread:
    """Runs an elector's loop on a thread with an event loop of its own.

    On the operator's loop, any stall (a large answer being judged, a burst of watch events, a slow
    callback) delayed the renewals, and the only leader lost its Lease under load it would have
    survived. Here nothing the operator's loop does delays a renewal. The callbacks (start and
    stop acting) are handed to the operator's loop and not waited for: what keeps a replica from
    acting without the Lease is ``is_leader``, which reads two values the thread sets.
    """

    def __init__(self, elector: LeaderElector, operator_loop: asyncio.AbstractEventLoop) -> None:
        self.elector = elector
        self._operator_loop = operator_loop
        self._started, self._stopped = elector.on_started_leading, elector.on_stopped_leading
        elector.on_started_leading = lambda: self._hand_over(self._started)
        elector.on_stopped_leading = lambda: self._hand_over(self._stopped)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="leader-election", daemon=True)

    def _hand_over(self, callback: Callable[[], Awaitable[None] | None]) -> None:
        async def call() -> None:
            await _call(callback)

        asyncio.run_coroutine_threadsafe(call(), self._operator_loop)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._task = loop.create_task(self.elector.run(), name="leader election")
        self._ready.set()
        loop.run_forever()  # until stop() has given the Lease up
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    async def stop(self) -> None:
        """End the loop and give the Lease up (a clean shutdown), from the operator's loop."""
        if self._loop is None or self._task is None:
            return
        task = self._task

        async def stop_here() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            try:
                await self.elector.release()
            finally:
                asyncio.get_running_loop().call_soon(asyncio.get_running_loop().stop)

        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(stop_here(), self._loop))
        await asyncio.to_thread(self._thread.join, 5.0)


# --- the Kubernetes Lease --------------------------------------------------------------------------


def _micro_time(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class KubeLeaseStore:
    """A ``coordination.k8s.io/v1`` Lease through the official client, off the event loop."""

    def __init__(self, api_client: Any, namespace: str, name: str, *, request_timeout: float = 5.0) -> None:
        from kubernetes.client import CoordinationV1Api  # noqa: PLC0415 - only the operator needs it

        self._api = CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.request_timeout = request_timeout
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="lease")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self, call: Callable[[], Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _body(self, record: LeaseRecord) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if record.resource_version:
            metadata["resourceVersion"] = record.resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": record.holder or None,
                "leaseDurationSeconds": record.lease_duration_seconds,
                "acquireTime": _micro_time(record.acquire_time),
                "renewTime": _micro_time(record.renew_time),
                "leaseTransitions": record.transitions,
            },
        }

    @staticmethod
    def _record(lease: Any) -> LeaseRecord:
        spec = lease.spec
        return LeaseRecord(
            holder=spec.holder_identity or "",
            lease_duration_seconds=spec.lease_duration_seconds or 0,
            acquire_time=spec.acquire_time,
            renew_time=spec.renew_time,
            transitions=spec.lease_transitions or 0,
            resource_version=lease.metadata.resource_version or "",
        )

    async def get(self) -> LeaseRecord | None:
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        try:
            lease = await self._run(
                lambda: self._api.read_namespaced_lease(
                    self.name, self.namespace, _request_timeout=self.request_timeout
                )
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return self._record(lease)

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        body: Any = self._body(replace(record, resource_version=""))
        try:
            lease = await self._run(
                lambda: self._api.create_namespaced_lease(self.namespace, body, _request_timeout=self.request_timeout)
            )
        except ApiException as error:
            if error.status == 409:
                raise LeaseConflictError("the lease was created by another replica first") from None
            raise
        return self._record(lease)

    async def replace(self, record: LeaseRecord) -> LeaseRecord:
        from kubernetes.client.exceptions import ApiException  # noqa: PLC0415

        body: Any = self._body(record)
        try:
            lease = await self._run(
                lambda: self._api.replace_namespaced_lease(
                    self.name, self.namespace, body, _request_timeout=self.request_timeout
                )
            )
        except ApiException as error:
            if error.status == 409:
                raise LeaseConflictError("the lease changed since it was read") from None
            raise
        return self._record(lease)
