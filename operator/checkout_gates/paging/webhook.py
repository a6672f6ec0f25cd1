"""A generic JSON webhook: ``POST {url}`` with one event.

Trigger::

    {"event": "trigger", "dedup_key": ..., "summary": ..., "severity": ..., "details": {...},
     "rollout": {"namespace": ..., "name": ...}, "owner": ..., "source": ...,
     "triggered_at": ..., "sent_at": ..., "links": [{"text": ..., "href": ...}]}

Resolve: the same keys with ``"event": "resolve"``, ``summary`` the resolve reason,
``severity`` null and ``details`` empty. A receiver dedups on ``dedup_key``. Any 2xx is success;
408, 429 and 5xx are retryable.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx

from checkout_gates.paging.common import PageContext, post_json, rfc3339
from checkout_gates.rollout.actions import PageOwner, ResolvePage

KIND = "webhook"


def _envelope(event: Literal["trigger", "resolve"], dedup_key: str, context: PageContext) -> dict[str, Any]:
    return {
        "event": event,
        "dedup_key": dedup_key,
        "rollout": {"namespace": context.namespace, "name": context.name},
        "owner": context.owner,
        "source": context.source,
        "triggered_at": rfc3339(context.started()),
        "sent_at": rfc3339(context.at()),
        "links": [{"text": text, "href": href} for text, href in context.links],
    }


def trigger_body(page: PageOwner, context: PageContext) -> dict[str, Any]:
    body = _envelope("trigger", page.dedup_key, context)
    body |= {"summary": page.summary, "severity": page.severity, "details": dict(page.details)}
    return body


def resolve_body(page: ResolvePage, context: PageContext) -> dict[str, Any]:
    body = _envelope("resolve", page.dedup_key, context)
    body |= {"summary": page.reason, "severity": None, "details": {}}
    return body


class WebhookPager:
    kind: str = KIND

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.url = url
        self.client = client

    async def trigger(self, page: PageOwner, context: PageContext) -> None:
        await post_json(self.client, self.kind, self.url, trigger_body(page, context))

    async def resolve(self, page: ResolvePage, context: PageContext) -> None:
        await post_json(self.client, self.kind, self.url, resolve_body(page, context))

    def __repr__(self) -> str:  # the URL may come from a Secret
        return "WebhookPager(<url>)"
