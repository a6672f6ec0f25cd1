"""Payloads of the page targets against the documented field rules, and the retry policy."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from checkout_gates.api.destinations import DESTINATIONS_KEY
from checkout_gates.api.spec import Owner, PageTarget
from checkout_gates.paging import alertmanager, pagerduty, slack, webhook
from checkout_gates.paging.base import DeliveryError, MissingSecretError, PageContext, make_pager, owner_secrets
from checkout_gates.paging.common import describe_answer, label_name
from checkout_gates.paging.delivery import deliver
from checkout_gates.rollout.actions import PageOwner, ResolvePage

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
TRIGGERED = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NOW = TRIGGERED + timedelta(minutes=7)
DETAILS = {
    "rollout": "payments/checkout-api",
    "owner": "payments-oncall",
    "phase": "Halted",
    "step": "1",
    "weights": "stable 95% / canary 5%",
    "reason": "gate auth-approval failed",
    "abort": "kubectl annotate cro/checkout-api -n payments gates.checkout.dev/abort=$USER",
    "retry": "kubectl annotate cro/checkout-api -n payments gates.checkout.dev/retry=$USER",
    "gate": "auth-approval",
    "segment": 'provider="adyen", method="card"',
    "value": "0.912",
    "baseline": "0.951",
    "odd-key.with dots": "kept",
}
CONTEXT = PageContext(
    namespace="payments",
    name="checkout-api",
    owner="payments-oncall",
    source="checkout-gates/test",
    triggered_at=TRIGGERED,
    now=NOW,
    links=(("dashboard", "https://grafana.example/d/checkout"),),
)


def page(*, summary: str = "auth-approval dropped 3.9pp for adyen/card", key: str = "k1", **kw: Any) -> PageOwner:
    fields: dict[str, Any] = {"severity": "error", "details": DETAILS, "targets": (0,)} | kw
    return PageOwner(dedup_key=key, summary=summary, **fields)


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- PagerDuty ----------------------------------------------------------------------------------


def check_pagerduty_event(event: dict[str, Any]) -> None:
    """The Events API v2 rules of https://developer.pagerduty.com/docs/events-api-v2/trigger-events/."""
    assert isinstance(event["routing_key"], str) and event["routing_key"]
    assert event["event_action"] in ("trigger", "acknowledge", "resolve")
    assert isinstance(event["dedup_key"], str) and 0 < len(event["dedup_key"]) <= 255
    if event["event_action"] != "trigger":
        return
    payload = event["payload"]
    assert 0 < len(payload["summary"]) <= 1024
    assert payload["severity"] in ("critical", "error", "warning", "info")
    assert payload["source"]
    for key in ("component", "group", "class"):
        assert isinstance(payload[key], str)
    assert isinstance(payload["custom_details"], dict)
    parse_time(payload["timestamp"])
    for link in event.get("links", []):
        assert set(link) == {"href", "text"}


def test_pagerduty_trigger_follows_the_events_v2_rules() -> None:
    event = pagerduty.trigger_event("R0UTINGKEY", page(), CONTEXT)
    check_pagerduty_event(event)
    assert event["routing_key"] == "R0UTINGKEY"
    assert event["dedup_key"] == "k1"
    payload = event["payload"]
    assert payload["severity"] == "error"
    assert payload["summary"] == "auth-approval dropped 3.9pp for adyen/card"
    assert (payload["component"], payload["group"]) == ("checkout-api", "payments")
    assert payload["class"] == "checkout-rollout-halt/auth-approval"
    assert parse_time(payload["timestamp"]) == TRIGGERED
    for key, value in DETAILS.items():
        assert payload["custom_details"][key] == value  # rollout, step, weights, gate, segment, commands...
    assert payload["custom_details"]["dedup_key"] == "k1"
    assert event["links"] == [{"href": "https://grafana.example/d/checkout", "text": "dashboard"}]


def test_pagerduty_long_summary_is_cut_with_an_ellipsis() -> None:
    event = pagerduty.trigger_event("rk", page(summary="x" * 5000), CONTEXT)
    check_pagerduty_event(event)
    summary = event["payload"]["summary"]
    assert len(summary) == 1024 and summary.endswith("…") and summary.startswith("x" * 1000)


def test_pagerduty_long_dedup_key_is_shortened_the_same_way_for_trigger_and_resolve() -> None:
    long_key = "checkout-gates/" + "n" * 400
    trigger = pagerduty.trigger_event("rk", page(key=long_key), CONTEXT)
    resolve = pagerduty.resolve_event("rk", ResolvePage(long_key, "resolved", (0,)))
    check_pagerduty_event(trigger)
    check_pagerduty_event(resolve)
    assert trigger["dedup_key"] == resolve["dedup_key"]
    assert len(trigger["dedup_key"]) <= 255
    other = pagerduty.pd_dedup_key("checkout-gates/" + "n" * 399 + "m")
    assert other != trigger["dedup_key"]  # the hash keeps distinct halts apart


def test_pagerduty_severity_of_the_target_overrides_the_page() -> None:
    assert pagerduty.trigger_event("rk", page(), CONTEXT, severity="warning")["payload"]["severity"] == "warning"
    with pytest.raises(ValueError, match="severity"):
        pagerduty.trigger_event("rk", page(severity="fatal"), CONTEXT)


def test_pagerduty_resolve_is_minimal() -> None:
    event = pagerduty.resolve_event("rk", ResolvePage("k1", "promoted", (0,)))
    check_pagerduty_event(event)
    assert event == {"routing_key": "rk", "event_action": "resolve", "dedup_key": "k1"}


# --- Alertmanager -------------------------------------------------------------------------------


def check_alert(alert: dict[str, Any]) -> None:
    """Alertmanager's API v2 postable alert: label and annotation names are label names."""
    assert alert["labels"], "at least one label"
    for mapping in (alert["labels"], alert.get("annotations", {})):
        for name, value in mapping.items():
            assert LABEL_NAME.match(name), name
            assert isinstance(value, str) and value
    if "endsAt" in alert and "startsAt" in alert:
        assert parse_time(alert["startsAt"]) <= parse_time(alert["endsAt"])


NOTICE = {"rollout": "payments/checkout-api", "event": "AwaitingApproval", "approvals": "0 of 2",
          "approve": "kubectl annotate cro/checkout-api -n payments gates.checkout.dev/approve=$USER"}  # fmt: skip


def test_a_notice_is_its_own_alert_and_a_trigger_only_notice_fires_briefly() -> None:
    waiting = alertmanager.firing_alert(page(severity="info", details=NOTICE), CONTEXT)
    check_alert(waiting)
    assert (
        waiting["labels"]["alertname"] == "CheckoutRolloutNotice" and waiting["labels"]["event"] == "AwaitingApproval"
    )
    assert waiting["labels"]["severity"] == "info" and waiting["annotations"]["approve"] == NOTICE["approve"]
    assert parse_time(waiting["endsAt"]) - NOW == alertmanager.DEFAULT_FIRING_FOR, "resolved when approved"
    started = alertmanager.firing_alert(page(severity="info", details={**NOTICE, "event": "Started"}), CONTEXT)
    assert parse_time(started["endsAt"]) - NOW == alertmanager.NOTICE_FIRING_FOR, "never resolved: fires briefly"


def test_a_slack_notice_says_what_it_is_about_and_how_to_approve() -> None:
    message = slack.trigger_message(page(severity="info", details=NOTICE, summary="step 2 waits for approval"), CONTEXT)
    assert "notice: AwaitingApproval" in message["text"] and "halted" not in message["text"]
    assert NOTICE["approve"] in message["text"]


def test_alertmanager_alert_names_the_rollout_and_the_halt() -> None:
    alert = alertmanager.firing_alert(page(severity="critical"), CONTEXT)
    check_alert(alert)
    assert alert["labels"] == {
        "alertname": "CheckoutRolloutHalted",
        "namespace": "payments",
        "rollout": "checkout-api",
        "owner": "payments-oncall",
        "dedup_key": "k1",
        "severity": "critical",
    }
    annotations = alert["annotations"]
    assert annotations["summary"] == "auth-approval dropped 3.9pp for adyen/card"
    assert "gate: auth-approval" in annotations["description"]
    assert annotations["abort"] == DETAILS["abort"]
    assert annotations["odd_key_with_dots"] == "kept"
    assert parse_time(alert["startsAt"]) == TRIGGERED
    # Explicitly firing well past Alertmanager's resolve_timeout: nobody resends a delivered page.
    assert parse_time(alert["endsAt"]) == NOW + alertmanager.DEFAULT_FIRING_FOR
    assert alert["generatorURL"] == "https://grafana.example/d/checkout"


def test_alertmanager_resend_has_the_same_identity() -> None:
    first = alertmanager.firing_alert(page(), CONTEXT)
    later = alertmanager.firing_alert(page(summary="changed words"), replace(CONTEXT, now=NOW + timedelta(hours=1)))
    assert first["labels"] == later["labels"]
    assert first["startsAt"] == later["startsAt"]


def test_alertmanager_resolve_sets_ends_at_to_now() -> None:
    labels = alertmanager.alert_labels("k1", "error", CONTEXT)
    alert = alertmanager.resolved_alert(labels, CONTEXT)
    check_alert(alert)
    assert alert["labels"] == labels
    assert parse_time(alert["endsAt"]) == NOW
    assert parse_time(alert["startsAt"]) == TRIGGERED


def test_alertmanager_label_names_are_sanitized() -> None:
    assert label_name("odd-key.with dots") == "odd_key_with_dots"
    assert label_name("9lives") == "_9lives"
    assert label_name("") == "_"
    assert alertmanager.matcher("dedup_key", 'a"b\\c') == 'dedup_key="a\\"b\\\\c"'


# --- Slack and webhook --------------------------------------------------------------------------


def test_slack_message_has_text_blocks_and_commands() -> None:
    message = slack.trigger_message(page(), CONTEXT)
    assert message["text"]
    assert "checkout-api" in message["text"] and "auth-approval" in message["text"]
    assert DETAILS["abort"] in message["text"] and DETAILS["retry"] in message["text"]
    blocks = message["blocks"]
    assert blocks[0]["type"] == "header" and len(blocks[0]["text"]["text"]) <= 150
    for block in blocks:
        assert block["type"] in ("header", "section", "context")
        if block["type"] == "section":
            assert "text" in block or "fields" in block
            assert len(block.get("fields", [])) <= 10
            for item in [block.get("text"), *block.get("fields", [])]:
                if item is not None:
                    assert item["type"] == "mrkdwn" and 0 < len(item["text"]) <= 3000
    rendered = str(blocks)
    assert "gates.checkout.dev/abort" in rendered and "gates.checkout.dev/retry" in rendered
    assert "&lt;" not in message["text"]  # the fallback text is plain
    assert 'provider="adyen"' in rendered


def test_slack_escapes_control_characters_and_caps_lengths() -> None:
    message = slack.trigger_message(page(summary="<!channel> & " + "y" * 5000), CONTEXT)
    section = message["blocks"][1]["text"]["text"]
    assert "<!channel>" not in section and "&lt;!channel&gt; &amp;" in section
    assert len(section) <= 3000 and len(message["text"]) <= 3000


def test_slack_resolve_is_short() -> None:
    message = slack.resolve_message(ResolvePage("k1", "promoted"), CONTEXT)
    assert "resolved" in message["text"] and "payments/checkout-api" in message["text"]
    assert len(message["blocks"]) == 2


def test_webhook_bodies() -> None:
    trigger = webhook.trigger_body(page(), CONTEXT)
    resolve = webhook.resolve_body(ResolvePage("k1", "promoted", (0,)), CONTEXT)
    assert trigger["event"] == "trigger" and resolve["event"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] == "k1"
    assert trigger["severity"] == "error" and resolve["severity"] is None
    assert trigger["details"] == DETAILS and resolve["details"] == {}
    assert trigger["rollout"] == {"namespace": "payments", "name": "checkout-api"}
    assert parse_time(trigger["triggered_at"]) == TRIGGERED and parse_time(resolve["sent_at"]) == NOW
    assert set(trigger) == set(resolve)


# --- make_pager and secrets ---------------------------------------------------------------------


async def test_make_pager_resolves_secrets_and_names_a_missing_one() -> None:
    pd = PageTarget.model_validate({"pagerDuty": {"routingKeySecret": {"name": "pd", "key": "routing-key"}}})
    pd_warn = PageTarget.model_validate(
        {"pagerDuty": {"routingKeySecret": {"name": "pd", "key": "routing-key"}, "severity": "warning"}}
    )
    hook = PageTarget.model_validate({"webhook": {"urlSecret": {"name": "hook", "key": "url"}}})
    chat = PageTarget.model_validate({"slack": {"webhookSecret": {"name": "slack", "key": "url"}}})
    async with httpx.AsyncClient() as client:
        with pytest.raises(MissingSecretError, match=r"'routing-key' of Secret 'pd'"):
            make_pager(pd, {}, client)
        with pytest.raises(MissingSecretError, match="missing or empty"):
            make_pager(pd, {("pd", "routing-key"): "  "}, client)
        with pytest.raises(MissingSecretError, match="does not hold an http") as caught:
            make_pager(chat, {("slack", "url"): "s3cr3t-not-a-url"}, client)
        assert "s3cr3t" not in str(caught.value)
        key = "R0UT1NGKEY" * 3 + "rk"  # 32 characters, as PagerDuty's integration keys
        secrets = {("pd", "routing-key"): f"{key}\n", ("hook", "url"): "https://hooks.example/x"}
        pager = make_pager(pd, secrets, client)
        assert isinstance(pager, pagerduty.PagerDutyPager)
        assert pager.routing_key == key and pager.severity is None  # the page's severity applies
        assert key not in repr(pager)
        assert make_pager(pd_warn, secrets, client).severity == "warning"  # type: ignore[attr-defined]
        assert make_pager(hook, secrets, client).kind == "webhook"


def test_owner_secrets_lists_every_needed_key() -> None:
    owner = Owner.model_validate(
        {
            "name": "oncall",
            "page": [
                {"pagerDuty": {"routingKeySecret": {"name": "pd", "key": "rk"}}},
                {"alertmanager": {"url": "http://am:9093"}},
                {"webhook": {"url": "http://hook"}},
            ],
            "escalateAfter": "10m",
            "escalateTo": [{"slack": {"webhookSecret": {"name": "slack", "key": "url"}}}],
            "notify": [{"webhook": {"urlSecret": {"name": "hooks", "key": "notices"}}, "on": ["Started"]}],
        }
    )
    keys = {("pd", "rk"), ("slack", "url"), ("hooks", "notices")}
    destinations = {("pd", DESTINATIONS_KEY), ("slack", DESTINATIONS_KEY), ("hooks", DESTINATIONS_KEY)}
    assert owner_secrets(owner) == keys | destinations


# --- errors and retries -------------------------------------------------------------------------


def test_delivery_error_names_kind_host_status_and_a_short_answer_but_not_the_path() -> None:
    error = DeliveryError(
        "slack", "https://hooks.slack.com/services/T000/B000/SECRET", status=404, answer="no_service " * 100
    )
    text = str(error)
    assert text.startswith("slack at hooks.slack.com: HTTP 404: answer: no_service")
    assert "SECRET" not in text and "/services" not in text
    assert len(error.answer) <= 200 and error.answer.endswith("…")
    assert not error.retryable


def _answer(kind: str, url: str, status: int, content: bytes, media: str) -> str:
    response = httpx.Response(
        status, content=content, headers={"content-type": media}, request=httpx.Request("POST", url)
    )
    return describe_answer(kind, response)


def test_the_body_of_an_arbitrary_server_is_never_shown_only_its_media_type_and_size() -> None:
    secret = b'{"message": "internal admin token: hunter2", "errors": ["db password hunter2"]}'
    for kind in ("webhook", "alertmanager", "pager_duty", "slack"):
        said = _answer(kind, "http://10.0.0.7:8080/hook", 500, secret, "application/json")
        assert said == f"application/json, {len(secret)} bytes", kind
    html = _answer("webhook", "http://internal/", 403, b"<html>secret page</html>", "text/html; charset=utf-8")
    assert html == "text/html, 24 bytes"


def test_slack_error_codes_and_pagerdutys_own_errors_are_shown() -> None:
    assert _answer("slack", "https://hooks.slack.com/x", 400, b"invalid_payload", "text/plain") == "invalid_payload"
    assert _answer("slack", "https://hooks.slack.com/x", 400, b"no! \x1b[2J", "text/plain") == "text/plain, 8 bytes"
    body = rb'{"status": "invalid event", "message": "Event object is invalid", "errors": ["\u001b[2J Length of x"]}'
    said = _answer("pager_duty", "https://events.pagerduty.com/v2/enqueue", 400, body, "application/json")
    assert said == "Event object is invalid; \\x1b[2J Length of x"


class FlakyPager:
    kind = "webhook"

    def __init__(self, failures: list[DeliveryError]) -> None:
        self.failures = failures
        self.calls = 0

    async def trigger(self, page: PageOwner, context: PageContext) -> None:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)

    async def resolve(self, page: ResolvePage, context: PageContext) -> None:
        raise AssertionError("not used")


def retryable(status: int = 500, retry_after: float | None = None) -> DeliveryError:
    return DeliveryError("webhook", "http://h", status=status, retryable=True, retry_after=retry_after)


async def test_deliver_retries_with_exponential_backoff() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    pager = FlakyPager([retryable(), retryable(503)])
    await deliver(pager, lambda p: p.trigger(page(), CONTEXT), attempts=3, backoff=0.2, sleep=sleep)
    assert pager.calls == 3 and waits == [0.2, 0.4]


async def test_deliver_gives_up_after_the_attempts_and_honours_retry_after() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    pager = FlakyPager([retryable(429, retry_after=2.5), retryable(), retryable(), retryable()])
    with pytest.raises(DeliveryError) as caught:
        await deliver(pager, lambda p: p.trigger(page(), CONTEXT), attempts=3, backoff=0.2, sleep=sleep)
    assert pager.calls == 3 and waits == [2.5, 0.4]
    assert caught.value.attempts == 3


async def test_deliver_does_not_retry_a_refused_page() -> None:
    async def sleep(seconds: float) -> None:
        raise AssertionError("no wait expected")

    refused = DeliveryError("pager_duty", "https://events.pagerduty.com/v2/enqueue", status=400, answer="bad")
    pager = FlakyPager([refused])
    with pytest.raises(DeliveryError, match="HTTP 400"):
        await deliver(pager, lambda p: p.trigger(page(), CONTEXT), sleep=sleep)
    assert pager.calls == 1
