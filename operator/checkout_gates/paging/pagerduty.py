"""PagerDuty Events API v2: ``POST {url}`` (default https://events.pagerduty.com/v2/enqueue).

A trigger and its resolve share the ``dedup_key``, so PagerDuty folds a resend (after a crash, a
conflict) into the same incident and the resolve closes it. 202 is success; 429 and 5xx are
retryable; 400 (an event PagerDuty refuses) is not.

Severity: the target's ``severity`` when the rollout sets it, else the page's own (``critical``
for an abort, ``error`` for a hold).
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from checkout_gates.api.spec import PAGERDUTY_EVENTS_URL
from checkout_gates.paging.common import PageContext, post_json, rfc3339, truncate
from checkout_gates.rollout.actions import PageOwner, ResolvePage, Severity

KIND = "pager_duty"
SEVERITIES: tuple[Severity, ...] = ("critical", "error", "warning", "info")
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255
MAX_FIELD = 255  # source, component, group, class: PagerDuty truncates; so do we, visibly
CLIENT = "checkout-gates"
EVENT_CLASS = "checkout-rollout-halt"


def pd_dedup_key(key: str) -> str:
    """The dedup key within PagerDuty's 255 characters, stable for trigger and resolve alike."""
    if len(key) <= MAX_DEDUP_KEY:
        return key
    return key[:190] + "/" + hashlib.sha256(key.encode()).hexdigest()[:64]


def trigger_event(
    routing_key: str, page: PageOwner, context: PageContext, *, severity: Severity | None = None
) -> dict[str, Any]:
    """The Events v2 body of a trigger."""
    chosen = severity or page.severity
    if chosen not in SEVERITIES:
        raise ValueError(f"PagerDuty severity must be one of {SEVERITIES}, not {chosen!r}")
    details = dict(page.details)
    details.setdefault("rollout", context.rollout)
    details.setdefault("owner", context.owner)
    details["dedup_key"] = page.dedup_key
    gate = page.details.get("gate", "")
    payload: dict[str, Any] = {
        "summary": truncate(page.summary or f"checkout rollout {context.rollout} halted", MAX_SUMMARY),
        "source": truncate(context.source or CLIENT, MAX_FIELD),
        "severity": chosen,
        "timestamp": rfc3339(context.started()),
        "component": truncate(context.name, MAX_FIELD),
        "group": truncate(context.namespace, MAX_FIELD),
        "class": truncate(f"{EVENT_CLASS}/{gate}" if gate else EVENT_CLASS, MAX_FIELD),
        "custom_details": details,
    }
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": pd_dedup_key(page.dedup_key),
        "payload": payload,
        "client": CLIENT,
    }
    if context.links:
        event["links"] = [{"href": href, "text": text} for text, href in context.links]
        event["client_url"] = context.links[0][1]
    return event


def resolve_event(routing_key: str, page: ResolvePage) -> dict[str, Any]:
    """The Events v2 body of a resolve: routing key, action and dedup key are all it takes."""
    return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": pd_dedup_key(page.dedup_key)}


class PagerDutyPager:
    kind: str = KIND

    def __init__(
        self,
        routing_key: str,
        client: httpx.AsyncClient,
        *,
        url: str = PAGERDUTY_EVENTS_URL,
        severity: Severity | None = None,
    ) -> None:
        if not routing_key.strip():
            raise ValueError("PagerDuty needs a routing key")
        self.routing_key = routing_key.strip()
        self.client = client
        self.url = url
        self.severity = severity

    async def trigger(self, page: PageOwner, context: PageContext) -> None:
        event = trigger_event(self.routing_key, page, context, severity=self.severity)
        await post_json(self.client, self.kind, self.url, event)

    async def resolve(self, page: ResolvePage, context: PageContext) -> None:
        await post_json(self.client, self.kind, self.url, resolve_event(self.routing_key, page))

    def __repr__(self) -> str:  # never the routing key
        return f"PagerDutyPager(url={self.url!r}, severity={self.severity!r})"
