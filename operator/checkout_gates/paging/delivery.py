"""Carrying out the core's page actions: retries, fan-out to targets, outcomes.

:func:`deliver` retries one call on a retryable :class:`DeliveryError` (connection failure,
timeout, 408, 429, 5xx) a bounded number of times with exponential backoff (at least the
server's Retry-After); timeouts of a single request are the httpx client's.

:func:`send_page_actions` sends every :class:`PageOwner` and :class:`ResolvePage` of a decision
to each target it names, all concurrently, and never raises: each target's result is a
:class:`DeliveryOutcome` (defined in the core, ``rollout.outcomes``), named as ``rollout.pages``
names it, for the controller to record with ``rollout.outcomes.apply_outcomes``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime

import httpx
import structlog

from checkout_gates.api.destinations import EgressPolicy
from checkout_gates.api.spec import Owner, PageTarget
from checkout_gates.paging.base import DeliveryError, PageContext, Pager, PagingError, SecretValues, make_pager
from checkout_gates.rollout.actions import Notify, PageOwner, ResolvePage
from checkout_gates.rollout.notices import PREFIX as NOTIFY_PREFIX
from checkout_gates.rollout.outcomes import DeliveryOutcome
from checkout_gates.rollout.pages import ESCALATION_PREFIX, PRIMARY_PREFIX, target_name

log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[object]]
_Call = Callable[[Pager], Awaitable[None]]
DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
USER_AGENT = "checkout-gates"


def new_client(timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> httpx.AsyncClient:
    """An httpx client for pagers: bounded timeouts, no redirects followed."""
    return httpx.AsyncClient(timeout=timeout, headers={"User-Agent": USER_AGENT}, follow_redirects=False)


async def deliver(
    pager: Pager,
    call: _Call,
    *,
    attempts: int = 3,
    backoff: float = 0.2,
    max_backoff: float = 10.0,
    sleep: Sleep = asyncio.sleep,
) -> None:
    """``await call(pager)``, retried on retryable DeliveryErrors; the last error is raised.

    Waits ``backoff * 2**n`` (capped at ``max_backoff``, raised to a Retry-After) between tries.
    ``call`` makes a fresh coroutine per attempt, e.g. ``lambda p: p.trigger(page, context)``.
    """
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    for attempt in range(1, attempts + 1):
        try:
            await call(pager)
            return
        except DeliveryError as exc:
            exc.attempts = attempt
            if not exc.retryable or attempt == attempts:
                raise
            delay = min(backoff * 2 ** (attempt - 1), max_backoff)
            if exc.retry_after is not None:
                delay = max(delay, exc.retry_after)
            log.warning("page delivery failed, retrying", kind=pager.kind, attempt=attempt, delay=delay, error=str(exc))
            await sleep(delay)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, DeliveryError):
        return f"{exc} (after {exc.attempts} attempts)" if exc.attempts > 1 else str(exc)
    if isinstance(exc, PagingError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


async def _send_one(
    name: str,
    target: PageTarget | None,
    call: _Call,
    *,
    dedup_key: str,
    resolved: bool,
    secrets: SecretValues,
    client: httpx.AsyncClient,
    egress: EgressPolicy,
    attempts: int,
    backoff: float,
    sleep: Sleep,
) -> DeliveryOutcome:
    try:
        if target is None:
            raise PagingError(f"{name}: the owner has no such page target (the spec changed?)")
        pager = make_pager(target, secrets, client, egress=egress, name=name)
        await deliver(pager, call, attempts=attempts, backoff=backoff, sleep=sleep)
    except Exception as exc:  # every failure is an outcome, never an exception of the caller
        error = _describe(exc)
        log.warning("page delivery failed", target=name, dedup_key=dedup_key, resolved=resolved, error=error)
        return DeliveryOutcome(name, dedup_key, resolved, error or type(exc).__name__)
    log.info("page delivered", target=name, dedup_key=dedup_key, resolved=resolved)
    return DeliveryOutcome(name, dedup_key, resolved)


def _target(targets: Sequence[PageTarget], prefix: str, index: int) -> tuple[str, PageTarget | None]:
    if 0 <= index < len(targets):
        return target_name(prefix, index, targets[index].kind), targets[index]
    return target_name(prefix, index, "unknown"), None


async def send_page_actions(
    actions: Iterable[object],
    owner: Owner,
    secrets: SecretValues,
    context: PageContext,
    client: httpx.AsyncClient,
    now: datetime,
    *,
    egress: EgressPolicy | None = None,
    attempts: int = 3,
    backoff: float = 0.2,
    sleep: Sleep = asyncio.sleep,
) -> list[DeliveryOutcome]:
    """Send every page action's targets concurrently; one outcome per target, in action order.

    Actions other than PageOwner, ResolvePage and Notify are ignored, so a decision's whole action
    list may be passed in. A target outside ``egress`` (default: unrestricted) is an outcome with
    the refusal as its error; nothing is sent to it.
    """
    context = replace(context, now=now)
    jobs: list[Awaitable[DeliveryOutcome]] = []

    def add(prefix: str, targets: Sequence[PageTarget], index: int, *, key: str, resolved: bool, call: _Call) -> None:
        name, target = _target(targets, prefix, index)
        jobs.append(
            _send_one(
                name,
                target,
                call,
                dedup_key=key,
                resolved=resolved,
                secrets=secrets,
                client=client,
                egress=egress or EgressPolicy(),
                attempts=attempts,
                backoff=backoff,
                sleep=sleep,
            )
        )

    for action in actions:
        if isinstance(action, PageOwner):
            prefix, targets = (
                (ESCALATION_PREFIX, owner.escalate_to) if action.escalation else (PRIMARY_PREFIX, owner.page)
            )
            for index in action.targets:
                add(prefix, targets, index, key=action.dedup_key, resolved=False, call=_trigger(action, context))
        elif isinstance(action, ResolvePage):
            for index in action.targets:
                add(
                    PRIMARY_PREFIX,
                    owner.page,
                    index,
                    key=action.dedup_key,
                    resolved=True,
                    call=_resolve(action, context),
                )
            for index in action.escalation_targets:
                resolve = _resolve(action, context)
                add(ESCALATION_PREFIX, owner.escalate_to, index, key=action.dedup_key, resolved=True, call=resolve)
        elif isinstance(action, Notify):
            # A notice speaks the targets' page formats at severity info, dated when it was opened.
            noticed = replace(context, triggered_at=action.triggered_at)
            call = (
                _resolve(ResolvePage(action.dedup_key, action.summary), noticed)
                if action.resolved
                else _trigger(PageOwner(action.dedup_key, action.summary, action.severity, action.details, ()), noticed)
            )
            prefix, notified = (
                (PRIMARY_PREFIX, owner.page) if action.prefix == PRIMARY_PREFIX else (NOTIFY_PREFIX, owner.notify)
            )
            for index in action.targets:
                add(prefix, notified, index, key=action.dedup_key, resolved=action.resolved, call=call)
    return list(await asyncio.gather(*jobs))


def _trigger(page: PageOwner, context: PageContext) -> _Call:
    def call(pager: Pager) -> Awaitable[None]:
        return pager.trigger(page, context)

    return call


def _resolve(page: ResolvePage, context: PageContext) -> _Call:
    def call(pager: Pager) -> Awaitable[None]:
        return pager.resolve(page, context)

    return call
