"""What every page target shares: the :class:`Pager` protocol, its context, its errors.

A pager sends one page (:class:`PageOwner`) or its resolution (:class:`ResolvePage`) to one
target and raises :class:`DeliveryError` when the target did not accept it. Secret values (a
PagerDuty routing key, a Slack webhook URL, a webhook URL) arrive already resolved: reading
Secrets is the controller's job; :func:`make_pager` only looks them up by (Secret name, key).

Error messages name the target kind, the URL's host (never its path or query: a Slack or
webhook URL is itself a secret), the HTTP status and what may be said of the answer (never the
body of an arbitrary server: ``common.describe_answer``).

Before a pager is made its URL must pass the operator's egress allowlist, and a PagerDuty routing
key may go only where its Secret allows (``api.destinations``): :class:`DestinationRefusedError`.

:class:`PageContext` and the errors are defined in :mod:`checkout_gates.paging.common` (so that
this module can import the target modules for :func:`make_pager`) and re-exported here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Protocol

import httpx

from checkout_gates.api.destinations import DESTINATIONS_KEY, PAGERDUTY_DESTINATIONS, EgressPolicy, credential_refusal
from checkout_gates.api.spec import Owner, PageTarget, SecretKeyRef
from checkout_gates.paging.alertmanager import AlertmanagerPager
from checkout_gates.paging.common import (
    DeliveryError,
    DestinationRefusedError,
    MissingSecretError,
    PageContext,
    PagingError,
)
from checkout_gates.paging.pagerduty import PagerDutyPager
from checkout_gates.paging.slack import SlackPager
from checkout_gates.paging.webhook import WebhookPager
from checkout_gates.rollout.actions import PageOwner, ResolvePage

__all__ = [
    "DeliveryError",
    "DestinationRefusedError",
    "MissingSecretError",
    "PageContext",
    "Pager",
    "PagingError",
    "SecretValues",
    "make_pager",
    "owner_secrets",
    "required_secrets",
]

SecretValues = Mapping[tuple[str, str], str]
# PagerDuty's Events API v2 integration (routing) keys: 32 characters, letters and digits.
ROUTING_KEY_SHAPE = re.compile(r"[A-Za-z0-9]{32}")


class Pager(Protocol):
    """One page target."""

    kind: str

    async def trigger(self, page: PageOwner, context: PageContext) -> None:
        """Send (or re-send: idempotent by ``page.dedup_key``) the page; raise DeliveryError."""
        ...

    async def resolve(self, page: ResolvePage, context: PageContext) -> None:
        """Resolve the page with ``page.dedup_key``; raise DeliveryError."""
        ...


# --- secrets ------------------------------------------------------------------------------------


def required_secrets(target: PageTarget) -> list[SecretKeyRef]:
    """The Secret keys a target needs the controller to read."""
    refs: list[SecretKeyRef | None] = []
    if target.pager_duty is not None:
        refs.append(target.pager_duty.routing_key_secret)
    if target.slack is not None:
        refs.append(target.slack.webhook_secret)
    if target.webhook is not None:
        refs.append(target.webhook.url_secret)
    return [ref for ref in refs if ref is not None]


def owner_secrets(owner: Owner) -> set[tuple[str, str]]:
    """Every (Secret name, key) the owner's targets need, primary, escalation and notify, and the
    destinations annotation of each of those Secrets (the same read)."""
    targets = [*owner.page, *owner.escalate_to, *owner.notify]
    refs = {(ref.name, ref.key) for target in targets for ref in required_secrets(target)}
    return refs | {(name, DESTINATIONS_KEY) for name, _ in refs}


def secret_value(secrets: SecretValues, ref: SecretKeyRef, what: str) -> str:
    value = secrets.get((ref.name, ref.key), "").strip()
    if not value:
        raise MissingSecretError(
            f"{what} needs key {ref.key!r} of Secret {ref.name!r} in the rollout's namespace, which is missing or empty"
        )
    return value


def secret_url(secrets: SecretValues, ref: SecretKeyRef, what: str) -> str:
    value = secret_value(secrets, ref, what)
    if not re.match(r"^https?://[^\s/]+", value):
        raise MissingSecretError(f"{what}: key {ref.key!r} of Secret {ref.name!r} does not hold an http(s) URL")
    return value


def make_pager(
    target: PageTarget,
    secrets: SecretValues,
    client: httpx.AsyncClient,
    *,
    egress: EgressPolicy | None = None,
    name: str = "target",
) -> Pager:
    """The pager of one target (``name`` in messages). Raises MissingSecretError when a Secret
    value it needs is absent, DestinationRefusedError when its URL is outside ``egress`` or its
    routing key may not go there."""
    pager, url = _pager(target, secrets, client)
    base = target.alertmanager is not None  # the operator appends /api/v2/alerts
    refusal = (egress or EgressPolicy()).refusal(url, f"{name}: {_url_field(target)}", base=base)
    if refusal is None and target.pager_duty is not None:
        ref = target.pager_duty.routing_key_secret
        # Only what looks like a routing key may go to PagerDuty unasked: not any Secret's value.
        looks_like_a_key = ROUTING_KEY_SHAPE.fullmatch(secrets.get((ref.name, ref.key), "").strip())
        refusal = credential_refusal(
            ref.name,
            secrets.get((ref.name, DESTINATIONS_KEY)),
            url,
            f"{name}: pagerDuty.routingKeySecret",
            implied=PAGERDUTY_DESTINATIONS if looks_like_a_key else (),
        )
    if refusal is not None:
        raise DestinationRefusedError(refusal)
    return pager


def _url_field(target: PageTarget) -> str:
    if target.slack is not None:
        return "the URL in slack.webhookSecret"
    if target.webhook is not None and target.webhook.url_secret is not None:
        return "the URL in webhook.urlSecret"
    return {"pager_duty": "pagerDuty.url", "alertmanager": "alertmanager.url"}.get(target.kind, f"{target.kind}.url")


def _pager(target: PageTarget, secrets: SecretValues, client: httpx.AsyncClient) -> tuple[Pager, str]:
    """The pager and the URL it sends to."""
    if target.pager_duty is not None:
        spec = target.pager_duty
        routing_key = secret_value(secrets, spec.routing_key_secret, "pagerDuty routingKeySecret")
        severity = spec.severity if "severity" in spec.model_fields_set else None
        return PagerDutyPager(routing_key, client, url=spec.url, severity=severity), spec.url
    if target.alertmanager is not None:
        return AlertmanagerPager(target.alertmanager.url, client), target.alertmanager.url
    if target.slack is not None:
        url = secret_url(secrets, target.slack.webhook_secret, "slack webhookSecret")
        return SlackPager(url, client), url
    if target.webhook is not None:
        spec_w = target.webhook
        if spec_w.url_secret is not None:
            url = secret_url(secrets, spec_w.url_secret, "webhook urlSecret")
        elif spec_w.url is not None:
            url = spec_w.url
        else:  # the model refuses this; kept for the type checker
            raise MissingSecretError("webhook target has neither url nor urlSecret")
        return WebhookPager(url, client), url
    raise ValueError(f"unknown page target kind {target.kind!r}")
