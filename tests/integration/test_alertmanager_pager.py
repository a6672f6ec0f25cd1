"""The Alertmanager pager against a real Alertmanager (Debian's prometheus-alertmanager).

The `alertmanager` fixture (tests/conftest.py) is shared by the session, so every test uses
its own dedup key and rollout name.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from checkout_gates.api.spec import Owner
from checkout_gates.paging.alertmanager import ALERTNAME, AlertmanagerPager
from checkout_gates.paging.base import PageContext
from checkout_gates.paging.delivery import deliver, new_client, send_page_actions
from checkout_gates.rollout.actions import PageOwner, ResolvePage
from checkout_gates.rollout.outcomes import DeliveryOutcome
from checkout_gates_lab.testbed import Alertmanager

pytestmark = pytest.mark.integration

DETAILS = {
    "rollout": "payments/checkout-api",
    "step": "3",
    "weights": "stable 75% / canary 25%",
    "gate": "p99-latency",
    "segment": "",
    "abort": "kubectl annotate cro/checkout-api -n payments gates.checkout.dev/abort=$USER",
}


@pytest_asyncio.fixture(loop_scope="function")  # the test's loop: it owns the pooled connections
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with new_client(httpx.Timeout(10.0, connect=2.0)) as http:
        yield http


def halt(rollout: str) -> tuple[PageOwner, PageContext]:
    key = f"checkout-gates/payments/{rollout}/{uuid.uuid4()}/g1/s3/gate-failed"
    page = PageOwner(key, "p99 latency of the canary rose 41% over stable", "error", DETAILS, (0,))
    context = PageContext(namespace="payments", name=rollout, owner="payments-oncall", triggered_at=datetime.now(UTC))
    return page, context


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def active(am: Alertmanager, rollout: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{am.url}/api/v2/alerts",
        params=[("active", "true"), ("filter", f'alertname="{ALERTNAME}"'), ("filter", f'rollout="{rollout}"')],
        timeout=10.0,
    )
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()
    return result


async def test_a_trigger_is_one_alert_with_the_halt_labels(
    alertmanager: Alertmanager, client: httpx.AsyncClient
) -> None:
    rollout = f"checkout-{uuid.uuid4().hex[:8]}"
    page, context = halt(rollout)
    pager = AlertmanagerPager(alertmanager.url, client)
    await deliver(pager, lambda p: p.trigger(page, context))

    alerts = alertmanager.alerts(rollout=rollout)
    assert len(alerts) == 1, alerts
    alert = alerts[0]
    assert alert["labels"] == {
        "alertname": "CheckoutRolloutHalted",
        "namespace": "payments",
        "rollout": rollout,
        "owner": "payments-oncall",
        "dedup_key": page.dedup_key,
        "severity": "error",
    }
    assert alert["annotations"]["summary"] == page.summary
    assert alert["annotations"]["gate"] == "p99-latency"
    assert "segment" not in alert["annotations"]  # empty details are left out
    assert alert["status"]["state"] == "active"
    # Firing for a day, not Alertmanager's 5-minute resolve_timeout: nobody resends it.
    assert parse_time(alert["endsAt"]) > datetime.now(UTC) + timedelta(hours=23)
    assert abs(parse_time(alert["startsAt"]) - context.started()) < timedelta(seconds=1)


async def test_ten_triggers_are_still_one_alert(alertmanager: Alertmanager, client: httpx.AsyncClient) -> None:
    rollout = f"checkout-{uuid.uuid4().hex[:8]}"
    page, context = halt(rollout)
    owner = Owner.model_validate({"name": "payments-oncall", "page": [{"alertmanager": {"url": alertmanager.url}}]})
    for _ in range(10):
        outcomes = await send_page_actions([page], owner, {}, context, client, datetime.now(UTC))
        assert outcomes == [DeliveryOutcome("page[0]:alertmanager", page.dedup_key, resolved=False)]
    alerts = alertmanager.alerts(rollout=rollout)
    assert len(alerts) == 1, alerts
    assert alerts[0]["fingerprint"]


async def test_resolve_makes_the_alert_inactive(alertmanager: Alertmanager, client: httpx.AsyncClient) -> None:
    rollout = f"checkout-{uuid.uuid4().hex[:8]}"
    page, context = halt(rollout)
    other_page, other_context = halt(rollout)  # another halt of the same rollout stays firing
    owner = Owner.model_validate({"name": "payments-oncall", "page": [{"alertmanager": {"url": alertmanager.url}}]})
    await send_page_actions([page, other_page], owner, {}, context, client, datetime.now(UTC))
    assert len(active(alertmanager, rollout)) == 2

    resolve = ResolvePage(page.dedup_key, page.summary, targets=(0,))
    outcomes = await send_page_actions([resolve], owner, {}, context, client, datetime.now(UTC))
    assert outcomes == [DeliveryOutcome("page[0]:alertmanager", page.dedup_key, resolved=True)]

    still = active(alertmanager, rollout)
    assert [alert["labels"]["dedup_key"] for alert in still] == [other_page.dedup_key]
    assert alertmanager.alerts(dedup_key=page.dedup_key) == []

    # Resolving again (a replayed decision) finds nothing to resolve and succeeds.
    again = await send_page_actions([resolve], owner, {}, context, client, datetime.now(UTC))
    assert again[0].ok, again
    await send_page_actions(
        [ResolvePage(other_page.dedup_key, "promoted", targets=(0,))],
        owner,
        {},
        other_context,
        client,
        datetime.now(UTC),
    )
    assert active(alertmanager, rollout) == []


async def test_an_alert_alertmanager_refuses_is_not_retried(
    alertmanager: Alertmanager, client: httpx.AsyncClient
) -> None:
    page, _ = halt(f"checkout-{uuid.uuid4().hex[:8]}")
    # endsAt before startsAt: Alertmanager answers 400.
    backwards = PageContext(
        namespace="payments",
        name="checkout-api",
        owner="payments-oncall",
        triggered_at=datetime.now(UTC) + timedelta(days=3),
        now=datetime.now(UTC),
    )
    owner = Owner.model_validate({"name": "payments-oncall", "page": [{"alertmanager": {"url": alertmanager.url}}]})
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    outcomes = await send_page_actions([page], owner, {}, backwards, client, datetime.now(UTC), sleep=sleep)
    host = alertmanager.url.removeprefix("http://")
    assert outcomes[0].error.startswith(f"alertmanager at {host}: HTTP 400"), outcomes
    assert waits == []
