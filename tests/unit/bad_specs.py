"""A table of bad CheckoutRollout specs, shared by the unit tests (lint) and the apiserver tests.

Each entry mutates a valid example from ``examples/gates`` in one way and says where the problem
must be reported: ``path``/``message`` for ``parse_rollout`` (and so ``checkout-gates lint``),
``server_path``/``server_message`` for kube-apiserver's refusal, when the CRD's schema or CEL
rules can catch it (``None``: only lint can).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "gates"
EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))

Document = dict[str, Any]
Mutation = Callable[[Document], None]

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _parts(path: str) -> list[str | int]:
    return [int(index) if index else name for name, index in _PART.findall(path)]


def _parent(document: Document, path: str) -> tuple[Any, str | int]:
    parts = _parts(path)
    node: Any = document
    for part in parts[:-1]:
        node = node[part]
    return node, parts[-1]


def put(path: str, value: Any) -> Mutation:
    """Set the field at a dotted path (``spec.steps[1].gate.window``) to value."""

    def mutate(document: Document) -> None:
        node, last = _parent(document, path)
        node[last] = copy.deepcopy(value)

    return mutate


def drop(path: str) -> Mutation:
    """Remove the field at a dotted path."""

    def mutate(document: Document) -> None:
        node, last = _parent(document, path)
        del node[last]

    return mutate


def append(path: str, value: Any) -> Mutation:
    """Append value to the list at a dotted path."""

    def mutate(document: Document) -> None:
        node, last = _parent(document, path)
        node[last].append(copy.deepcopy(value))

    return mutate


def load_example(name: str) -> Document:
    document: Document = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    return document


def _tail(
    *,
    histogram: str = 'checkout_request_duration_seconds{variant="{{variant}}"}',
    tail_extra: Document | None = None,
    **fields: Any,
) -> Document:
    """A tail gate (slow checkouts), valid unless ``fields`` or ``tail_extra`` make it not."""
    gate: Document = {
        "name": "slow-checkouts",
        "tail": {"histogram": histogram, **(tail_extra or {})},
        "compare": {"maxRise": "50%"},
        "method": "sequential",
        "counts": "exact",
    }
    return {**gate, **fields}


@dataclass(frozen=True)
class BadSpec:
    id: str
    mutations: tuple[Mutation, ...]
    path: str
    """A substring of the path of the Problem that parse_rollout must report."""
    message: str
    """A fragment of that Problem's message."""
    server_path: str | None = None
    """A substring of kube-apiserver's refusal naming the field; None if the CRD cannot catch it."""
    server_message: str | None = None
    example: str = "card-payments.yaml"

    def document(self, name: str | None = None) -> Document:
        """The example, mutated; named ``name`` in metadata when given."""
        document = load_example(self.example)
        for mutate in self.mutations:
            mutate(document)
        if name is not None:
            document["metadata"]["name"] = name
        return document


# card-payments.yaml: steps 0 setWeight 1, 1 gate, 2 setWeight 5, 3 gate, 4 approval, 5 setWeight 25,
# 6 gate, 7 setWeight 100; gates 0 auth-approval (ratio, sequential), 1 capture-success (ratio),
# 2 duplicate-charges (count, max 0), 3 p99-latency (quantile, maxRise 20%, max 2.5).
BAD_SPECS: tuple[BadSpec, ...] = (
    BadSpec(
        "two-routers",
        (put("spec.routing.istio", {"virtualService": "checkout-api"}),),
        "spec.routing",
        "exactly one of gatewayAPI, istio, ingressNginx, replicas",
        "spec.routing",
        "routing needs exactly one of",
    ),
    BadSpec(
        "weight-above-100",
        (put("spec.steps[7].setWeight", 101),),
        "spec.steps[7].setWeight",
        "less than or equal to 100",
        "spec.steps[7].setWeight",
        "less than or equal to 100",
    ),
    BadSpec(
        "decreasing-set-weight",
        (put("spec.steps[2].setWeight", 0),),
        "spec.steps[2].setWeight",
        "exposure only grows",
        "spec.steps",
        "setWeight steps must never decrease",
    ),
    BadSpec(
        "gate-step-names-undeclared-gate",
        (append("spec.steps[1].gate.pass", "refund-success"),),
        "spec.steps[1].gate.pass",
        "undeclared gates ['refund-success']",
        "spec.steps",
        "gate steps may only name gates declared in spec.gates",
    ),
    BadSpec(
        "duplicate-gate-names",
        (put("spec.gates[1].name", "auth-approval"),),
        "spec.gates[1].name",
        "declared twice",
        "spec.gates[1]",
        "Duplicate value",
    ),
    BadSpec(
        "duration-in-words",
        (put("spec.steps[1].gate.window", "10 minutes"),),
        "spec.steps[1].gate.window",
        "is not a duration",
        "spec.steps[1].gate.window",
        "should match",
    ),
    BadSpec(
        "zero-duration",
        (put("spec.analysis.interval", "0s"),),
        "spec.analysis.interval",
        "must be longer than zero",
        "spec.analysis.interval",
        "must be longer than zero",
    ),
    BadSpec(
        "busy-loop-interval",
        (put("spec.analysis.interval", "0.0000001ms"),),
        "spec.analysis.interval",
        "must be between 1s and 1h",
        "spec.analysis.interval",
        "must be between 1s and 1h",
    ),
    BadSpec(
        "exact-counts-of-promql",  # a sum of increase() has no raw samples to count
        (
            put(
                "spec.gates[0].ratio.good",
                'sum by (provider) (increase(payment_authorizations_total{variant="{{variant}}"}[{{window}}]))',
            ),
        ),
        "spec.gates[0].counts",
        "must be a bare selector",
        "spec.gates[0].counts",
        "must be a bare selector",
    ),
    BadSpec(
        "exact-counts-with-a-samples-query",  # the samples query is PromQL: it has no raw samples
        (
            put("spec.gates[2].count", 'payment_duplicate_charges_total{variant="{{variant}}"}'),
            put("spec.gates[2].method", "sequential"),
            put("spec.gates[2].counts", "exact"),
            put("spec.gates[2].samples", 'sum(increase(payment_charges_total{variant="{{variant}}"}[{{window}}]))'),
        ),
        "spec.gates[2].samples",
        "give the requests served as a counter selector in exposure",
        "spec.gates[2].samples",
        "give the requests served as a counter selector in exposure",
    ),
    BadSpec(
        "exact-counts-of-a-count-without-exposure",  # no exposure: no canary share per interval
        (drop("spec.gates[2].exposure"),),
        "spec.gates[2].exposure",
        "a count gate needs exposure",
        "spec.gates[2].exposure",
        "a count gate needs exposure",
    ),
    BadSpec(
        "exact-counts-on-a-threshold-gate",
        (put("spec.gates[3].counts", "exact"),),
        "spec.gates[3].counts",
        "counts exact is for method sequential",
        "spec.gates[3].counts",
        "counts exact is for method sequential",
    ),
    BadSpec(
        "tail-of-a-bucket-series",  # the operator appends _bucket and _count itself
        (put("spec.gates[4]", _tail(histogram='checkout_request_duration_seconds_bucket{variant="{{variant}}"}')),),
        "spec.gates[4].tail.histogram",
        "its name without _bucket or _count",
        "spec.gates[4].tail.histogram",
        "its name without _bucket or _count",
    ),
    BadSpec(
        "tail-with-its-own-le",  # the bound is chosen (or given as tail.le), not matched
        (put("spec.gates[4]", _tail(histogram='checkout_request_duration_seconds{variant="{{variant}}", le="1.0"}')),),
        "spec.gates[4].tail.histogram",
        "no le matcher",
        "spec.gates[4].tail.histogram",
        "no le matcher",
    ),
    BadSpec(
        "tail-as-a-threshold-gate",
        (put("spec.gates[4]", _tail(method="threshold", counts="increase")),),
        "spec.gates[4].method",
        "a tail signal is a sequential test on exact counts",
        "spec.gates[4].method",
        "a tail signal is a sequential test on exact counts",
    ),
    BadSpec(
        "tail-with-an-absolute-max",  # a point check without error control: not on a tail
        (put("spec.gates[4]", _tail(max=0.05)),),
        "spec.gates[4].compare",
        "give compare.maxRise as a percent",
        "spec.gates[4].compare",
        "give compare.maxRise as a percent",
    ),
    BadSpec(
        "tail-with-le-and-quantile",
        (put("spec.gates[4]", _tail(tail_extra={"quantile": 0.99, "le": "1.0"})),),
        "spec.gates[4].tail.le",
        "quantile (the bound chosen from stable) or le, not both",
        "spec.gates[4].tail.le",
        "quantile (the bound chosen from stable) or le, not both",
    ),
    BadSpec(
        "tail-le-hidden-behind-a-comment",  # PromQL allows # comments inside the braces
        (put("spec.gates[4]", _tail(histogram='x_seconds{a="b", # c\n le="1"}')),),
        "spec.gates[4].tail.histogram",
        "no comment",
        "spec.gates[4].tail.histogram",
        "no comment",
    ),
    BadSpec(
        "tail-le-as-a-quoted-name",  # Prometheus 3 quotes label names
        (put("spec.gates[4]", _tail(histogram='x_seconds{"le"="1"}')),),
        "spec.gates[4].tail.histogram",
        "no le matcher",
        "spec.gates[4].tail.histogram",
        "no le matcher",
    ),
    BadSpec(
        "tail-of-a-bare-bucket-name",
        (put("spec.gates[4]", _tail(histogram='_bucket{variant="{{variant}}"}')),),
        "spec.gates[4].tail.histogram",
        "its name without _bucket or _count",
        "spec.gates[4].tail.histogram",
        "its name without _bucket or _count",
    ),
    BadSpec(
        "tail-with-an-exposure",  # its _count is the requests served
        (put("spec.gates[4]", _tail(exposure='checkout_requests_total{variant="{{variant}}"}')),),
        "spec.gates[4].tail",
        "give no exposure or samples",
        "spec.gates[4].tail",
        "give no exposure or samples",
    ),
    BadSpec(
        "tail-segmented-by-le",
        (put("spec.gates[4]", _tail(segmentBy=["le"])),),
        "spec.gates[4].tail",
        "do not segment by le",
        "spec.gates[4].tail",
        "do not segment by le",
    ),
    BadSpec(
        "tail-le-beyond-any-float",
        (put("spec.gates[4]", _tail(tail_extra={"le": "1e999"})),),
        "spec.gates[4].tail.le",
        "is not a finite bucket bound",
    ),
    BadSpec(
        "tail-le-of-infinity",  # nothing exceeds +Inf
        (put("spec.gates[4]", _tail(tail_extra={"le": "+Inf"})),),
        "spec.gates[4].tail.le",
        "is not a finite bucket bound",
        "spec.gates[4].tail.le",
        "should match",
    ),
    BadSpec(
        "hour-long-query-timeout",
        (put("spec.prometheus.timeout", "1h"),),
        "spec.prometheus.timeout",
        "must be between 1ms and 60s",
        "spec.prometheus.timeout",
        "must be between 1ms and 60s",
    ),
    BadSpec(
        "tolerance-in-words",
        (put("spec.gates[0].compare.maxDrop", "half"),),
        "spec.gates[0].compare.maxDrop",
        "is not a tolerance",
        "spec.gates[0].compare.maxDrop",
        "should match",
    ),
    BadSpec(
        "sequential-on-quantile",
        (put("spec.gates[3].method", "sequential"),),
        "spec.gates[3].method",
        "needs a ratio, count or tail signal",
        "spec.gates[3].method",
        "method sequential needs a ratio, count or tail signal",
    ),
    BadSpec(
        "percentage-points-on-count",
        (put("spec.gates[2].compare", {"maxRise": "1pp"}),),
        "spec.gates[2].compare.maxRise",
        "percentage points (pp) only apply to ratio signals",
        "spec.gates[2].compare",
        "percentage points (pp) only apply to ratio signals",
    ),
    BadSpec(
        "min-above-max",
        (put("spec.gates[3].min", 5),),
        "spec.gates[3].min",
        "is above max",
        "spec.gates[3].min",
        "min must not be above max",
    ),
    BadSpec(
        "gate-without-rule",
        (drop("spec.gates[3].compare"), drop("spec.gates[3].max")),
        "spec.gates[3]",
        "has no rule",
        "spec.gates[3]",
        "a gate needs a rule",
    ),
    BadSpec(
        "gate-with-two-signals",
        (put("spec.gates[2].gauge", "max(queue)"),),
        "spec.gates[2]",
        "needs exactly one of ratio, count, quantile, gauge",
        "spec.gates[2]",
        "a gate needs exactly one signal",
    ),
    BadSpec(
        "missing-owner-page",
        (drop("spec.owner.page"),),
        "spec.owner.page",
        "is required",
        "spec.owner.page",
        "Required value",
    ),
    BadSpec(
        "escalate-after-without-escalate-to",
        (drop("spec.owner.escalateTo"),),
        "spec.owner.escalateTo",
        "go together",
        "spec.owner.escalateTo",
        "escalateAfter and escalateTo go together",
    ),
    BadSpec(
        "escalate-to-without-escalate-after",
        (drop("spec.owner.escalateAfter"),),
        "spec.owner.escalateAfter",
        "go together",
        "spec.owner.escalateAfter",
        "escalateAfter and escalateTo go together",
    ),
    BadSpec(
        "unknown-field-typo",
        (put("spec.steps[0]", {"setweight": 1}),),
        "spec.steps[0].setweight",
        "is not a known field",
        "spec.steps[0].setweight",
        "unknown field",
    ),
    BadSpec(
        "gate-name-with-uppercase",
        (put("spec.gates[0].name", "Auth-Approval"),),
        "spec.gates[0].name",
        "is not a DNS label",
        "spec.gates[0].name",
        "should match",
    ),
    BadSpec(
        "alpha-too-large",
        (put("spec.gates[0].alpha", 0.9),),
        "spec.gates[0].alpha",
        "less than or equal to 0.5",
        "spec.gates[0].alpha",
        "less than or equal to 0.5",
    ),
    BadSpec(
        "rollout-alpha-of-zero",  # a budget of 0 halts nothing ever: refused, not read as "off"
        (put("spec.analysis.alpha", 0),),
        "spec.analysis.alpha",
        "greater than 0",
        "spec.analysis.alpha",
        "greater than 0",
    ),
    BadSpec(
        "step-with-two-kinds",
        (put("spec.steps[4]", {"approval": {}, "pause": {"duration": "5m"}}),),
        "spec.steps[4]",
        "exactly one of setWeight, gate, approval, pause",
        "spec.steps[4]",
        "a step needs exactly one of",
    ),
    BadSpec(
        "same-service-for-stable-and-canary",
        (put("spec.canary.service", "checkout-api-stable"),),
        "spec.canary.service",
        "same service as stable",
        "spec.canary.service",
        "stable and canary must name different services",
    ),
    BadSpec(
        "same-variant-label-for-stable-and-canary",
        (put("spec.canary.variant", "stable"),),
        "spec.canary.variant",
        "same variant label as stable",
        "spec.canary.variant",
        "stable and canary must carry different variant labels",
    ),
    BadSpec(
        "prometheus-address-without-scheme",
        (put("spec.prometheus.address", "prometheus.monitoring:9090"),),
        "spec.prometheus.address",
        "is not an http:// or https:// URL",
        "spec.prometheus.address",
        "should match",
    ),
    BadSpec(
        "negative-min-samples",
        (put("spec.gates[0].minSamples", -1),),
        "spec.gates[0].minSamples",
        "greater than or equal to 0",
        "spec.gates[0].minSamples",
        "greater than or equal to 0",
    ),
    BadSpec(
        "webhook-without-url",
        (put("spec.owner.page[1]", {"webhook": {}}),),
        "spec.owner.page[1].webhook",
        "exactly one of url, urlSecret",
        "spec.owner.page[1].webhook",
        "webhook needs exactly one of url, urlSecret",
    ),
    BadSpec(
        "page-target-with-two-kinds",
        (put("spec.owner.page[1].slack", {"webhookSecret": {"name": "slack", "key": "url"}}),),
        "spec.owner.page[1]",
        "exactly one of pagerDuty, alertmanager, slack, webhook",
        "spec.owner.page[1]",
        "a page target needs exactly one of",
    ),
    BadSpec(
        "prometheus-with-two-auths",
        (
            put("spec.prometheus.bearerTokenSecret", {"name": "prom", "key": "token"}),
            put("spec.prometheus.basicAuth", {"secretName": "prom"}),
        ),
        "spec.prometheus",
        "not both",
        "spec.prometheus",
        "prometheus takes bearerTokenSecret or basicAuth, not both",
    ),
    BadSpec(
        "segment-label-with-dash",
        (put("spec.gates[0].segmentBy", ["provider-name"]),),
        "spec.gates[0].segmentBy[0]",
        "is not a Prometheus label name",
        "spec.gates[0].segmentBy[0]",
        "should match",
    ),
    BadSpec(
        "no-steps",
        (put("spec.steps", []),),
        "spec.steps",
        "at least 1 item",
        "spec.steps",
        "should have at least 1 items",
    ),
    BadSpec(
        "unknown-on-halt",
        (put("spec.onHalt", "rollback"),),
        "spec.onHalt",
        "'hold' or 'abort'",
        "spec.onHalt",
        "Unsupported value",
    ),
    BadSpec(
        "workload-ref-with-the-replica-router",
        (
            put("spec.workloadRef", {"name": "checkout-api"}),
            put(
                "spec.routing",
                {"replicas": {"stableDeployment": "a", "canaryDeployment": "b", "totalReplicas": 10}},
            ),
        ),
        "spec.routing.replicas",
        "both would write the Deployments' replicas",
        "spec.routing.replicas",
        "cannot use the replicas router",
    ),
    BadSpec(
        "workload-name-too-long-for-its-stable-copy",
        (put("spec.workloadRef", {"name": "a" * 57}),),
        "spec.workloadRef.name",
        "at most 56 characters",
        "spec.workloadRef.name",
        "56",
    ),
    BadSpec(
        "workload-kind-not-supported",
        (put("spec.workloadRef", {"kind": "StatefulSet", "name": "checkout-api"}),),
        "spec.workloadRef.kind",
        "'Deployment'",
        "spec.workloadRef.kind",
        "Unsupported value",
    ),
    BadSpec(
        "canary-floor-of-zero",
        (put("spec.workloadRef", {"name": "checkout-api", "scaleWithWeight": {"minReplicas": 0}}),),
        "spec.workloadRef.scaleWithWeight.minReplicas",
        "greater than or equal to 1",
        "spec.workloadRef.scaleWithWeight.minReplicas",
        "greater than or equal to 1",
    ),
    BadSpec(
        "canary-sized-by-weight-and-by-an-hpa",
        (
            put(
                "spec.workloadRef",
                {"name": "checkout-api", "scaleWithWeight": {"minReplicas": 1}, "autoscalerRef": {"name": "api"}},
            ),
        ),
        "spec.workloadRef.scaleWithWeight",
        "the HPA sizes it",
        "spec.workloadRef.scaleWithWeight",
        "the HPA sizes it",
    ),
    BadSpec(
        "notice-for-an-event-there-is-none-of",
        (put("spec.owner.notify", [{"webhook": {"url": "http://127.0.0.1:9/n"}, "on": ["Halted"]}]),),
        "spec.owner.notify[0].on[0]",
        "'AwaitingApproval', 'Started', 'Promoted' or 'Aborted'",
        "spec.owner.notify[0].on[0]",
        "Unsupported value",
    ),
    BadSpec(
        "four-eyes-for-six",
        (put("spec.steps[2]", {"approval": {"approvers": 6}}),),
        "spec.steps[2].approval.approvers",
        "less than or equal to 5",
        "spec.steps[2].approval.approvers",
        "less than or equal to 5",
    ),
    BadSpec(
        "pause-without-duration",
        (put("spec.steps[4]", {"pause": {}}),),
        "spec.steps[4].pause.duration",
        "is required",
        "spec.steps[4].pause.duration",
        "Required value",
    ),
)

SERVER_BAD_SPECS = tuple(bad for bad in BAD_SPECS if bad.server_path is not None)
