"""kopf wiring: watch CheckoutRollouts and hand every change to the scheduler.

Only ``on.event`` handlers are used: kopf then keeps no progress or diff-base of its own on our
objects (our status is the only state) and adds no finalizer (nothing needs undoing on delete,
and a finalizer would block ``kubectl delete`` whenever the operator is down).

With leader election (``memo.leader_election``, an ElectionConfig) every replica watches, but
its scheduler only runs passes while the elector says it leads (controller/leadership.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from typing import Any

import kopf
import structlog

from checkout_gates.api.destinations import EgressPolicy
from checkout_gates.api.spec import GROUP, PLURAL, VERSION
from checkout_gates.api.status import CheckoutRolloutStatus
from checkout_gates.audit.port import AuditSink
from checkout_gates.controller.kube import KubeApi
from checkout_gates.controller.leadership import ElectionConfig, ElectionThread, KubeLeaseStore, LeaderElector
from checkout_gates.controller.reconcile import Reconciler
from checkout_gates.controller.scheduler import Scheduler
from checkout_gates.rollout.annotations import stops_exposure

log = structlog.get_logger("checkout_gates.handlers")

# What a change must touch to deserve an immediate pass: not our own status writes.
ANNOTATION_PREFIX = f"{GROUP}/"


def _fingerprint(body: Any) -> tuple[Any, ...]:
    meta = body.get("metadata", {})
    ours = tuple(sorted((k, v) for k, v in (meta.get("annotations") or {}).items() if k.startswith(ANNOTATION_PREFIX)))
    return (meta.get("generation"), ours, meta.get("deletionTimestamp"))


def _stop_requested(body: Any) -> bool:
    """An on-call abort or pause on the object that its status has not consumed yet."""
    annotations = body.get("metadata", {}).get("annotations") or {}
    if not stops_exposure(annotations):
        return False  # the common case, decided without parsing the status (every watch event comes here)
    try:
        status = CheckoutRolloutStatus.model_validate(body.get("status") or {})
    except ValueError:
        status = None  # an unreadable status: better one urgent pass too many than one too few
    return stops_exposure(annotations, status)


class _NoDiffBase(kopf.AnnotationsDiffBaseStorage):
    """No diff base at all. With only ``on.event`` handlers kopf never uses one, yet by default
    it builds one for every watch event (deep copies of the whole object, twice, plus progress
    clean-ups): at 300 rollouts that was the operator's largest CPU cost (bench/scale.py)."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return {}

    def fetch(self, *, body: Any) -> Any:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        return None


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.enabled = False  # our Events are our own; kopf's would repeat them
    settings.persistence.diffbase_storage = _NoDiffBase()
    settings.watching.server_timeout = 300
    api_client = memo["api_client"]
    election: ElectionConfig | None = memo.get("leader_election")
    memo["fingerprints"] = {}
    egress: EgressPolicy = memo.get("egress") or EgressPolicy()
    if egress.allowed is None:
        log.warning("egress unrestricted: rollouts may make the operator query any address (see run --egress-allow)")
    else:
        log.info("egress allowlist", destinations=[str(destination) for destination in egress.allowed])
    audit_sink: AuditSink | None = memo.get("audit_sink")
    if audit_sink is not None:
        log.info("audit sink", sink=audit_sink.description)
    if election is None:
        reconciler = Reconciler(KubeApi(api_client), egress=egress, audit_sink=audit_sink)
        memo["reconciler"] = reconciler
        memo["scheduler"] = Scheduler(reconciler.reconcile, concurrency=memo.get("concurrency", 16))
        log.info("operator started")
        return
    store = KubeLeaseStore(api_client, election.namespace, election.name)
    elector = LeaderElector(store, election)
    reconciler = Reconciler(KubeApi(api_client), may_act=elector.is_leader, egress=egress, audit_sink=audit_sink)
    scheduler = Scheduler(reconciler.reconcile, concurrency=memo.get("concurrency", 16), active=False)
    elector.on_started_leading = scheduler.activate
    elector.on_stopped_leading = scheduler.deactivate
    memo["reconciler"], memo["scheduler"], memo["elector"], memo["lease_store"] = reconciler, scheduler, elector, store
    election_thread = ElectionThread(elector, asyncio.get_running_loop())
    memo["election_thread"] = election_thread
    election_thread.start()
    log.info("operator started, standing by until it leads", identity=elector.identity)


# From the start of shutdown to the process's end at the latest, whatever is still running (a
# thread stuck on a socket cannot be cancelled): inside Kubernetes' default 30 s grace period.
SHUTDOWN_DEADLINE = 20.0


def _exit_by(deadline: float) -> None:
    """A watchdog: end the process ``deadline`` seconds from now if it has not ended by then."""

    def end() -> None:
        log.warning("shutdown took too long; exiting now", deadline=deadline)
        logging.shutdown()
        os._exit(0)

    timer = threading.Timer(deadline, end)
    timer.daemon = True
    timer.start()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    _exit_by(SHUTDOWN_DEADLINE)
    await memo["scheduler"].stop()  # no pass acts any more; then the Lease can go
    election_thread: ElectionThread | None = memo.get("election_thread")
    if election_thread is not None:
        await election_thread.stop()
        memo["lease_store"].close()
    await memo["reconciler"].close()
    log.info("operator stopped")


@kopf.on.event(GROUP, VERSION, PLURAL)
async def on_rollout_event(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    body: Any = event.get("object") or {}
    meta = body.get("metadata", {})
    namespace, name = meta.get("namespace", ""), meta.get("name", "")
    if not name:
        return
    key = (namespace, name)
    scheduler: Scheduler = memo["scheduler"]
    kube: KubeApi = memo["reconciler"].kube
    if event.get("type") == "DELETED":
        memo["fingerprints"].pop(key, None)
        kube.forget(namespace, name)
        scheduler.forget(namespace, name)
        return
    kube.observe(body)  # the next pass starts from this version instead of reading it again
    fingerprint = _fingerprint(body)
    if memo["fingerprints"].get(key) != fingerprint or not scheduler.knows(namespace, name):
        memo["fingerprints"][key] = fingerprint
        scheduler.poke(namespace, name, urgent=_stop_requested(body))


@kopf.on.probe(id="rollouts")
async def rollouts_probe(memo: kopf.Memo, **_: Any) -> int:
    scheduler: Scheduler | None = memo.get("scheduler")
    return len(scheduler.keys) if scheduler else 0
