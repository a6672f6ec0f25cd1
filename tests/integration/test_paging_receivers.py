"""Pages over real HTTP to a local receiver on 127.0.0.1 (nothing mocked).

The receiver speaks PagerDuty's Events API v2 (it refuses what PagerDuty refuses, with 400, and
accepts with 202), a Slack incoming webhook (200 "ok") and a generic JSON webhook, and can be
scripted to answer a path with given statuses first.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
import pytest_asyncio

from checkout_gates.api.destinations import DESTINATIONS_KEY
from checkout_gates.api.spec import Owner
from checkout_gates.paging.base import PageContext
from checkout_gates.paging.delivery import new_client, send_page_actions
from checkout_gates.rollout import pages
from checkout_gates.rollout.actions import EmitEvent, PageOwner, ResolvePage
from checkout_gates.rollout.outcomes import DeliveryOutcome

from .receivers import Receiver

pytestmark = pytest.mark.integration

ROUTING_KEY = "R0123456789abcdef0123456789abcde"


@pytest_asyncio.fixture(loop_scope="function")  # the test's loop: it owns the pooled connections
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with new_client(httpx.Timeout(5.0, connect=2.0)) as http:
        yield http


def owner_for(receiver_url: str) -> Owner:
    return Owner.model_validate(
        {
            "name": "payments-oncall",
            "page": [
                {
                    "pagerDuty": {
                        "routingKeySecret": {"name": "pd-payments", "key": "routing-key"},
                        "url": f"{receiver_url}/pagerduty/v2/enqueue",
                    }
                },
                {"slack": {"webhookSecret": {"name": "slack-payments", "key": "url"}}},
                {"webhook": {"url": f"{receiver_url}/hook"}},
            ],
            "escalateAfter": "10m",
            "escalateTo": [{"webhook": {"urlSecret": {"name": "escalation", "key": "url"}}}],
        }
    )


def secrets_for(receiver_url: str) -> dict[tuple[str, str], str]:
    return {
        ("pd-payments", "routing-key"): ROUTING_KEY,
        # The receiver stands in for PagerDuty: the key's Secret allows it (api/destinations.py).
        ("pd-payments", DESTINATIONS_KEY): receiver_url,
        ("slack-payments", "url"): f"{receiver_url}/slack/services/T000/B000/XXXXSECRET",
        ("escalation", "url"): f"{receiver_url}/escalation",
    }


NOW = datetime.now(UTC)
CONTEXT = PageContext(namespace="payments", name="checkout-api", owner="payments-oncall", triggered_at=NOW)
DETAILS = {
    "rollout": "payments/checkout-api",
    "step": "1",
    "weights": "stable 95% / canary 5%",
    "gate": "auth-approval",
    "segment": 'provider="adyen", method="card"',
    "abort": "kubectl annotate cro/checkout-api -n payments gates.checkout.dev/abort=$USER",
    "retry": "kubectl annotate cro/checkout-api -n payments gates.checkout.dev/retry=$USER",
}


def trigger(key: str, targets: tuple[int, ...] = (0, 1, 2), *, escalation: bool = False) -> PageOwner:
    return PageOwner(
        dedup_key=key,
        summary="gate auth-approval failed for provider=adyen method=card",
        severity="critical",
        details=DETAILS,
        targets=targets,
        escalation=escalation,
    )


def by_name(outcomes: list[DeliveryOutcome]) -> dict[str, DeliveryOutcome]:
    return {outcome.target_name: outcome for outcome in outcomes}


async def test_trigger_then_resolve_share_the_dedup_key(receiver: Receiver, client: httpx.AsyncClient) -> None:
    owner, secrets = owner_for(receiver.url), secrets_for(receiver.url)
    key = "checkout-gates/payments/checkout-api/uid-1/g1/s1/gate-failed"
    actions = [trigger(key), EmitEvent("Halted", "not a page action")]
    outcomes = await send_page_actions(actions, owner, secrets, CONTEXT, client, NOW)
    names = [pages.target_name("page", index, target.kind) for index, target in enumerate(owner.page)]
    assert [o.target_name for o in outcomes] == names == ["page[0]:pager_duty", "page[1]:slack", "page[2]:webhook"]
    assert all(o.ok and not o.resolved and o.dedup_key == key for o in outcomes), outcomes

    resolve = ResolvePage(key, "promoted", targets=(0, 1, 2))
    resolved = await send_page_actions([resolve], owner, secrets, CONTEXT, client, datetime.now(UTC))
    assert [o.target_name for o in resolved] == names
    assert all(o.ok and o.resolved for o in resolved), resolved

    pd = receiver.accepted("/pagerduty/v2/enqueue")
    assert [event["event_action"] for event in pd] == ["trigger", "resolve"]
    assert {event["dedup_key"] for event in pd} == {key}
    assert {event["routing_key"] for event in pd} == {ROUTING_KEY}
    assert pd[0]["payload"]["custom_details"]["gate"] == "auth-approval"
    assert pd[0]["payload"]["severity"] == "critical"

    hook = receiver.accepted("/hook")
    assert [(body["event"], body["dedup_key"]) for body in hook] == [("trigger", key), ("resolve", key)]

    chat = receiver.accepted("/slack/services/T000/B000/XXXXSECRET")
    assert len(chat) == 2
    assert "gates.checkout.dev/abort" in chat[0]["text"] and "resolved" in chat[1]["text"]


async def test_escalation_targets_are_named_for_the_core(receiver: Receiver, client: httpx.AsyncClient) -> None:
    owner, secrets = owner_for(receiver.url), secrets_for(receiver.url)
    outcomes = await send_page_actions(
        [trigger("esc-key", (0,), escalation=True)], owner, secrets, CONTEXT, client, NOW
    )
    assert outcomes == [DeliveryOutcome("escalate[0]:webhook", "esc-key", resolved=False)]
    assert pages.parse_target_name(outcomes[0].target_name) == (True, 0)
    resolved = await send_page_actions(
        [ResolvePage("esc-key", "done", targets=(), escalation_targets=(0,))], owner, secrets, CONTEXT, client, NOW
    )
    assert resolved == [DeliveryOutcome("escalate[0]:webhook", "esc-key", resolved=True)]
    assert [b["event"] for b in receiver.accepted("/escalation")] == ["trigger", "resolve"]


async def test_two_failures_then_success_is_one_accepted_trigger(receiver: Receiver, client: httpx.AsyncClient) -> None:
    receiver.script["/pagerduty/v2/enqueue"] = [(500, "oops"), (500, "oops")]
    receiver.script["/hook"] = [(503, "busy"), (429, "slow down")]
    owner, secrets = owner_for(receiver.url), secrets_for(receiver.url)
    outcomes = by_name(
        await send_page_actions([trigger("flaky", (0, 2))], owner, secrets, CONTEXT, client, NOW, backoff=0.01)
    )
    assert outcomes["page[0]:pager_duty"].ok, outcomes
    assert outcomes["page[2]:webhook"].ok, outcomes
    assert [r.status for r in receiver.seen("/pagerduty/v2/enqueue")] == [500, 500, 202]
    assert len(receiver.accepted("/pagerduty/v2/enqueue")) == 1
    assert [r.status for r in receiver.seen("/hook")] == [503, 429, 200]
    assert len(receiver.accepted("/hook")) == 1


async def test_a_400_is_not_retried_and_becomes_an_outcome_error(receiver: Receiver, client: httpx.AsyncClient) -> None:
    owner, secrets = owner_for(receiver.url), secrets_for(receiver.url)
    receiver.script["/pagerduty/v2/enqueue"] = [(400, json.dumps({"status": "invalid event", "errors": ["x"]}))]
    receiver.script["/slack/services/T000/B000/XXXXSECRET"] = [(400, "invalid_payload")]
    started = time.monotonic()
    outcomes = by_name(
        await send_page_actions([trigger("bad", (0, 1))], owner, secrets, CONTEXT, client, NOW, backoff=5.0)
    )
    assert time.monotonic() - started < 2.0  # no backoff was waited
    pd_error = outcomes["page[0]:pager_duty"].error
    host = receiver.url.removeprefix("http://")
    # Not PagerDuty's own host: the answer is described, never shown (a forged URL must not read back).
    assert pd_error.startswith(f"pager_duty at {host}: HTTP 400: answer: ") and pd_error.endswith(" bytes"), pd_error
    assert "invalid event" not in pd_error
    assert len(receiver.seen("/pagerduty/v2/enqueue")) == 1

    slack_error = outcomes["page[1]:slack"].error
    # Not Slack's own host: its plain-text code is described too, never shown.
    assert slack_error.startswith(f"slack at {host}: HTTP 400: answer: ") and "invalid_payload" not in slack_error
    assert "XXXXSECRET" not in slack_error
    assert len(receiver.seen("/slack/services/T000/B000/XXXXSECRET")) == 1


async def test_a_missing_secret_is_an_outcome_error(receiver: Receiver, client: httpx.AsyncClient) -> None:
    owner = owner_for(receiver.url)
    outcomes = await send_page_actions([trigger("nosecret", (0, 2))], owner, {}, CONTEXT, client, NOW)
    assert "routing-key" in outcomes[0].error and "pd-payments" in outcomes[0].error
    assert outcomes[1].ok  # the other target is not held up
    assert receiver.seen("/pagerduty/v2/enqueue") == []


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_closed_port_is_an_outcome_error_quickly(client: httpx.AsyncClient) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    owner = owner_for(url)
    started = time.monotonic()
    outcomes = await send_page_actions(
        [trigger("closed"), ResolvePage("older", "promoted", targets=(2,))],
        owner,
        secrets_for(url),
        CONTEXT,
        client,
        NOW,
    )
    elapsed = time.monotonic() - started
    assert len(outcomes) == 4
    for outcome in outcomes:
        assert "connection failed" in outcome.error and "after 3 attempts" in outcome.error, outcome
        assert "XXXXSECRET" not in outcome.error
    assert elapsed < 3.0  # three attempts, 0.2 s and 0.4 s apart, all targets at once
