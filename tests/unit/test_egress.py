"""The egress allowlist and credentials bound to destinations (api/destinations.py), where the
reconciler and the pagers apply them: a refused destination gets no request and no credential."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from checkout_gates.api.destinations import (
    DESTINATIONS_KEY,
    DestinationError,
    EgressPolicy,
    credential_refusal,
    parse_destination,
)
from checkout_gates.api.resource import CheckoutRollout, parse_rollout
from checkout_gates.api.spec import Owner, PageTarget
from checkout_gates.controller.reconcile import Reconciler
from checkout_gates.metrics.prometheus import PrometheusSource
from checkout_gates.paging.base import DestinationRefusedError, PageContext, make_pager
from checkout_gates.paging.delivery import send_page_actions
from checkout_gates.rollout.actions import PageOwner

from .rollouts import rollout_doc

PROMETHEUS = "http://prometheus.monitoring.svc:9090"


def allows(pattern: str, url: str) -> bool:
    return EgressPolicy.of([pattern]).refusal(url, "field") is None


@pytest.mark.parametrize(
    ("pattern", "url", "allowed"),
    [
        (PROMETHEUS, PROMETHEUS, True),
        (PROMETHEUS, PROMETHEUS + "/api/v1/query", True),
        (PROMETHEUS, "http://prometheus.monitoring.svc:9091", False),  # another port
        (PROMETHEUS, "https://prometheus.monitoring.svc:9090", False),  # another scheme
        ("https://events.pagerduty.com", "https://events.pagerduty.com:443/v2/enqueue", True),  # default port
        ("https://events.pagerduty.com", "https://events.pagerduty.com.evil.example/v2/enqueue", False),
        ("https://*.example.com", "https://am.example.com/api", True),
        ("https://*.example.com", "https://a.b.example.com", True),
        ("https://*.example.com", "https://example.com", False),  # the apex is not a subdomain
        ("https://*.example.com", "https://evilexample.com", False),
        ("https://hooks.example.com/payments", "https://hooks.example.com/payments/oncall", True),
        ("https://hooks.example.com/payments", "https://hooks.example.com/payments-evil", False),
        ("https://hooks.example.com/payments", "https://hooks.example.com/", False),
        ("http://[fd00::1]:9090", "http://[fd00::1]:9090/api", True),
        ("HTTP://Prometheus.Monitoring.SVC:9090", PROMETHEUS, True),  # scheme and host case-insensitive
    ],
)
def test_an_allowlist_entry_matches_its_origin_and_path_prefix_only(pattern: str, url: str, allowed: bool) -> None:
    assert allows(pattern, url) is allowed


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (
            f"http://{PROMETHEUS.removeprefix('http://')}@10.0.0.7:8080",
            "user info",
        ),  # reads as one host, goes to another
        (f"{PROMETHEUS}#", "fragment"),  # would cut off the path the operator appends
        ("http://prometheus.monitoring.svc\\@10.0.0.7:9090", "user info"),
        ("http://prom%2emonitoring.svc:9090", "letters, digits"),
        ("file:///etc/passwd", "http:// or https://"),
        ("http://:9090", "no host"),
        ("http://prometheus:99999", "not a URL"),
        # The client removes dot segments, proxies decode %2e and %2f: a path prefix must mean what it says.
        ("https://gw.example.com/team-a/../team-b", "'..' segment"),
        ("https://gw.example.com/team-a/./x", "'.' or '..' segment"),
        ("https://gw.example.com/team-a/%2e%2e/team-b", "encoded"),
        ("https://gw.example.com/team-a%2Fteam-b", "encoded"),
        ("https://gw.example.com/team-a\\x", "encoded"),
    ],
)
def test_a_url_that_could_read_as_one_host_and_go_to_another_is_refused(url: str, why: str) -> None:
    refusal = EgressPolicy().refusal(url, "spec.prometheus.address")  # even when egress is unrestricted
    assert refusal is not None and refusal.startswith("spec.prometheus.address: ") and why in refusal


def test_a_refusal_names_the_field_the_url_and_where_the_allowlist_is_kept() -> None:
    policy = EgressPolicy.of([f"{PROMETHEUS}, https://events.pagerduty.com"])
    refusal = policy.refusal("http://169.254.169.254/latest/meta-data", "spec.prometheus.address")
    assert refusal is not None
    assert refusal.startswith("spec.prometheus.address: 'http://169.254.169.254/latest/meta-data' is not an allowed")
    assert PROMETHEUS in refusal and "egress.allowedDestinations" in refusal


@pytest.mark.parametrize(
    "entry",
    [
        "ftp://x",
        "https://*",
        "https://a.*.example.com",
        "https://x?y=1",
        "http://u@x",
        "http://*.svc:9090",  # anyone who may create a Service in any namespace would add a destination
        "http://*.svc.cluster.local:9090",
        "https://*.cluster.local",
    ],
)
def test_a_bad_allowlist_entry_is_an_error_at_start_not_a_silent_miss(entry: str) -> None:
    with pytest.raises(DestinationError):
        parse_destination(entry)


def test_a_query_string_on_a_base_url_is_refused_it_would_end_the_url_before_the_appended_path() -> None:
    policy = EgressPolicy.of([PROMETHEUS])
    assert policy.refusal(PROMETHEUS + "/?x=", "spec.prometheus.address") is None
    refusal = policy.refusal(PROMETHEUS + "/admin?x=", "spec.prometheus.address", base=True)
    assert refusal is not None and "query string" in refusal


def test_a_credential_goes_only_where_its_secret_says() -> None:
    assert credential_refusal("prom-token", PROMETHEUS, PROMETHEUS + "/api/v1/query", "f") is None
    elsewhere = credential_refusal(
        "prom-token", PROMETHEUS, "https://attacker.example", "spec.prometheus.bearerTokenSecret"
    )
    assert elsewhere is not None and "may not be sent to 'https://attacker.example'" in elsewhere
    unbound = credential_refusal("prom-token", None, PROMETHEUS, "f")
    assert unbound is not None and f"gates.checkout.dev/destinations='{PROMETHEUS}'" in unbound
    unreadable = credential_refusal("prom-token", "ftp://x", PROMETHEUS, "f")
    assert unreadable is not None and "unreadable" in unreadable
    implied = ("https://events.pagerduty.com",)
    assert credential_refusal("pd", None, "https://events.pagerduty.com/v2/enqueue", "f", implied=implied) is None
    # The Secret's own annotation wins over what is implied.
    owned = credential_refusal("db", PROMETHEUS, "https://events.pagerduty.com/v2/enqueue", "f", implied=implied)
    assert owned is not None and "may not be sent" in owned


# --- the reconciler: Prometheus ------------------------------------------------------------------


class SecretsOnly:
    """The one part of the Kubernetes port these passes use: Secrets, with a log of the reads."""

    def __init__(self, secrets: dict[str, tuple[dict[str, str], str | None]]) -> None:
        self.secrets = secrets
        self.reads: list[tuple[str, str]] = []

    async def secret_values(self, namespace: str, refs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        values: dict[tuple[str, str], str] = {}
        for name, key in refs:
            self.reads.append((name, key))
            data, bound_to = self.secrets.get(name, ({}, None))
            if key == DESTINATIONS_KEY:
                if bound_to is not None:
                    values[(name, key)] = bound_to
            elif key in data:
                values[(name, key)] = data[key]
        return values

    def close(self) -> None:
        pass


def rollout(prometheus: dict[str, Any]) -> CheckoutRollout:
    document = rollout_doc()
    document["spec"]["prometheus"] = prometheus
    parsed = parse_rollout(document)
    assert isinstance(parsed, CheckoutRollout), parsed
    return parsed


async def source_for(kube: SecretsOnly, prometheus: dict[str, Any], egress: EgressPolicy) -> PrometheusSource | str:
    reconciler = Reconciler(kube, routers=lambda spec, namespace: None, egress=egress)  # type: ignore[arg-type]
    try:
        source = await reconciler._source(rollout(prometheus))
        assert isinstance(source, PrometheusSource | str)
        return source
    finally:
        await reconciler.close()


def test_a_secret_key_reference_is_a_secret_data_key_never_the_lookup_of_the_annotation() -> None:
    document = rollout_doc()
    document["spec"]["prometheus"] = {
        "address": PROMETHEUS,
        "bearerTokenSecret": {"name": "t", "key": DESTINATIONS_KEY},
    }
    problems = parse_rollout(document)
    assert isinstance(problems, list)
    assert [p.path for p in problems] == ["spec.prometheus.bearerTokenSecret.key"]


async def test_a_prometheus_outside_the_allowlist_is_refused_before_any_secret_is_read() -> None:
    kube = SecretsOnly({"token": ({"t": "s3cret"}, "http://169.254.169.254")})
    prometheus = {"address": "http://169.254.169.254", "bearerTokenSecret": {"name": "token", "key": "t"}}
    source = await source_for(kube, prometheus, EgressPolicy.of([PROMETHEUS]))
    assert isinstance(source, str) and source.startswith("spec.prometheus.address: ")
    assert kube.reads == []


async def test_a_token_whose_secret_does_not_name_the_address_is_never_sent() -> None:
    """The exfiltration of finding 4: the author cannot read the Secret, names it and their own server."""
    kube = SecretsOnly({"prom-token": ({"token": "s3cret"}, PROMETHEUS)})
    prometheus = {
        "address": "http://attacker.example:9090",
        "bearerTokenSecret": {"name": "prom-token", "key": "token"},
    }
    source = await source_for(kube, prometheus, EgressPolicy())  # even with egress unrestricted
    assert isinstance(source, str) and source.startswith("spec.prometheus.bearerTokenSecret: Secret 'prom-token'")
    assert "s3cret" not in source


async def test_a_secret_with_no_destinations_gives_no_credential() -> None:
    kube = SecretsOnly({"basic": ({"u": "user", "p": "pass"}, None)})
    prometheus = {"address": PROMETHEUS, "basicAuth": {"secretName": "basic", "usernameKey": "u", "passwordKey": "p"}}
    source = await source_for(kube, prometheus, EgressPolicy.of([PROMETHEUS]))
    assert isinstance(source, str) and "spec.prometheus.basicAuth" in source and "does not say where" in source


async def test_an_allowed_address_with_a_bound_token_gets_its_source() -> None:
    kube = SecretsOnly({"prom-token": ({"token": "s3cret"}, f"https://other.example, {PROMETHEUS}")})
    prometheus = {"address": PROMETHEUS, "bearerTokenSecret": {"name": "prom-token", "key": "token"}}
    source = await source_for(kube, prometheus, EgressPolicy.of([PROMETHEUS]))
    assert isinstance(source, PrometheusSource)


# --- the pagers ----------------------------------------------------------------------------------


def owner(*targets: dict[str, Any]) -> Owner:
    return Owner.model_validate({"name": "payments-oncall", "page": list(targets)})


class Recorder:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def client(self) -> httpx.AsyncClient:
        def handle(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return httpx.Response(202, json={"status": "success"})

        return httpx.AsyncClient(transport=httpx.MockTransport(handle))


NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CONTEXT = PageContext(namespace="payments", name="checkout", owner="payments-oncall")


async def test_a_page_to_a_url_outside_the_allowlist_is_an_outcome_and_nothing_is_sent() -> None:
    recorder = Recorder()
    targets = owner({"webhook": {"url": "http://10.0.0.7:8080/admin"}}, {"alertmanager": {"url": "http://am.internal"}})
    page = PageOwner(dedup_key="k", summary="halted", severity="critical", details={}, targets=(0, 1))
    async with recorder.client() as client:
        outcomes = await send_page_actions(
            [page], targets, {}, CONTEXT, client, NOW, egress=EgressPolicy.of(["https://events.pagerduty.com"])
        )
    assert recorder.requests == []
    assert [o.error.split(": ")[1] for o in outcomes] == ["webhook.url", "alertmanager.url"]
    assert all("is not an allowed destination" in o.error for o in outcomes)


async def test_a_routing_key_goes_to_pagerduty_or_where_its_secret_allows_only() -> None:
    recorder = Recorder()
    egress = EgressPolicy.of(["https://events.pagerduty.com", "https://*.example.com"])
    secrets = {("pd", "key"): "R0UTINGKEY" * 3 + "ab"}  # 32 characters, as PagerDuty's keys
    async with recorder.client() as client:
        official = PageTarget.model_validate({"pagerDuty": {"routingKeySecret": {"name": "pd", "key": "key"}}})
        make_pager(official, secrets, client, egress=egress, name="page[0]:pager_duty")  # no binding needed
        custom = {"routingKeySecret": {"name": "pd", "key": "key"}, "url": "https://collector.example.com/enqueue"}
        target = PageTarget.model_validate({"pagerDuty": custom})
        with pytest.raises(DestinationRefusedError, match=r"page\[0\]:pager_duty: pagerDuty.routingKeySecret"):
            make_pager(target, secrets, client, egress=egress, name="page[0]:pager_duty")
        bound = {**secrets, ("pd", DESTINATIONS_KEY): "https://collector.example.com"}
        make_pager(target, bound, client, egress=egress, name="page[0]:pager_duty")
        # Any other Secret's value (a password named as a routing key) does not go to PagerDuty unasked.
        password = {("pd", "key"): "hunter2-DB-PASSWORD"}
        with pytest.raises(DestinationRefusedError, match="does not say where"):
            make_pager(official, password, client, egress=egress, name="page[0]:pager_duty")
    assert recorder.requests == []
