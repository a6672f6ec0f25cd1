"""Alertmanager API v2: ``POST {url}/api/v2/alerts`` with one alert per halt.

Alertmanager identifies an alert by its label set, so the labels name the rollout and the halt
(``alertname="CheckoutRolloutHalted"``, ``namespace``, ``rollout``, ``owner``, ``dedup_key``,
``severity``) and nothing that changes between resends: ten triggers are one alert.

Firing: ``startsAt`` is when the halt was paged and ``endsAt`` is set explicitly ``firing_for``
ahead (default 24 h). Without an ``endsAt`` Alertmanager would resolve the alert by itself after
its ``resolve_timeout`` (5 min by default), while the rollout is still halted and nobody resends.

Resolve: a :class:`ResolvePage` carries no severity, so the pager looks up the alerts that
carry the dedup key (``GET /api/v2/alerts?filter=dedup_key="..."``) and re-posts each one's
exact labels with ``endsAt`` = now. No such alert (already resolved, or Alertmanager restarted
and lost it) means there is nothing left to resolve.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import httpx

from checkout_gates.paging.common import (
    DeliveryError,
    PageContext,
    check_response,
    label_name,
    post_json,
    rfc3339,
    truncate,
)
from checkout_gates.rollout.actions import PageOwner, ResolvePage, Severity

KIND = "alertmanager"
ALERTNAME = "CheckoutRolloutHalted"
# A notice (owner.notify), named apart so that routes can send it elsewhere than halts. A notice
# that is never resolved (started, promoted, aborted) fires for NOTICE_FIRING_FOR only.
NOTICE_ALERTNAME = "CheckoutRolloutNotice"
NOTICE_FIRING_FOR = timedelta(minutes=15)
DEFAULT_FIRING_FOR = timedelta(hours=24)
MAX_ANNOTATION = 4096


def alert_labels(dedup_key: str, severity: Severity, context: PageContext) -> dict[str, str]:
    """The identity of the halt's alert."""
    labels = {
        "alertname": ALERTNAME,
        "namespace": context.namespace,
        "rollout": context.name,
        "owner": context.owner,
        "dedup_key": dedup_key,
        "severity": severity,
    }
    return {name: value for name, value in labels.items() if value}  # an empty label is no label


def alert_annotations(page: PageOwner, context: PageContext) -> dict[str, str]:
    """summary, a readable description, and every detail under a label-safe name."""
    lines = [f"{key}: {value}" for key, value in page.details.items() if value]
    annotations = {
        "summary": truncate(page.summary or f"checkout rollout {context.rollout} halted", MAX_ANNOTATION),
        "description": truncate("\n".join(lines), MAX_ANNOTATION),
    }
    for key, value in page.details.items():
        name = label_name(key)
        if value and name not in annotations:
            annotations[name] = truncate(value, MAX_ANNOTATION)
    return {key: value for key, value in annotations.items() if value}


def firing_alert(
    page: PageOwner, context: PageContext, *, firing_for: timedelta = DEFAULT_FIRING_FOR
) -> dict[str, Any]:
    labels = alert_labels(page.dedup_key, page.severity, context)
    event = page.details.get("event", "")
    if event:
        labels |= {"alertname": NOTICE_ALERTNAME, "event": label_name(event)}
        if event != "AwaitingApproval":
            firing_for = min(firing_for, NOTICE_FIRING_FOR)
    alert: dict[str, Any] = {
        "labels": labels,
        "annotations": alert_annotations(page, context),
        "startsAt": rfc3339(context.started()),
        "endsAt": rfc3339(context.at() + firing_for),
    }
    if context.links:
        alert["generatorURL"] = context.links[0][1]
    return alert


def resolved_alert(
    labels: Mapping[str, str],
    context: PageContext,
    *,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The same labels, ``endsAt`` now: Alertmanager marks the alert resolved.

    (Alertmanager keeps the earliest ``startsAt`` of an alert, so the one sent here only has to
    be no later than ``endsAt``.)
    """
    now = context.at()
    starts = min(context.started(), now)
    alert: dict[str, Any] = {"labels": dict(labels), "startsAt": rfc3339(starts), "endsAt": rfc3339(now)}
    if annotations:
        alert["annotations"] = dict(annotations)
    return alert


def matcher(name: str, value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{name}="{escaped}"'


class AlertmanagerPager:
    kind: str = KIND

    def __init__(self, url: str, client: httpx.AsyncClient, *, firing_for: timedelta = DEFAULT_FIRING_FOR) -> None:
        self.base = url.rstrip("/")
        self.alerts_url = f"{self.base}/api/v2/alerts"
        self.client = client
        self.firing_for = firing_for

    async def trigger(self, page: PageOwner, context: PageContext) -> None:
        alert = firing_alert(page, context, firing_for=self.firing_for)
        await post_json(self.client, self.kind, self.alerts_url, [alert])

    async def resolve(self, page: ResolvePage, context: PageContext) -> None:
        found = await self.active_alerts(page.dedup_key)
        if not found:
            return
        alerts = [
            resolved_alert(
                alert["labels"],
                context,
                annotations=alert.get("annotations"),
            )
            for alert in found
        ]
        await post_json(self.client, self.kind, self.alerts_url, alerts)

    async def active_alerts(self, dedup_key: str) -> list[dict[str, Any]]:
        """The not yet resolved alerts of a halt (silenced and inhibited ones included)."""
        # By dedup key alone: it names one halt or one notice (whose alertname differs).
        params: list[tuple[str, str | int | float | bool | None]] = [("filter", matcher("dedup_key", dedup_key))]
        try:
            response = await self.client.get(self.alerts_url, params=params)
        except httpx.TimeoutException as exc:
            raise DeliveryError(
                self.kind, self.base, reason=f"timed out ({type(exc).__name__})", retryable=True
            ) from None
        except httpx.TransportError as exc:
            reason = f"connection failed: {str(exc) or type(exc).__name__}"
            raise DeliveryError(self.kind, self.base, reason=reason, retryable=True) from None
        check_response(self.kind, self.base, response)
        try:
            body = response.json()
        except ValueError:
            raise DeliveryError(self.kind, self.base, reason="alerts answer is not JSON") from None
        if not isinstance(body, list):
            raise DeliveryError(self.kind, self.base, reason="alerts answer is not a list")
        return [
            alert
            for alert in body
            if isinstance(alert, dict)
            and isinstance(alert.get("labels"), dict)
            and alert["labels"].get("dedup_key") == dedup_key
        ]
