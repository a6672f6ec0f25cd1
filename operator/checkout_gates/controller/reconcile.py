"""One reconcile pass of one rollout: read, decide, write status, then carry out the actions.

Order matters for crash safety. The decision's status (with the intended weights, the consumed
annotations and any page to send) is written first, with the resourceVersion it was read at; a
409 means someone else wrote in between, so the pass re-reads and re-decides instead of forcing.
Only then are the actions carried out, and their outcomes (weights the router confirmed, pages
delivered) written in a second status write. A crash between the two leaves an intent in status
that the next pass carries out again; every action is keyed and idempotent, so nothing doubles.

The order of one pass, with the crash points (controller/faults.py) the reliability tests kill
the process at: read and decide; ``before-status-write``; the status write;
``after-status-write`` (and ``after-halt-write`` / ``after-abort-write`` /
``after-promotion-write`` when it moved the phase); the weights patch; ``after-weights-patch``;
annotation removal (``mid-approval`` before an approval's); ``after-annotation-removed``; Events;
``after-event``; ``before-page-delivery``; pages; ``after-page-delivery``; the outcome write;
``after-outcome-write``. A weights patch never precedes the status write that intends it.

With leader election (controller/leadership.py) ``may_act`` says whether this replica leads;
a pass that finds it no longer does stops before its next write.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog

from checkout_gates.api.quantities import parse_duration
from checkout_gates.api.resource import CheckoutRollout, Problem, parse_rollout
from checkout_gates.api.spec import CheckoutRolloutSpec
from checkout_gates.api.status import TERMINAL_PHASES, CheckoutRolloutStatus, Weights
from checkout_gates.controller import telemetry
from checkout_gates.controller.faults import crash_point
from checkout_gates.controller.kube import ConflictError, KubeApi, Raw, describe
from checkout_gates.gates.observations import SignalReading
from checkout_gates.metrics.port import MetricsSource
from checkout_gates.metrics.prometheus import PrometheusSource
from checkout_gates.paging.base import PageContext, owner_secrets
from checkout_gates.paging.delivery import DeliveryOutcome, new_client, send_page_actions
from checkout_gates.rollout.actions import Action, ConsumeAnnotation, EmitEvent, PageOwner, ResolvePage, SetWeights
from checkout_gates.rollout.conditions import set_condition
from checkout_gates.rollout.machine import Observations, decide
from checkout_gates.rollout.pages import record_delivery
from checkout_gates.rollout.plan import reads_needed
from checkout_gates.routing.base import Router, RoutingError
from checkout_gates.routing.factory import make_router

log = structlog.get_logger("checkout_gates.controller")

MAX_CONFLICTS = 5
RETRY_SOON = 5.0  # seconds, after a failed action
IDLE_RESYNC = 300.0  # seconds, for a rollout with nothing due
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


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Outcomes:
    """What carrying out a decision's actions changed, to record in status."""

    router_target: Weights | None = None
    router_weights: Weights | None = None
    router_error: str | None = None
    deliveries: list[DeliveryOutcome] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.router_error is not None or any(not d.ok for d in self.deliveries)


class Reconciler:
    def __init__(
        self,
        kube: KubeApi,
        *,
        clock: Callable[[], datetime] = utc_now,
        pager_client: httpx.AsyncClient | None = None,
        may_act: Callable[[], bool] = lambda: True,
    ) -> None:
        self.kube = kube
        self.clock = clock
        self.may_act = may_act
        self.pager_client = pager_client or new_client()
        self._sources: dict[tuple[Any, ...], MetricsSource] = {}
        # The spec last parsed per rollout, with its (uid, generation): see _parse.
        self._specs: dict[tuple[str, str], tuple[tuple[Any, Any], CheckoutRolloutSpec]] = {}

    async def close(self) -> None:
        for source in self._sources.values():
            await source.aclose()
        await self.pager_client.aclose()
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
            router = make_router(rollout.spec, namespace, self.kube.api_client)
            observed, router_error = await self._read_router(router)
            readings = await self._read_gates(rollout, now)
            decision = decide(rollout, Observations(readings=readings, router_weights=observed), now)
            status = _controller_conditions(decision.status, rollout, router_error, readings, now)
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
                if status.phase != rollout.status.phase:
                    crash_point(_PHASE_CRASH_POINTS.get(status.phase, ""))
                _count(rollout.status, status, readings)
                if status.phase != rollout.status.phase:
                    logger.info("phase changed", phase=status.phase, reason=status.halt_reason or status.message)
            decided = rollout.model_copy(update={"status": status})
            outcomes = await self._carry_out(raw, decided, decision.actions, now, logger)
            if outcomes is not None:
                await self._record_outcomes(namespace, name, outcomes, now, raw)
            # From the end of the pass: the next evaluation is due an interval after this one's
            # `now`, not an interval after this pass (and its queries and writes) finished.
            return _next_delay(decided, self.clock(), failed=outcomes is not None and outcomes.failed)
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

    async def _read_gates(self, rollout: CheckoutRollout, now: datetime) -> dict[str, SignalReading]:
        reads = reads_needed(rollout, now)
        if not reads:
            return {}
        source = await self._source(rollout)
        started = time.perf_counter()
        readings = await source.read_gates(
            [read.gate for read in reads],
            spec=rollout.spec,
            namespace=rollout.metadata.namespace,
            name=rollout.metadata.name,
            window_seconds={read.gate.name: read.window_seconds for read in reads},
        )
        telemetry.QUERY_SECONDS.observe(time.perf_counter() - started)
        return readings

    async def _source(self, rollout: CheckoutRollout) -> MetricsSource:
        config = rollout.spec.prometheus
        token: str | None = None
        basic: tuple[str, str] | None = None
        namespace = rollout.metadata.namespace
        if config.bearer_token_secret is not None:
            ref = (config.bearer_token_secret.name, config.bearer_token_secret.key)
            token = (await self.kube.secret_values(namespace, [ref])).get(ref, "")
        if config.basic_auth is not None:
            auth = config.basic_auth
            refs = [(auth.secret_name, auth.username_key), (auth.secret_name, auth.password_key)]
            values = await self.kube.secret_values(namespace, refs)
            basic = (values.get(refs[0], ""), values.get(refs[1], ""))
        key = (config.address, config.timeout, token, basic)
        if key not in self._sources:
            self._sources[key] = PrometheusSource(
                config, bearer_token=token, basic_auth=basic, dedupe_seconds=QUERY_BUCKET_SECONDS
            )
        return self._sources[key]

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
            router = make_router(rollout.spec, meta.namespace, self.kube.api_client)
            try:
                outcomes.router_weights = await self.kube.run(lambda: router.set_weights(target))
                outcomes.router_target = target
                logger.info("weights applied", canary=target.canary, router=router.description)
                crash_point("after-weights-patch")
            except RoutingError as error:
                outcomes.router_error = str(error)
                telemetry.ERRORS.labels("router").inc()
                logger.warning("weights not applied", error=str(error))
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
        pages = [a for a in actions if isinstance(a, PageOwner | ResolvePage)]
        if pages:
            crash_point("before-page-delivery")
            outcomes.deliveries = await self._send_pages(rollout, pages, now)
            crash_point("after-page-delivery")
            for delivery in outcomes.deliveries:
                logger.info(
                    "page delivered" if delivery.ok else "page delivery failed",
                    target=delivery.target_name,
                    resolved=delivery.resolved,
                    error=delivery.error or None,
                )
        if outcomes.router_target is None and outcomes.router_error is None and not outcomes.deliveries:
            return None
        return outcomes

    async def _send_pages(
        self, rollout: CheckoutRollout, pages: Sequence[PageOwner | ResolvePage], now: datetime
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
        return await send_page_actions(pages, owner, secrets, context, self.pager_client, now)

    async def _record_outcomes(
        self, namespace: str, name: str, outcomes: Outcomes, now: datetime, written: Raw | None = None
    ) -> None:
        for attempt in range(MAX_CONFLICTS):
            # First from what the status write returned (the latest version), then fresh reads.
            raw = (
                written
                if attempt == 0 and written is not None
                else await self.kube.get_rollout(namespace, name, fresh=True)
            )
            if raw is None:
                return
            parsed = self._parse(raw)
            if isinstance(parsed, list):
                return
            status = _apply_outcomes(parsed, outcomes, now)
            if status == parsed.status:
                return
            if not self.may_act():
                return  # the leader repeats what is unrecorded; a write from here could only be stale
            try:
                await self.kube.replace_status(raw, status.to_wire())
                crash_point("after-outcome-write")
                return
            except ConflictError:
                telemetry.CONFLICTS.inc()
        log.warning("could not record action outcomes; the next pass repeats them", rollout=f"{namespace}/{name}")

    async def _report_invalid(self, raw: Raw, problems: list[Problem]) -> None:
        meta = raw["metadata"]
        message = "; ".join(str(p) for p in problems)[:1024]
        log.warning("rollout is invalid", rollout=f"{meta['namespace']}/{meta['name']}", problems=message)
        condition = {
            "type": "SpecValid",
            "status": "False",
            "reason": "Invalid",
            "message": message,
            "lastTransitionTime": utc_now().isoformat(timespec="seconds").replace("+00:00", "Z"),
            "observedGeneration": meta.get("generation", 0),
        }
        try:
            await self.kube.patch_status(
                meta["namespace"], meta["name"], {"conditions": [condition], "message": message}
            )
        except Exception as error:
            log.warning("could not report the invalid spec", error=describe(error))


# --- pure helpers --------------------------------------------------------------------------------

_SERVER_META = ("managedFields",)


def _without_server_fields(raw: Raw) -> Raw:
    meta = {k: v for k, v in raw.get("metadata", {}).items() if k not in _SERVER_META}
    return {**raw, "metadata": meta}


def _controller_conditions(
    status: CheckoutRolloutStatus,
    rollout: CheckoutRollout,
    router_error: str | None,
    readings: Mapping[str, SignalReading],
    now: datetime,
) -> CheckoutRolloutStatus:
    generation = rollout.metadata.generation
    conditions = status.conditions
    if router_error is not None:
        conditions = set_condition(
            conditions, "RouterReady", "False", "RouterError", router_error, now=now, generation=generation
        )
    if readings:
        errors = [r.error for r in readings.values() if r.error]
        if errors:
            conditions = set_condition(
                conditions, "MetricsAvailable", "False", "QueryFailed", errors[0], now=now, generation=generation
            )
        else:
            conditions = set_condition(
                conditions, "MetricsAvailable", "True", "Queried", "", now=now, generation=generation
            )
    if conditions is status.conditions:
        return status
    return status.model_copy(update={"conditions": conditions})


def _apply_outcomes(rollout: CheckoutRollout, outcomes: Outcomes, now: datetime) -> CheckoutRolloutStatus:
    status = rollout.status
    generation = rollout.metadata.generation
    conditions = status.conditions
    if outcomes.router_target is not None and outcomes.router_target == status.weights:
        status = status.model_copy(
            update={"router_target": outcomes.router_target, "router_weights": outcomes.router_weights}
        )
        conditions = set_condition(
            conditions,
            "RouterReady",
            "True",
            "WeightsApplied",
            f"canary {outcomes.router_target.canary}%",
            now=now,
            generation=generation,
        )
    if outcomes.router_error is not None:
        conditions = set_condition(
            conditions, "RouterReady", "False", "RouterError", outcomes.router_error, now=now, generation=generation
        )
    for delivery in outcomes.deliveries:
        status = record_delivery(
            status,
            delivery.target_name,
            dedup_key=delivery.dedup_key,
            resolved=delivery.resolved,
            error=delivery.error,
            now=now,
        )
    if outcomes.deliveries:
        failed = [d for d in outcomes.deliveries if not d.ok]
        conditions = set_condition(
            conditions,
            "PageDelivered",
            "False" if failed else "True",
            "DeliveryFailed" if failed else "Delivered",
            "; ".join(f"{d.target_name}: {d.error}" for d in failed) if failed else "every target accepted the page",
            now=now,
            generation=generation,
        )
    if conditions is not status.conditions:
        status = status.model_copy(update={"conditions": conditions})
    return status


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


def _next_delay(rollout: CheckoutRollout, now: datetime, *, failed: bool) -> float:
    status, spec = rollout.status, rollout.spec
    delays = [RETRY_SOON] if failed else []
    if status.router_target != status.weights:
        delays.append(RETRY_SOON)
    page = status.page
    if page is not None and page.resolved_at is None and page.escalated_at is None and spec.owner.escalate_after:
        due = page.triggered_at + timedelta(seconds=parse_duration(spec.owner.escalate_after))
        delays.append((due - now).total_seconds())
    if status.phase not in TERMINAL_PHASES:
        delays.append(_until_next_evaluation(spec, status, now))
        pause = _pause_left(spec, status, now)
        if pause is not None:
            delays.append(pause)
    return max(0.2, min(delays, default=IDLE_RESYNC))


def _until_next_evaluation(spec: CheckoutRolloutSpec, status: CheckoutRolloutStatus, now: datetime) -> float:
    interval = spec.interval_seconds()
    last = status.last_evaluated_at or status.step_started_at
    if last is None:
        return interval
    return interval - (now - last).total_seconds()


def _pause_left(spec: CheckoutRolloutSpec, status: CheckoutRolloutStatus, now: datetime) -> float | None:
    if status.current_step >= len(spec.steps) or status.step_started_at is None:
        return None
    step = spec.steps[status.current_step]
    if step.pause is None:
        return None
    end = status.step_started_at + timedelta(seconds=parse_duration(step.pause.duration))
    return (end - now).total_seconds()
