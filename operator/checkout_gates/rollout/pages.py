"""Page state of a halt: open it once, deliver it to every target, escalate once, resolve it.

Delivery happens in the controller; what is pure here is which targets still need the page (or
its resolution) and how a delivery outcome is recorded. A target that got the page is never sent
the trigger again for the same halt, and the dedup key lets PagerDuty and Alertmanager fold a
repeat after a crash into the same incident.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import datetime, timedelta

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.api.status import CheckoutRolloutStatus, PageDelivery, PageState
from checkout_gates.rollout.actions import PageOwner, ResolvePage, Severity

ESCALATION_PREFIX = "escalate"
PRIMARY_PREFIX = "page"


def target_name(prefix: str, index: int, kind: str) -> str:
    return f"{prefix}[{index}]:{kind}"


def parse_target_name(name: str) -> tuple[bool, int]:
    """(is escalation, index) of a delivery's target name."""
    match = re.fullmatch(r"(\w+)\[(\d+)\]:\w+", name)
    if match is None:
        raise ValueError(f"not a page target name: {name!r}")
    return match.group(1) == ESCALATION_PREFIX, int(match.group(2))


def dedup_key(rollout: CheckoutRollout, step: int, reason_slug: str, epoch: int = 0) -> str:
    """Stable per halt: rollout uid, generation, step, the status epoch it was decided at, and the
    reason. At most 255 characters (PagerDuty). The epoch tells apart two halts of one step for one
    reason (a retry that halts again): each is its own incident, and a late resolve of the first
    cannot close the second."""
    raw = f"checkout-gates/{rollout.metadata.namespace}/{rollout.metadata.name}/{rollout.metadata.uid}/"
    raw += f"g{rollout.metadata.generation}/s{step}/e{epoch}/{reason_slug}"
    if len(raw) <= 255:
        return raw
    return raw[:200] + "/" + hashlib.sha256(raw.encode()).hexdigest()[:32]


def open_page(
    rollout: CheckoutRollout, *, step: int, reason_slug: str, summary: str, now: datetime, epoch: int = 0
) -> PageState:
    primary = [
        PageDelivery(target=target_name(PRIMARY_PREFIX, index, target.kind))
        for index, target in enumerate(rollout.spec.owner.page)
    ]
    return PageState(
        dedup_key=dedup_key(rollout, step, reason_slug, epoch),
        reason=reason_slug,
        summary=summary[:1024],
        triggered_at=now,
        deliveries=primary,
    )


def escalate_if_due(rollout: CheckoutRollout, page: PageState, now: datetime) -> PageState:
    owner = rollout.spec.owner
    delay = owner.escalate_after_seconds
    if delay is None or page.escalated_at is not None or page.resolved_at is not None:
        return page
    if now < page.triggered_at + timedelta(seconds=delay):
        return page
    added = [
        PageDelivery(target=target_name(ESCALATION_PREFIX, index, target.kind))
        for index, target in enumerate(owner.escalate_to)
    ]
    return page.model_copy(update={"escalated_at": now, "deliveries": [*page.deliveries, *added]})


def resolve(page: PageState, now: datetime) -> PageState:
    return page if page.resolved_at is not None else page.model_copy(update={"resolved_at": now})


def _indexes(page: PageState, *, escalation: bool, undelivered: bool) -> tuple[int, ...]:
    chosen = []
    for delivery in page.deliveries:
        is_escalation, index = parse_target_name(delivery.target)
        if is_escalation != escalation:
            continue
        if undelivered and delivery.delivered_at is None:
            chosen.append(index)
        if not undelivered and delivery.delivered_at is not None and delivery.resolved_at is None:
            chosen.append(index)
    return tuple(chosen)


def page_actions(
    page: PageState | None, details: Mapping[str, str], severity: Severity
) -> list[PageOwner | ResolvePage]:
    """What the controller still has to send for this page: triggers, then resolutions."""
    if page is None:
        return []
    if page.resolved_at is not None:
        primary = _indexes(page, escalation=False, undelivered=False)
        secondary = _indexes(page, escalation=True, undelivered=False)
        if not primary and not secondary:
            return []
        return [ResolvePage(page.dedup_key, page.summary, primary, secondary)]
    actions: list[PageOwner | ResolvePage] = []
    for escalation in (False, True):
        targets = _indexes(page, escalation=escalation, undelivered=True)
        if targets:
            actions.append(
                PageOwner(
                    dedup_key=page.dedup_key,
                    summary=page.summary,
                    severity=severity,
                    details=details,
                    targets=targets,
                    escalation=escalation,
                )
            )
    return actions


def record_delivery(
    status: CheckoutRolloutStatus,
    target: str,
    *,
    dedup_key: str,
    resolved: bool,
    error: str,
    now: datetime,
) -> CheckoutRolloutStatus:
    """The status with one delivery outcome recorded, to the page or the notice of ``dedup_key``;
    a stale outcome (of a page or notice no longer kept) changes nothing."""
    page = status.page
    if page is not None and page.dedup_key == dedup_key:
        return status.model_copy(update={"page": _delivered(page, target, resolved, error, now)})
    if any(notice.dedup_key == dedup_key for notice in status.notices):
        notices = [
            _delivered(notice, target, resolved, error, now) if notice.dedup_key == dedup_key else notice
            for notice in status.notices
        ]
        return status.model_copy(update={"notices": notices})
    return status


def _delivered(page: PageState, target: str, resolved: bool, error: str, now: datetime) -> PageState:
    deliveries = []
    for delivery in page.deliveries:
        if delivery.target != target:
            deliveries.append(delivery)
            continue
        update: dict[str, object] = {"attempts": delivery.attempts + 1, "error": error[:512]}
        if not error:
            update["resolved_at" if resolved else "delivered_at"] = now
        deliveries.append(delivery.model_copy(update=update))
    return page.model_copy(update={"deliveries": deliveries})
