"""One reconcile pass of one rollout: read, decide, write status, then carry out the actions.

Order matters for crash safety. The decision's status (with the intended weights, the consumed
annotations and any page to send) is written first, with the resourceVersion it was read at; a
409 means someone else wrote in between, so the pass re-reads and re-decides instead of forcing.
Only then are the actions carried out, and their outcomes (weights the router confirmed, pages
delivered) written in a second status write. A crash between the two leaves an intent in status
that the next pass carries out again; every action is keyed and idempotent, so nothing doubles.

The order of one pass, with the crash points (controller/crashpoints.py) the reliability tests kill
the process at: read and decide; ``before-status-write``; the status write;
``after-status-write`` (and ``after-halt-write`` / ``after-abort-write`` /
``after-promotion-write`` when it moved the phase); the weights patch; ``after-weights-patch``;
annotation removal (``mid-approval`` before an approval's); ``after-annotation-removed``; Events;
``after-event``; ``before-page-delivery``; pages; ``after-page-delivery``; audit records not yet
delivered (``before-audit-delivery``, ``after-audit-delivery``); the outcome write;
``after-outcome-write``. A weights patch never precedes the status write that intends it.

With leader election (controller/leadership.py) ``may_act`` says whether this replica leads;
a pass that finds it no longer does stops before its next write.

The pass reaches the API server through the port of controller/ports.py (KubeApi in the operator)
and the routers through a factory (the cluster's, by default), so that its order of reads and
writes is unit-tested against fakes (tests/unit/test_reconcile.py).
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from kubernetes.client import AppsV1Api, AutoscalingV2Api

from checkout_gates.api.destinations import DESTINATIONS_KEY, EgressPolicy, credential_refusal
from checkout_gates.api.resource import CheckoutRollout, Problem, parse_rollout
from checkout_gates.api.spec import CheckoutRolloutSpec
from checkout_gates.api.status import CheckoutRolloutStatus, Weights
from checkout_gates.apiserver import describe
from checkout_gates.audit.port import AuditDeliveryError, AuditSink
from checkout_gates.controller import telemetry
from checkout_gates.controller.crashpoints import crash_point
from checkout_gates.controller.freezes import ClusterFreezes, FreezeRead
from checkout_gates.controller.kube import KubeApi
from checkout_gates.controller.ports import ConflictError, KubernetesPort, Raw, RouterFactory, WorkloadFactory
from checkout_gates.controller.scheduler import io_wait
from checkout_gates.controller.sources import SourcePool
from checkout_gates.gates.observations import SignalReading
from checkout_gates.metrics.port import MetricsSource
from checkout_gates.metrics.prometheus import PrometheusSource
from checkout_gates.paging.base import PageContext, owner_secrets
from checkout_gates.paging.delivery import new_client, send_page_actions
from checkout_gates.rollout import audit
from checkout_gates.rollout.actions import (
    Action,
    ConsumeAnnotation,
    EmitEvent,
    Notify,
    PageOwner,
    ResolvePage,
    RestoreRevision,
    SetStableRevision,
    SetWeights,
    SyncStableAutoscaler,
    WorkloadAction,
)
from checkout_gates.rollout.annotations import stops_exposure
from checkout_gates.rollout.conditions import observation_conditions
from checkout_gates.rollout.machine import Observations, decide
from checkout_gates.rollout.outcomes import DeliveryOutcome, Outcomes, apply_outcomes
from checkout_gates.rollout.plan import MIN_DELAY, RETRY_SOON, next_pass_delay, reads_needed
from checkout_gates.rollout.workload import WorkloadState
from checkout_gates.routing.base import Router, RoutingError
from checkout_gates.routing.factory import make_router
from checkout_gates.workloads.base import Workload, WorkloadError, WorkloadNotFoundError
from checkout_gates.workloads.deployment import DeploymentWorkload

log = structlog.get_logger("checkout_gates.controller")
# Every transition, as one line each (docs/change-control.md): ship this logger to your audit store.
AUDIT = structlog.get_logger("checkout_gates.audit")

MAX_CONFLICTS = 5
INVALID_RETRY = 60.0
# The crash point reached right after the status write that moved the phase to one of these.
_PHASE_CRASH_POINTS = {
    "Halted": "after-halt-write",
    "Aborted": "after-abort-write",
    "Promoted": "after-promotion-write",
}
# Identical gate queries (same rendered PromQL) of rollouts evaluating within the same bucket of
# this many seconds are sent to Prometheus once (metrics/singleflight.py); 0 turns that off.
QUERY_BUCKET_SECONDS = float(os.environ.get("CHECKOUT_GATES_QUERY_BUCKET", "1"))


# The most one evaluation's gate queries may take together (each query's own timeout is at most
# 60 s, api/quantities.py): well inside the scheduler's pass deadline.
READ_DEADLINE = 75.0
# The most one delivery to the audit sink may take (a sink answering a byte at a time included).
AUDIT_DEADLINE = 15.0


def utc_now() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    def __init__(
        self,
        kube: KubernetesPort,
        *,
        routers: RouterFactory | None = None,
        workloads: WorkloadFactory | None = None,
        clock: Callable[[], datetime] = utc_now,
        pager_client: httpx.AsyncClient | None = None,
        may_act: Callable[[], bool] = lambda: True,
        egress: EgressPolicy | None = None,
        freezes: Callable[[], FreezeRead] | None = None,
        audit_sink: AuditSink | None = None,
    ) -> None:
        self.kube = kube
        self.egress = egress or EgressPolicy()
        self.routers = routers if routers is not None else _cluster_routers(kube)
        self.workloads = workloads if workloads is not None else _cluster_workloads(kube)
        if freezes is None and isinstance(kube, KubeApi):
            freezes = ClusterFreezes(kube.api_client).read
        self.freezes = freezes  # None (a fake port): no freezes
        self.audit_sink = audit_sink
        self.clock = clock
        self.may_act = may_act
        self.pager_client = pager_client or new_client()
        self._sources = SourcePool(lambda: self.clock().timestamp())
        # The spec last parsed per rollout, with its (uid, generation): see _parse.
        self._specs: dict[tuple[str, str], tuple[tuple[Any, Any], CheckoutRolloutSpec]] = {}

    async def close(self) -> None:
        await self._sources.aclose()
        await self.pager_client.aclose()
        if self.audit_sink is not None:
            await self.audit_sink.aclose()
        self.kube.close()

    # --- the pass ----------------------------------------------------------------------------

    async def reconcile(self, namespace: str, name: str) -> float | None:
        """Seconds until this rollout wants another pass; None when it is gone."""
        started = time.perf_counter()
        try:
            return await self._reconcile(namespace, name)
        finally:
            telemetry.RECONCILE_SECONDS.observe(time.perf_counter() - started)

    async def _reconcile(self, namespace: str, name: str) -> float | None:
        for attempt in range(MAX_CONFLICTS):
            # The version the watch delivered (or our last write returned); after a conflict, a fresh read.
            raw = await self.kube.get_rollout(namespace, name, fresh=attempt > 0)
            if raw is None or raw["metadata"].get("deletionTimestamp"):
                self._specs.pop((namespace, name), None)
                return None
            parsed = self._parse(raw)
            if isinstance(parsed, list):
                await self._report_invalid(raw, parsed)
                return INVALID_RETRY
            rollout = parsed
            now = self.clock()
            logger = log.bind(rollout=f"{namespace}/{name}", step=rollout.status.current_step)
            router = self.routers(rollout.spec, namespace)
            observed, router_error = await self._read_router(router)
            workload, workload_error, workload_missing = await self._read_workload(rollout)
            frozen, freezes_error = await self.kube.run(self.freezes) if self.freezes is not None else ((), None)
            # An on-call abort or pause is applied first, with no queries: weights before evaluation.
            urgent = stops_exposure(rollout.metadata.annotations, rollout.status)
            if urgent:
                readings: dict[str, SignalReading] = {}
            else:
                async with io_wait():  # no reconcile slot is held while Prometheus answers (or not)
                    readings = await self._read_gates(rollout, now)
            observations = Observations(
                readings=readings,
                router_weights=observed,
                router_error=router_error,
                workload=workload,
                workload_error=workload_error,
                workload_missing=workload_missing,
                freezes=frozen,
                freezes_error=freezes_error,
            )
            decision = decide(rollout, observations, now)
            status = observation_conditions(decision.status, rollout, router_error, readings, now)
            if not self.may_act():
                logger.info("not leading: the pass stops before writing")
                return RETRY_SOON
            if status != rollout.status:
                crash_point("before-status-write")
                try:
                    raw = await self.kube.replace_status(raw, status.to_wire())
                except ConflictError:
                    telemetry.CONFLICTS.inc()
                    logger.info("status conflict: re-reading and deciding again")
                    continue
                crash_point("after-status-write")
                _audit(rollout, status)
                if status.phase != rollout.status.phase:
                    crash_point(_PHASE_CRASH_POINTS.get(status.phase, ""))
                _count(rollout.status, status, readings)
                if status.phase != rollout.status.phase:
                    logger.info("phase changed", phase=status.phase, reason=status.halt_reason or status.message)
            decided = rollout.model_copy(update={"status": status})
            outcomes = await self._carry_out(raw, decided, decision.actions, now, logger)
            outcomes = await self._export_audit(decided, outcomes, now, logger)
            if outcomes is not None:
                recorded = await self._record_outcomes(namespace, name, outcomes, now, raw)
                if recorded is not None:  # e.g. the router confirmed: a setWeight step completes next pass
                    decided = decided.model_copy(update={"status": recorded})
            # From the end of the pass: the next evaluation is due an interval after this one's
            # `now`, not an interval after this pass (and its queries and writes) finished.
            delay = next_pass_delay(decided, self.clock(), failed=outcomes is not None and outcomes.failed)
            audit_due = self._audit_due(decided, self.clock())
            return delay if audit_due is None else min(delay, max(audit_due, MIN_DELAY))
        log.warning("status kept conflicting; retrying soon", rollout=f"{namespace}/{name}")
        return RETRY_SOON

    def _parse(self, raw: Raw) -> CheckoutRollout | list[Problem]:
        """``parse_rollout``, reusing the spec parsed at the same uid and generation: a spec only
        changes with its generation (status subresource), and validating a spec of dozens of steps
        on every pass was a large share of the operator's CPU at scale (bench/scale.py)."""
        meta = raw.get("metadata", {})
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        version = (meta.get("uid"), meta.get("generation"))
        document = _without_server_fields(raw)
        cached = self._specs.get(key)
        if cached is not None and cached[0] == version and isinstance(document.get("spec"), dict):
            document = {**document, "spec": cached[1]}  # a model instance: pydantic takes it as it is
        parsed = parse_rollout(document)
        if isinstance(parsed, CheckoutRollout):
            self._specs[key] = (version, parsed.spec)
        return parsed

    # --- observations ------------------------------------------------------------------------

    async def _read_router(self, router: Router) -> tuple[Weights | None, str | None]:
        try:
            return await self.kube.run(router.read_weights), None
        except RoutingError as error:
            telemetry.ERRORS.labels("router").inc()
            return None, str(error)

    async def _read_workload(self, rollout: CheckoutRollout) -> tuple[WorkloadState | None, str | None, bool]:
        """The workload as read now, why it could not be read, and whether it is missing altogether."""
        if rollout.spec.workload_ref is None:
            return None, None, False
        workload = self.workloads(rollout.spec, rollout.metadata.namespace, rollout.metadata.name)
        if workload is None:
            return None, None, False
        try:
            return await self.kube.run(workload.read), None, False
        except WorkloadError as error:
            telemetry.ERRORS.labels("workload").inc()
            return None, str(error), isinstance(error, WorkloadNotFoundError)

    async def _read_gates(self, rollout: CheckoutRollout, now: datetime) -> dict[str, SignalReading]:
        reads = reads_needed(rollout, now)
        if not reads:
            return {}
        source = await self._source(rollout)
        if isinstance(source, str):  # refused before any request: the destination or its credential
            return {read.gate.name: SignalReading(read.gate.name, error=source) for read in reads}
        started = time.perf_counter()
        try:
            # Within the pass's deadline, with room to decide: queries queued behind a hanging
            # Prometheus become Inconclusive readings, so the pass still decides (and, at the
            # inconclusive limit, halts and pages) instead of being cancelled before deciding.
            async with asyncio.timeout(READ_DEADLINE):
                readings = await source.read_for(rollout, reads)
        except TimeoutError:
            why = f"no answer from Prometheus within {READ_DEADLINE:g}s for this evaluation's queries"
            readings = {read.gate.name: SignalReading(read.gate.name, error=why) for read in reads}
        telemetry.QUERY_SECONDS.observe(time.perf_counter() - started)
        return readings

    async def _source(self, rollout: CheckoutRollout) -> MetricsSource | str:
        """The rollout's Prometheus, or why the operator may not query it (egress allowlist, or a
        credential whose Secret does not allow that destination)."""
        config = rollout.spec.prometheus
        refusal = self.egress.refusal(config.address, "spec.prometheus.address", base=True)
        if refusal is not None:
            return refusal
        token: str | None = None
        basic: tuple[str, str] | None = None
        namespace = rollout.metadata.namespace
        if config.bearer_token_secret is not None:
            secret, token_key = config.bearer_token_secret.name, config.bearer_token_secret.key
            values = await self.kube.secret_values(namespace, [(secret, token_key), (secret, DESTINATIONS_KEY)])
            refusal = credential_refusal(
                secret, values.get((secret, DESTINATIONS_KEY)), config.address, "spec.prometheus.bearerTokenSecret"
            )
            token = values.get((secret, token_key), "")
        if config.basic_auth is not None:
            auth = config.basic_auth
            refs = [(auth.secret_name, auth.username_key), (auth.secret_name, auth.password_key)]
            values = await self.kube.secret_values(namespace, [*refs, (auth.secret_name, DESTINATIONS_KEY)])
            refusal = refusal or credential_refusal(
                auth.secret_name,
                values.get((auth.secret_name, DESTINATIONS_KEY)),
                config.address,
                "spec.prometheus.basicAuth",
            )
            basic = (values.get(refs[0], ""), values.get(refs[1], ""))
        if refusal is not None:
            return refusal
        return await self._sources.get(
            (config.address, config.timeout, token, basic),
            lambda: PrometheusSource(config, bearer_token=token, basic_auth=basic, dedupe_seconds=QUERY_BUCKET_SECONDS),
        )

    # --- actions -----------------------------------------------------------------------------

    async def _carry_out(
        self,
        raw: Raw,
        rollout: CheckoutRollout,
        actions: Sequence[Action],
        now: datetime,
        logger: Any,
    ) -> Outcomes | None:
        if not actions:
            return None
        if not self.may_act():
            logger.info("not leading: the decision's actions are left to the leader")
            return None
        outcomes = Outcomes()
        meta = rollout.metadata
        weights = [a for a in actions if isinstance(a, SetWeights)]
        if weights:
            target = weights[-1].weights  # each states a target; the last is the one that counts
            router = self.routers(rollout.spec, meta.namespace)
            try:
                outcomes.router_weights = await self.kube.run(lambda: router.set_weights(target))
                outcomes.router_target = target
                logger.info("weights applied", canary=target.canary, router=router.description)
                crash_point("after-weights-patch")
            except RoutingError as error:
                outcomes.router_error = str(error)
                telemetry.ERRORS.labels("router").inc()
                logger.warning("weights not applied", error=str(error))
        # After the weights: traffic leaves the canary before it shrinks, in the same pass or not.
        changes = [a for a in actions if isinstance(a, WorkloadAction)]
        if changes:
            outcomes.workload_error = await self._change_workload(rollout, changes, logger)
        for action in actions:
            if isinstance(action, ConsumeAnnotation):
                if action.key.endswith("/approve"):
                    crash_point("mid-approval")
                await self.kube.remove_annotation(meta.namespace, meta.name, action.key, action.value)
                crash_point("after-annotation-removed")
        for action in actions:
            if isinstance(action, EmitEvent):
                try:
                    await self.kube.create_event(raw, action.type, action.reason, action.message)
                except Exception as error:  # an Event is a courtesy; status history is the record
                    telemetry.ERRORS.labels("event").inc()
                    logger.warning("event not posted", reason=action.reason, error=describe(error))
                crash_point("after-event")
        pages = [a for a in actions if isinstance(a, PageOwner | ResolvePage | Notify)]
        if pages:
            crash_point("before-page-delivery")
            async with io_wait():  # a slow pager holds no reconcile slot either
                outcomes.deliveries = await self._send_pages(rollout, pages, now)
            crash_point("after-page-delivery")
            for delivery in outcomes.deliveries:
                logger.info(
                    "page delivered" if delivery.ok else "page delivery failed",
                    target=delivery.target_name,
                    resolved=delivery.resolved,
                    error=delivery.error or None,
                )
        if (
            outcomes.router_target is None
            and outcomes.router_error is None
            and outcomes.workload_error is None
            and not outcomes.deliveries
        ):
            return None
        return outcomes

    async def _export_audit(
        self, rollout: CheckoutRollout, outcomes: Outcomes | None, now: datetime, logger: Any
    ) -> Outcomes | None:
        """Deliver the history entries the audit sink has yet to take (after the status write
        that recorded them: a record is never of a transition that did not happen), to record how
        far it got with the other outcomes. A crash before that record sends them again, same keys."""
        if self.audit_sink is None or not self.may_act():
            return outcomes
        wait = self._audit_due(rollout, now)
        if wait is not None and wait > 0:
            return outcomes  # a failed delivery waits its backoff (the pass returns by then)
        sent = audit.pending(rollout)
        if not sent.records and not sent.lost:
            return outcomes
        if sent.lost:
            telemetry.AUDIT_LOST.inc(sent.lost)
            logger.error(
                "audit records lost: they left the status history before the audit sink took them",
                lost=sent.lost,
                through_seq=sent.gone_through,
            )
        error = ""
        if sent.records:
            crash_point("before-audit-delivery")
            try:
                async with io_wait(), asyncio.timeout(AUDIT_DEADLINE):
                    await self.audit_sink.send(sent.records)
                telemetry.AUDIT_RECORDS.labels("delivered").inc(len(sent.records))
                crash_point("after-audit-delivery")
            except (AuditDeliveryError, TimeoutError) as failure:
                error = str(failure) or f"no answer from the audit sink within {AUDIT_DEADLINE:g}s"
            except Exception as failure:  # never the pass's end: the rollout's outcomes still get written
                error = f"audit sink: {type(failure).__name__}"
            if error:
                telemetry.AUDIT_RECORDS.labels("failed").inc(len(sent.records))
                logger.warning("audit records not delivered", records=len(sent.records), error=error)
        outcomes = outcomes if outcomes is not None else Outcomes()
        outcomes.audit_sent, outcomes.audit_error = sent, error
        return outcomes

    def _audit_due(self, rollout: CheckoutRollout, now: datetime) -> float | None:
        """Seconds until records the sink has yet to take are sent (again); None when none wait."""
        if self.audit_sink is None:
            return None
        if not audit.waiting(rollout.status):
            return None
        export = rollout.status.audit
        backoff = audit.retry_after(export)
        if backoff is None or export is None or export.attempted_at is None:
            return 0.0
        return max(0.0, (export.attempted_at - now).total_seconds() + backoff)

    async def _change_workload(
        self,
        rollout: CheckoutRollout,
        changes: Sequence[WorkloadAction],
        logger: Any,
    ) -> str:
        """Carry out the workload's actions (each states a target); "" when all took, else why not."""
        workload = self.workloads(rollout.spec, rollout.metadata.namespace, rollout.metadata.name)
        if workload is None:
            return ""
        for change in changes:
            try:
                if isinstance(change, SetStableRevision):
                    set_stable = functools.partial(
                        workload.set_stable, change.revision, change.replicas, change.keep_replicas
                    )
                    await self.kube.run(set_stable)
                    logger.info("stable copy set", revision=change.revision, replicas=change.replicas)
                    crash_point("after-stable-copy")
                elif isinstance(change, SyncStableAutoscaler):
                    await self.kube.run(workload.sync_stable_autoscaler)
                    logger.info("stable autoscaler synced", reason=change.reason)
                elif isinstance(change, RestoreRevision):
                    await self.kube.run(functools.partial(workload.restore, change.revision, change.replacing))
                    logger.info("revision restored", revision=change.revision, reason=change.reason)
                else:
                    await self.kube.run(functools.partial(workload.scale_canary, change.replicas))
                    logger.info("canary scaled", replicas=change.replicas, reason=change.reason)
                    crash_point("after-canary-scale")
            except WorkloadError as error:
                telemetry.ERRORS.labels("workload").inc()
                logger.warning("workload not changed", error=str(error))
                return str(error)[:1024]
        return ""

    async def _send_pages(
        self, rollout: CheckoutRollout, pages: Sequence[PageOwner | ResolvePage | Notify], now: datetime
    ) -> list[DeliveryOutcome]:
        owner = rollout.spec.owner
        secrets = await self.kube.secret_values(rollout.metadata.namespace, owner_secrets(owner))
        page = rollout.status.page
        context = PageContext(
            namespace=rollout.metadata.namespace,
            name=rollout.metadata.name,
            owner=owner.name,
            triggered_at=page.triggered_at if page else None,
        )
        return await send_page_actions(pages, owner, secrets, context, self.pager_client, now, egress=self.egress)

    async def _record_outcomes(
        self, namespace: str, name: str, outcomes: Outcomes, now: datetime, written: Raw | None = None
    ) -> CheckoutRolloutStatus | None:
        """Write the outcomes into status; the status written, or None when nothing was."""
        for attempt in range(MAX_CONFLICTS):
            # First from what the status write returned (the latest version), then fresh reads.
            raw = (
                written
                if attempt == 0 and written is not None
                else await self.kube.get_rollout(namespace, name, fresh=True)
            )
            if raw is None:
                return None
            parsed = self._parse(raw)
            if isinstance(parsed, list):
                return None
            status = apply_outcomes(parsed, outcomes, now)
            if status == parsed.status:
                return None
            if not self.may_act():
                return None  # the leader repeats what is unrecorded; a write from here could only be stale
            try:
                await self.kube.replace_status(raw, status.to_wire())
                crash_point("after-outcome-write")
                return status
            except ConflictError:
                telemetry.CONFLICTS.inc()
        log.warning("could not record action outcomes; the next pass repeats them", rollout=f"{namespace}/{name}")
        return None

    async def _report_invalid(self, raw: Raw, problems: list[Problem]) -> None:
        meta = raw["metadata"]
        message = "; ".join(str(p) for p in problems)[:1024]
        log.warning("rollout is invalid", rollout=f"{meta['namespace']}/{meta['name']}", problems=message)
        condition = {
            "type": "SpecValid",
            "status": "False",
            "reason": "Invalid",
            "message": message,
            "lastTransitionTime": self.clock().isoformat(timespec="seconds").replace("+00:00", "Z"),
            "observedGeneration": meta.get("generation", 0),
        }
        try:
            await self.kube.patch_status(
                meta["namespace"], meta["name"], {"conditions": [condition], "message": message}
            )
        except Exception as error:
            log.warning("could not report the invalid spec", error=describe(error))


def _cluster_workloads(kube: KubernetesPort) -> WorkloadFactory:
    """The workloads of a real cluster; a fake port without one gets none (its rollouts name none)."""
    api = AppsV1Api(kube.api_client) if isinstance(kube, KubeApi) else None
    autoscaling = AutoscalingV2Api(kube.api_client) if isinstance(kube, KubeApi) else None

    def workload(spec: CheckoutRolloutSpec, namespace: str, rollout: str) -> Workload | None:
        ref = spec.workload_ref
        if ref is None:
            return None
        if api is None:
            raise TypeError(f"{type(kube).__name__} is not a KubeApi: give the Reconciler its workloads")
        autoscaler = ref.autoscaler_ref.name if ref.autoscaler_ref is not None else None
        return DeploymentWorkload(
            api, namespace, ref.name, rollout=rollout, autoscaler=autoscaler, autoscaling_api=autoscaling
        )

    return workload


def _cluster_routers(kube: KubernetesPort) -> RouterFactory:
    """The routers of a real cluster, on the API client of the KubeApi the reconciler was given.

    Only KubeApi has a cluster behind it; any other port (a test's fake) must bring its routers.
    """
    if not isinstance(kube, KubeApi):
        raise TypeError(f"{type(kube).__name__} is not a KubeApi: give the Reconciler its routers")
    api_client = kube.api_client

    def router(spec: CheckoutRolloutSpec, namespace: str) -> Router:
        return make_router(spec, namespace, api_client)

    return router


# --- pure helpers --------------------------------------------------------------------------------

_SERVER_META = ("managedFields",)


def _without_server_fields(raw: Raw) -> Raw:
    meta = {k: v for k, v in raw.get("metadata", {}).items() if k not in _SERVER_META}
    return {**raw, "metadata": meta}


def _audit(rollout: CheckoutRollout, after: CheckoutRolloutStatus) -> None:
    """One audit line per transition the status write just recorded, on its own logger, after the
    write (a line is never of a transition that did not happen; a crash between the two loses the
    line, never the status history, nor the sink's record of it). The same record as the sink's:
    ``key`` (rollout, uid, seq) tells a repeat apart."""
    for record in audit.new_records(rollout, after):
        AUDIT.info("audit", logger="checkout_gates.audit", phase=after.phase, **record)


def _count(before: CheckoutRolloutStatus, after: CheckoutRolloutStatus, readings: Mapping[str, SignalReading]) -> None:
    if readings:
        telemetry.EVALUATIONS.inc()
        for gate in after.gates:
            telemetry.VERDICTS.labels(gate.name, gate.verdict).inc()
    known = {(e.time, e.action, e.actor) for e in before.history}
    for entry in after.history:
        if (entry.time, entry.action, entry.actor) not in known:
            telemetry.TRANSITIONS.labels(entry.action).inc()
    if after.phase != before.phase and after.phase in ("Halted", "Aborted"):
        telemetry.HALTS.labels(after.phase).inc()
