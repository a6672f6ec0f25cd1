"""The ``CheckoutRollout`` spec: what a release engineer declares.

Every rule here that involves more than one field is also written as a CEL rule
(``x-kubernetes-validations``) so that kube-apiserver refuses the same objects that ``lint`` does.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal, NamedTuple, get_args

from pydantic import Field, Strict, model_validator

from checkout_gates.api.base import (
    WHOLE,
    ApiModel,
    JsonBool,
    JsonNumber,
    cel_exactly_one,
    exactly_one_of,
    field_error,
    wire_name,
)
from checkout_gates.api.quantities import (
    AnalysisInterval,
    Duration,
    QueryTimeout,
    ToleranceText,
    parse_duration,
    parse_tolerance,
)

GROUP = "gates.checkout.dev"
VERSION = "v1alpha1"
KIND = "CheckoutRollout"
PLURAL = "checkoutrollouts"

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
LABEL_VALUE = r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
Name = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
# What Kubernetes allows as a key of a Secret's data (and nothing the operator uses internally).
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
SecretKey = Annotated[str, Field(min_length=1, max_length=253, pattern=SECRET_KEY_PATTERN)]
PromQL = Annotated[str, Field(min_length=1, max_length=4096)]
# Printable ASCII after the scheme (RFC 3986: other characters are percent-encoded). Not [^\s]:
# Go's \s (kube-apiserver) is ASCII-only, Rust's (pydantic) is Unicode, so they disagreed on
# e.g. a no-break space.
URL_PATTERN = r"^https?://[!-~]+$"
Url = Annotated[str, Field(min_length=1, max_length=2048, pattern=URL_PATTERN)]
# Strictly a JSON integer: kube-apiserver's CEL rule on setWeight steps refuses 5.0 too.
Weight = Annotated[int, Strict(), Field(ge=0, le=100)]
MAX_SAMPLES = 10**12

MAX_GATES = 32
MAX_STEPS = 64
MAX_TARGETS = 8


class SecretKeyRef(ApiModel):
    """A key of a Secret in the rollout's namespace."""

    name: Name
    """The Secret's name."""
    key: SecretKey
    """The key of the Secret's data that holds the value."""


class Variant(ApiModel):
    """One side of the rollout: the Service that serves it and the label value its metrics carry."""

    service: Name
    """The Service that serves this side, in the rollout's namespace."""
    variant: Annotated[str | None, Field(max_length=63, pattern=LABEL_VALUE)] = None
    """The value of the variant label this side's metrics carry, put for {{variant}} in the gates' queries (default: stable and canary)."""


# --- the workload -----------------------------------------------------------------------------

# The stable copy is named and labelled after the Deployment with this suffix (docs/workloads.md);
# names and label values stay within 63 characters with it.
STABLE_SUFFIX = "-stable"
WorkloadName = Annotated[str, Field(min_length=1, max_length=63 - len(STABLE_SUFFIX), pattern=DNS_LABEL)]


class CanaryScaling(ApiModel):
    """The canary sized to its share of traffic instead of a full copy of stable's capacity."""

    min_replicas: Annotated[int, Strict(), Field(ge=1, le=1000), WHOLE] = 1
    """The fewest canary replicas at any weight above 0 (a floor for small exposures)."""


class AutoscalerRef(ApiModel):
    """The HorizontalPodAutoscaler (autoscaling/v2) that scales the Deployment, respected rather than
    fought: the operator gives the stable copy an HPA of its own with the same spec, and never sets
    the replicas an HPA manages (docs/workloads.md, Capacity)."""

    name: Name
    """The HorizontalPodAutoscaler, in the rollout's namespace; its scaleTargetRef must be the Deployment."""


class WorkloadRef(ApiModel):
    """The workload the rollout releases (docs/workloads.md). Its pod template is the desired
    revision: a new one starts a rollout by itself. The operator keeps a copy named
    <name>-stable running the last promoted revision, and runs the Deployment itself as the canary."""

    kind: Literal["Deployment"] = "Deployment"
    """The kind of workload (Deployment; StatefulSet and ReplicaSet ownership may follow)."""
    name: WorkloadName
    """The Deployment, in the rollout's namespace, that people and GitOps change."""
    progress_deadline: Duration = "10m"
    """How long a new revision (the canary) or a promotion (the stable copy) may take to become Ready before the rollout halts and pages."""
    on_abort: Literal["scaleDown", "keep"] = "scaleDown"
    """What an abort does to the canary once its traffic is 0: scaleDown to 0 replicas, or keep it running for debugging."""
    scale_with_weight: CanaryScaling | None = None
    """Size the canary to its weight: ceil(stable replicas x weight / 100), at least minReplicas, so that 1% exposure needs one pod, not a copy of production. Each setWeight step first waits until the replicas its weight needs are Ready. Unset: the canary runs stable's replicas throughout. Not with autoscalerRef (the HPA sizes the canary)."""
    autoscaler_ref: AutoscalerRef | None = None
    """The HPA that scales the Deployment, if any: the stable copy gets one of its own (<name>-stable, the same spec), and the replicas of both are the HPAs' (the canary is only woken from 0 at the start of a rollout and put back to 0 after it)."""

    @model_validator(mode="after")
    def _one_sizer(self) -> WorkloadRef:
        if self.autoscaler_ref is not None and self.scale_with_weight is not None:
            raise field_error(
                "scaleWithWeight",
                "cannot size the canary with an autoscalerRef: the HPA sizes it (drop one of the two)",
            )
        return self

    @property
    def progress_deadline_seconds(self) -> float:
        return parse_duration(self.progress_deadline)

    @property
    def stable_name(self) -> str:
        return self.name + STABLE_SUFFIX


# --- routing ------------------------------------------------------------------------------------


class GatewayApiRoute(ApiModel):
    http_route: Name
    """The HTTPRoute, in the rollout's namespace, whose backendRefs weights the operator writes."""
    rule_index: Annotated[int, Strict(), Field(ge=0, le=63), WHOLE] = 0
    """The rule of the HTTPRoute (0-based) that holds the stable and canary backendRefs."""


class IstioRoute(ApiModel):
    virtual_service: Name
    """The VirtualService, in the rollout's namespace, whose route weights the operator writes."""
    route_name: Name | None = None
    """The named http route of the VirtualService (default: its first)."""


class IngressNginxRoute(ApiModel):
    canary_ingress: Name
    """The canary Ingress whose nginx.ingress.kubernetes.io/canary-weight annotation the operator writes."""


class ReplicaRatio(ApiModel):
    stable_deployment: Name
    """The stable version's Deployment: its replicas are set to the stable share."""
    canary_deployment: Name
    """The canary version's Deployment: its replicas are set to the canary share."""
    total_replicas: Annotated[int, Strict(), Field(ge=1, le=1000), WHOLE]
    """Replicas of both Deployments together; the exposure is their ratio."""


RouterKind = Literal["gateway_api", "istio", "ingress_nginx", "replicas"]
ROUTERS: tuple[RouterKind, ...] = get_args(RouterKind)


class Routing(ApiModel):
    gateway_api: Annotated[GatewayApiRoute | None, Field(alias="gatewayAPI")] = None
    """Split traffic by the weights of a Gateway API HTTPRoute's backendRefs."""
    istio: IstioRoute | None = None
    """Split traffic by the weights of an Istio VirtualService's route."""
    ingress_nginx: IngressNginxRoute | None = None
    """Split traffic by ingress-nginx's canary-weight annotation."""
    replicas: ReplicaRatio | None = None
    """Expose the canary by replica counts of two Deployments (no traffic router; coarse)."""

    @model_validator(mode="after")
    def _one_router(self) -> Routing:
        exactly_one_of(self, ROUTERS, "routing")
        return self

    @property
    def kind(self) -> RouterKind:
        return next(name for name in ROUTERS if getattr(self, name) is not None)


# --- Prometheus ---------------------------------------------------------------------------------


class BasicAuth(ApiModel):
    secret_name: Name
    """The Secret, in the rollout's namespace, holding the username and password."""
    username_key: SecretKey = "username"
    """The Secret's key of the username."""
    password_key: SecretKey = "password"
    """The Secret's key of the password."""


class PrometheusSpec(ApiModel):
    address: Url
    """Prometheus' base URL (http:// or https://): instant queries go to /api/v1/query there."""
    timeout: QueryTimeout = "5s"
    """How long one query may take, 1ms to 60s; a slower answer is Inconclusive."""
    bearer_token_secret: SecretKeyRef | None = None
    """A bearer token for Prometheus, read from a Secret."""
    basic_auth: BasicAuth | None = None
    """Basic auth for Prometheus, read from a Secret."""

    @property
    def timeout_seconds(self) -> float:
        return parse_duration(self.timeout)

    @model_validator(mode="after")
    def _one_auth(self) -> PrometheusSpec:
        if self.bearer_token_secret is not None and self.basic_auth is not None:
            raise ValueError("prometheus takes bearerTokenSecret or basicAuth, not both")
        return self


# --- paging -------------------------------------------------------------------------------------

PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class PagerDutyTarget(ApiModel):
    routing_key_secret: SecretKeyRef
    """The Events API v2 integration's routing key, read from a Secret."""
    url: Url = PAGERDUTY_EVENTS_URL
    """The Events API v2 endpoint (default: PagerDuty's)."""
    severity: Literal["critical", "error", "warning", "info"] = "critical"
    """The severity of the incident the page opens."""


class AlertmanagerTarget(ApiModel):
    url: Url
    """Alertmanager's base URL: the alert is posted to /api/v2/alerts."""


class SlackTarget(ApiModel):
    webhook_secret: SecretKeyRef
    """A Slack incoming-webhook URL, read from a Secret."""


class WebhookTarget(ApiModel):
    url: Url | None = None
    """Where the page is POSTed as JSON."""
    url_secret: SecretKeyRef | None = None
    """The URL read from a Secret (when it carries a token)."""

    @model_validator(mode="after")
    def _one_url(self) -> WebhookTarget:
        exactly_one_of(self, ("url", "url_secret"), "webhook")
        return self


PageTargetKind = Literal["pager_duty", "alertmanager", "slack", "webhook"]
PAGE_TARGETS: tuple[PageTargetKind, ...] = get_args(PageTargetKind)


class PageTarget(ApiModel):
    pager_duty: PagerDutyTarget | None = None
    """Page through PagerDuty's Events API v2."""
    alertmanager: AlertmanagerTarget | None = None
    """Post an alert to Alertmanager."""
    slack: SlackTarget | None = None
    """Post to a Slack incoming webhook."""
    webhook: WebhookTarget | None = None
    """POST the page as JSON to a URL."""

    @model_validator(mode="after")
    def _one_target(self) -> PageTarget:
        exactly_one_of(self, PAGE_TARGETS, "a page target")
        return self

    @property
    def kind(self) -> PageTargetKind:
        return next(name for name in PAGE_TARGETS if getattr(self, name) is not None)


NoticeEvent = Literal["AwaitingApproval", "Started", "Promoted", "Aborted"]


class NotifyTarget(PageTarget):
    """Where the owner hears of a rollout without being paged: a step waiting for approval (with
    the approve command), and, opted in per target, a rollout started, promoted or aborted."""

    on: Annotated[list[NoticeEvent], Field(min_length=1, max_length=4)] = ["AwaitingApproval"]
    """The events this target hears of: AwaitingApproval (resolved once the step is left), Started, Promoted, Aborted."""


GroupName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[^\s,]+$")]
MAX_APPROVER_GROUPS = 10


class Owner(ApiModel):
    name: Annotated[str, Field(min_length=1, max_length=253)]
    """Who owns stopping exposure (a team or rota): named in every page."""
    approvers: Annotated[list[GroupName], Field(max_length=MAX_APPROVER_GROUPS)] = []
    """The groups whose members may approve, abort, retry, pause and undo this rollout, as the chart's admission policy enforces (in place of its approvers.group; a change of this list takes effect after the request that makes it). Empty: the chart's approvers.group."""
    page: Annotated[list[PageTarget], Field(min_length=1, max_length=MAX_TARGETS)]
    """Where a halt pages, every target at once."""
    escalate_after: Duration | None = None
    """Escalate a page nobody acknowledged after this long (e.g. 10m)."""
    escalate_to: Annotated[list[PageTarget], Field(max_length=MAX_TARGETS)] = []
    """Where an escalation pages."""
    notify: Annotated[list[NotifyTarget], Field(max_length=MAX_TARGETS)] = []
    """Where notices go (no page): by default a step waiting for approval; per target also started, promoted, aborted. PagerDuty gets severity info unless the target sets one."""

    @property
    def escalate_after_seconds(self) -> float | None:
        return None if self.escalate_after is None else parse_duration(self.escalate_after)

    @model_validator(mode="after")
    def _escalation_complete(self) -> Owner:
        if self.escalate_after is not None and not self.escalate_to:
            raise field_error("escalateTo", ESCALATE_TO_MISSING)
        if self.escalate_after is None and self.escalate_to:
            raise field_error("escalateAfter", ESCALATE_AFTER_MISSING)
        return self


ESCALATE_TO_MISSING = "escalateAfter and escalateTo go together: escalateAfter is set, so name whom to escalate to"
ESCALATE_AFTER_MISSING = "escalateAfter and escalateTo go together: escalateTo is set, so say when (e.g. 10m)"


# --- gates --------------------------------------------------------------------------------------


class RatioSignal(ApiModel):
    """good / total, e.g. approved authorizations / all authorizations. Higher is better."""

    good: PromQL
    """The good events, e.g. approved authorizations: PromQL, or with counts exact a counter selector."""
    total: PromQL
    """All events of the same kind, e.g. every authorization."""


class Compare(ApiModel):
    """Bounds relative to the stable version, judged per segment."""

    max_drop: ToleranceText | None = None
    """How far below stable the canary may be: 0.5pp (percentage points, ratios only), 20% (relative) or a plain number."""
    max_rise: ToleranceText | None = None
    """How far above stable the canary may be: a percent (20%) or a plain number; pp for ratios."""

    @model_validator(mode="after")
    def _something(self) -> Compare:
        if self.max_drop is None and self.max_rise is None:
            raise ValueError("compare needs maxDrop or maxRise")
        return self


# A bucket bound as Prometheus spells the le label: a decimal or exponent number (no +Inf: nothing exceeds it).
BUCKET_BOUND = r"^[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?$"


class TailSignal(ApiModel):
    """The latency tail as a rate: the share of requests slower than a bound of a histogram's
    buckets, canary against stable (a sequential test on exact counts, inside the rollout's budget)."""

    histogram: Annotated[
        PromQL,
        Field(
            description="The histogram as a bare selector without a suffix, e.g. "
            'checkout_request_duration_seconds{variant="{{variant}}"}: its _bucket and _count counters are read.'
        ),
    ]
    quantile: Annotated[
        JsonNumber | None,
        Field(
            gt=0,
            lt=1,
            description="Choose the bound as stable's quantile (default 0.99): the smallest bucket bound that "
            "at most 1 - quantile of stable's requests exceeded in the hour before the rollout's evidence began.",
        ),
    ] = None
    le: Annotated[
        str | None,
        Field(
            max_length=32,
            pattern=BUCKET_BOUND,
            description='The bound given outright, as the histogram\'s le label spells it (e.g. "0.5").',
        ),
    ] = None

    @property
    def stable_quantile(self) -> float:
        return 0.99 if self.quantile is None else self.quantile

    @model_validator(mode="after")
    def _one_bound(self) -> TailSignal:
        if self.quantile is not None and self.le is not None:
            raise field_error("le", TAIL_ONE_BOUND)
        if self.le is not None and not math.isfinite(float(self.le)):
            raise field_error("le", f"{self.le!r} is not a finite bucket bound (nothing is counted above it)")
        return self


SignalKind = Literal["ratio", "count", "quantile", "gauge", "tail"]
SIGNALS: tuple[SignalKind, ...] = get_args(SignalKind)
Method = Literal["threshold", "sequential"]
MissingData = Literal["inconclusive", "pass", "fail"]
Counts = Literal["increase", "exact"]
# A bare instant selector, what `counts: exact` reads raw samples of: a metric name and/or one
# {...} of label matchers (templates such as {{variant}} inside), nothing else.
# ASCII whitespace only, spelled out: Python's \s is Unicode and RE2's (kube-apiserver) is not.
COUNTER_SELECTOR = (
    r"^[\t\n\f\r ]*([a-zA-Z_:][a-zA-Z0-9_:]*)?[\t\n\f\r ]*"
    r"(\{([^{}]|\{\{[\t ]*[a-z]+[\t ]*\}\})*\})?[\t\n\f\r ]*$"
)
EXACT_COUNTS_NEED_SEQUENTIAL = (
    "counts exact is for method sequential (a threshold gate judges a window with increase())"
)
EXACT_COUNTS_TAKE_NO_SAMPLES = (
    "with counts exact, give the requests served as a counter selector in exposure, not a samples query"
)
EXACT_COUNTS_NEED_EXPOSURE = (
    "with counts exact, a count gate needs exposure: the requests served, as a counter selector such as "
    'checkout_requests_total{variant="{{variant}}"} (the canary share of each interval weighs its evidence)'
)
# A histogram for a tail signal: a metric name is required (the operator appends _bucket and _count).
HISTOGRAM_SELECTOR = COUNTER_SELECTOR.replace("([a-zA-Z_:][a-zA-Z0-9_:]*)?", "([a-zA-Z_:][a-zA-Z0-9_:]*)", 1)
TAIL_NEEDS_A_HISTOGRAM = (
    "tail.histogram must be a bare selector of the histogram, its name without _bucket or _count, such as "
    'checkout_request_duration_seconds{variant="{{variant}}"} (no le matcher, no comment, no sum or rate)'
)
TAIL_READS_ITS_OWN = (
    "a tail signal reads its histogram's _count as the requests served and its buckets' le: give no "
    "exposure or samples, and do not segment by le"
)
TAIL_ONE_BOUND = "tail takes quantile (the bound chosen from stable) or le, not both"
TAIL_IS_SEQUENTIAL = "a tail signal is a sequential test on exact counts: set method: sequential and counts: exact"
TAIL_RULE = (
    "a tail signal is judged against stable: give compare.maxRise as a percent (how much more often "
    "than stable the canary may exceed the bound, e.g. 50%), and no min, max or maxDrop"
)
_CEL_SELECTOR = COUNTER_SELECTOR.replace("\\", "\\\\")  # RE2 reads it alike; doubled, as a CEL string unescapes it
_CEL_HISTOGRAM = HISTOGRAM_SELECTOR.replace("\\", "\\\\")
_CEL_SPACE = "[\\\\t\\\\n\\\\f\\\\r ]"  # ASCII whitespace, as RE2 reads it after CEL unescapes
# An le matcher inside the braces, its name bare or quoted (Prometheus 3): the operator adds its own.
_LE_MATCHER = r'[{,][\t\n\f\r ]*("le"|le)[\t\n\f\r ]*[=!]'
_CEL_LE_MATCHER = _LE_MATCHER.replace("\\", "\\\\").replace("'", "\\'")
EXACT_COUNTS_NEED_SELECTORS = (
    "counts exact reads the raw samples of counters: each query must be a bare selector such as "
    'payment_authorizations_total{variant="{{variant}}", outcome="approved"} (no sum, increase or [range])'
)


class Gate(ApiModel):
    """A signal plus its rule. Queries are templates: {{variant}}, {{namespace}}, {{window}}, ..."""

    name: Name
    """The gate's name, as gate steps and verdicts name it."""
    ratio: RatioSignal | None = None
    count: PromQL | None = None
    """Bad events, e.g. duplicate charges: PromQL, or with counts exact a counter selector."""
    quantile: PromQL | None = None
    """A quantile, e.g. histogram_quantile(0.99, ...): judged as a threshold gate."""
    gauge: PromQL | None = None
    """A level, e.g. the order/payment mismatch queue: judged as a threshold gate."""
    tail: TailSignal | None = None
    samples: Annotated[
        PromQL | None,
        Field(description="Query for the number of samples behind the value (ratio: its total)."),
    ] = None
    exposure: Annotated[
        PromQL | None,
        Field(description="Requests served, for a sequential count gate; default: the traffic weights."),
    ] = None
    segment_by: Annotated[list[Annotated[str, Field(pattern=LABEL_NAME)]], Field(max_length=8)] = []
    """Labels whose values split the signal into segments (e.g. [provider, method]), each judged on its own."""
    min: JsonNumber | None = None
    """The lowest canary value allowed (a ratio as a fraction, e.g. 0.95)."""
    max: JsonNumber | None = None
    """The highest canary value allowed."""
    compare: Compare | None = None
    min_samples: Annotated[int, Strict(), Field(ge=0, le=MAX_SAMPLES), WHOLE] = 0
    """Samples before the gate can pass: a ratio's total or a count's exposure; with counts exact, the whole gate's canary requests since the evidence began."""
    method: Method = "threshold"
    """threshold: the value is checked each interval; sequential: an anytime-valid test of canary against stable."""
    alpha: Annotated[
        JsonNumber | None,
        Field(
            gt=0,
            le=0.5,
            description="This gate's own false-halt probability, outside the rollout's budget "
            "(analysis.alpha); default: none, a gate with counts exact spends the rollout's budget and "
            "any other sequential gate is tested at analysis.alpha.",
        ),
    ] = None
    critical: JsonBool = False
    """A failure aborts at once (canary weight 0) whatever onHalt says, and the gate is watched at every step."""
    window: Annotated[
        Duration | None, Field(description="Query window of a threshold gate; default: analysis.interval.")
    ] = None
    on_missing_data: MissingData = "inconclusive"
    """What no canary data means: inconclusive (the default), pass, or fail."""
    counts: Annotated[
        Counts,
        Field(
            description="How a sequential gate counts events. increase: its queries are PromQL whose "
            "increase() Prometheus extrapolates. exact: its queries are bare counter selectors; the "
            "operator reads their raw samples since the rollout started and counts every increment "
            "(a counter reset is a restart from 0), per segmentBy and analysis interval, with nothing "
            "extrapolated; the evidence is carried across steps and spends the rollout's one alpha."
        ),
    ] = "increase"

    @property
    def counter_queries(self) -> list[PromQL]:
        """The queries ``counts: exact`` reads as counters (the signal's and the exposure)."""
        queries = [self.ratio.good, self.ratio.total] if self.ratio is not None else []
        if self.tail is not None:
            queries.append(self.tail.histogram)
        return [*queries, *(q for q in (self.count, self.exposure) if q is not None)]

    @property
    def window_seconds(self) -> float | None:
        """The threshold query window in seconds; None: the analysis interval's."""
        return None if self.window is None else parse_duration(self.window)

    @model_validator(mode="after")
    def _consistent(self) -> Gate:
        exactly_one_of(self, SIGNALS, f"gate {self.name!r}")
        if self.min is None and self.max is None and self.compare is None:
            raise ValueError(f"gate {self.name!r} has no rule: set min, max or compare")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise field_error("min", f"gate {self.name!r}: min {self.min} is above max {self.max}")
        if self.method == "sequential" and self.ratio is None and self.count is None and self.tail is None:
            raise field_error(
                "method",
                f"gate {self.name!r}: method sequential compares event rates, so it needs a ratio, count or "
                "tail signal (use method threshold for quantile and gauge)",
            )
        if self.tail is not None:
            self._check_tail(self.tail)
        if self.counts == "exact":
            if self.method != "sequential":
                raise field_error("counts", f"gate {self.name!r}: {EXACT_COUNTS_NEED_SEQUENTIAL}")
            if not all(re.match(COUNTER_SELECTOR, query) for query in self.counter_queries):
                raise field_error("counts", f"gate {self.name!r}: {EXACT_COUNTS_NEED_SELECTORS}")
            if self.samples is not None:
                raise field_error("samples", f"gate {self.name!r}: {EXACT_COUNTS_TAKE_NO_SAMPLES}")
            if self.count is not None and self.exposure is None:
                raise field_error("exposure", f"gate {self.name!r}: {EXACT_COUNTS_NEED_EXPOSURE}")
        if self.compare is not None and self.ratio is None:
            for field in ("max_drop", "max_rise"):
                text = getattr(self.compare, field)
                if text is not None and parse_tolerance(text).kind == "points":
                    raise field_error(
                        f"compare.{wire_name(Compare, field)}",
                        f"gate {self.name!r}: percentage points (pp) only apply to ratio signals "
                        "(use a percent like 20% or a plain number)",
                    )
        return self

    def _check_tail(self, tail: TailSignal) -> None:
        if self.method != "sequential" or self.counts != "exact":
            raise field_error("method", f"gate {self.name!r}: {TAIL_IS_SEQUENTIAL}")
        selector = tail.histogram
        named = re.match(HISTOGRAM_SELECTOR, selector)
        bare = named is not None and not named.group(1).endswith(("_bucket", "_count", "_sum"))
        if not bare or "#" in selector or re.search(_LE_MATCHER, selector):
            raise field_error("tail.histogram", f"gate {self.name!r}: {TAIL_NEEDS_A_HISTOGRAM}")
        if self.exposure is not None or self.samples is not None or "le" in self.segment_by:
            raise field_error("tail", f"gate {self.name!r}: {TAIL_READS_ITS_OWN}")
        compare = self.compare
        if (
            self.min is not None
            or self.max is not None
            or compare is None
            or compare.max_drop is not None
            or compare.max_rise is None
            or parse_tolerance(compare.max_rise).kind != "relative"
        ):
            raise field_error("compare", f"gate {self.name!r}: {TAIL_RULE}")

    @property
    def signal_kind(self) -> SignalKind:
        return next(name for name in SIGNALS if getattr(self, name) is not None)


# --- steps --------------------------------------------------------------------------------------


class GateStep(ApiModel):
    pass_: Annotated[list[Name], Field(alias="pass", min_length=1, max_length=MAX_GATES)]
    """The gates that must pass."""
    window: Duration
    """How long they must pass without a break before the next step opens."""

    @property
    def window_seconds(self) -> float:
        return parse_duration(self.window)


MAX_APPROVERS = 5


class ApprovalStep(ApiModel):
    reason: Annotated[str, Field(max_length=512)] = ""
    """What the approver signs off, shown to on-call."""
    approvers: Annotated[int, Strict(), Field(ge=1, le=MAX_APPROVERS), WHOLE] = 1
    """How many distinct people must approve (four eyes: 2). The author of the change (who last changed the spec, or the Deployment's pod template, as admission recorded it) never counts, and one person approving twice counts once."""
    deadline: Duration | None = None
    """How long the step may wait for its approvers (counted from when it began to wait); past it the rollout halts and pages (or aborts, with onDeadline: abort). Unset: it waits for ever (owner.notify still tells the owner it waits)."""
    on_deadline: Literal["halt", "abort"] = "halt"
    """What a missed deadline does: halt (hold exposure where it is, and page) or abort (canary to 0, and page)."""

    @property
    def deadline_seconds(self) -> float | None:
        return None if self.deadline is None else parse_duration(self.deadline)


class PauseStep(ApiModel):
    duration: Duration
    """How long to hold (e.g. 30m)."""

    @property
    def duration_seconds(self) -> float:
        return parse_duration(self.duration)


StepKind = Literal["set_weight", "gate", "approval", "pause"]
STEP_KINDS: tuple[StepKind, ...] = get_args(StepKind)


class Step(ApiModel):
    set_weight: Weight | None = None
    """The canary's share of traffic, in percent: the step completes when the router confirms it."""
    gate: GateStep | None = None
    """Hold until the named gates pass for a window."""
    approval: ApprovalStep | None = None
    """Hold until on-call approves (annotation gates.checkout.dev/approve)."""
    pause: PauseStep | None = None
    """Hold for a duration."""

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        exactly_one_of(self, STEP_KINDS, "a step")
        return self

    @property
    def kind(self) -> StepKind:
        return next(name for name in STEP_KINDS if getattr(self, name) is not None)


class Analysis(ApiModel):
    interval: AnalysisInterval = "30s"
    """How often the watched gates are evaluated, 1s to 1h."""
    alpha: Annotated[
        JsonNumber,
        Field(
            gt=0,
            le=0.5,
            description="The rollout's false-halt budget: the probability that a canary no worse than "
            "stable (within tolerance) is ever halted by its sequential gates with counts exact, across "
            "all of them, their segments and steps.",
        ),
    ] = 0.01
    failure_limit: Annotated[
        int,
        Strict(),
        Field(
            ge=1,
            le=1000,
            description="Failed evaluations of threshold gates that halt, counted per gate step (a pass "
            "in between does not reset the count). A sequential gate's rejection halts at once.",
        ),
        WHOLE,
    ] = 2
    inconclusive_limit: Annotated[
        int,
        Strict(),
        Field(
            ge=1,
            le=100000,
            description="Inconclusive evaluations that halt, counted per gate step like failureLimit.",
        ),
        WHOLE,
    ] = 10

    @property
    def interval_seconds(self) -> float:
        return parse_duration(self.interval)


class CheckoutRolloutSpec(ApiModel):
    """What a release engineer declares: two versions, the router between them, the gates, the
    steps of exposure and who stops it."""

    stable: Variant
    """The version serving today."""
    canary: Variant
    """The new version, exposed step by step."""
    routing: Routing
    """How traffic is split between the two."""
    prometheus: PrometheusSpec
    """Where the gates' signals are read."""
    owner: Owner
    """Who stops exposure, and where a halt pages."""
    gates: Annotated[
        list[Gate],
        # A list-map keyed by name: kube-apiserver refuses duplicate names, server-side apply merges by name.
        Field(
            max_length=MAX_GATES,
            json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        ),
    ] = []
    """The gates the steps name, each judged per segment."""
    steps: Annotated[list[Step], Field(min_length=1, max_length=MAX_STEPS)]
    """The exposure steps, in order: exposure only grows."""
    analysis: Analysis = Analysis()
    """How often and at what risk gates are judged."""
    on_halt: Literal["hold", "abort"] = "hold"
    """What a halt does: hold keeps the weight and pages; abort sets the canary weight to 0 and pages."""
    workload_ref: WorkloadRef | None = None
    """The Deployment this rollout releases: a new revision of it starts a rollout, promotion makes it stable. Without one, the rollout only steps the weights between two Services someone else keeps running."""
    paused: bool = False
    """Hold the rollout where it is, declaratively (for GitOps): no step opens while true; gates, halts and aborts keep working. A change of this field alone does not restart the rollout; setting it back to false resumes a pause it made (not one on-call made with the pause annotation)."""

    @model_validator(mode="after")
    def _cross_field(self) -> CheckoutRolloutSpec:
        if self.stable.service == self.canary.service:
            raise field_error(
                "canary.service", f"names the same service as stable ({self.stable.service!r}); use the canary's"
            )
        if self.variant_label("stable") == self.variant_label("canary"):
            raise field_error(
                "canary.variant" if self.canary.variant is not None else "stable.variant",
                f"carries the same variant label as {'stable' if self.canary.variant is not None else 'canary'} "
                f"({self.variant_label('canary')!r}): the gates' queries could not tell the two apart",
            )
        if self.workload_ref is not None and self.routing.replicas is not None:
            raise field_error(
                "routing.replicas",
                "cannot route a workloadRef rollout: both would write the Deployments' replicas "
                "(use gatewayAPI, istio or ingressNginx with a workloadRef)",
            )
        names = [gate.name for gate in self.gates]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise field_error(f"gates[{index}].name", f"{name!r} is declared twice (gate names are unique)")
        last_weight = 0
        for index, step in enumerate(self.steps):
            if step.set_weight is not None:
                if step.set_weight < last_weight:
                    raise field_error(
                        f"steps[{index}].setWeight",
                        f"{step.set_weight} is below the earlier {last_weight}: exposure only grows "
                        f"(use {last_weight} or more; an abort is what takes it back to 0)",
                    )
                last_weight = step.set_weight
            if step.gate is not None:
                unknown = [name for name in step.gate.pass_ if name not in names]
                if unknown:
                    raise field_error(
                        f"steps[{index}].gate.pass",
                        f"names undeclared gates {unknown} (declared in spec.gates: {names or 'none'})",
                    )
        return self

    def variant_label(self, side: Literal["stable", "canary"]) -> str:
        target = self.stable if side == "stable" else self.canary
        return target.variant or side

    def gate(self, name: str) -> Gate:
        return next(gate for gate in self.gates if gate.name == name)

    def interval_seconds(self) -> float:
        return self.analysis.interval_seconds


class Cel(NamedTuple):
    """One ``x-kubernetes-validations`` rule; ``field_path`` (e.g. ``.method``) is where kube-apiserver
    reports a failure, so that its error names the field a person must edit, as lint does."""

    rule: str
    message: str
    field_path: str = ""


# CEL rules mirrored into the CRD, keyed by the model they apply to.
CEL_RULES: dict[type[ApiModel], list[Cel]] = {
    Routing: [
        Cel(cel_exactly_one(Routing, ROUTERS), "routing needs exactly one of gatewayAPI, istio, ingressNginx, replicas")
    ],
    PageTarget: [
        Cel(
            cel_exactly_one(PageTarget, PAGE_TARGETS),
            "a page target needs exactly one of pagerDuty, alertmanager, slack, webhook",
        )
    ],
    NotifyTarget: [
        Cel(
            cel_exactly_one(NotifyTarget, PAGE_TARGETS),
            "a notify target needs exactly one of pagerDuty, alertmanager, slack, webhook",
        )
    ],
    WebhookTarget: [
        Cel(cel_exactly_one(WebhookTarget, ("url", "url_secret")), "webhook needs exactly one of url, urlSecret")
    ],
    PrometheusSpec: [
        Cel(
            "!(has(self.bearerTokenSecret) && has(self.basicAuth))",
            "prometheus takes bearerTokenSecret or basicAuth, not both",
        )
    ],
    Owner: [
        Cel(
            "!has(self.escalateAfter) || (has(self.escalateTo) && size(self.escalateTo) > 0)",
            ESCALATE_TO_MISSING,
            ".escalateTo",
        ),
        Cel(
            "has(self.escalateAfter) || !has(self.escalateTo) || size(self.escalateTo) == 0",
            ESCALATE_AFTER_MISSING,
            ".escalateAfter",
        ),
    ],
    Compare: [Cel("has(self.maxDrop) || has(self.maxRise)", "compare needs maxDrop or maxRise")],
    TailSignal: [Cel("!has(self.quantile) || !has(self.le)", TAIL_ONE_BOUND, ".le")],
    Gate: [
        Cel(cel_exactly_one(Gate, SIGNALS), "a gate needs exactly one signal: ratio, count, quantile, gauge or tail"),
        Cel("has(self.min) || has(self.max) || has(self.compare)", "a gate needs a rule: min, max or compare"),
        Cel("!has(self.min) || !has(self.max) || self.min <= self.max", "min must not be above max", ".min"),
        Cel(
            "!has(self.method) || self.method != 'sequential' || has(self.ratio) || has(self.count) || has(self.tail)",
            "method sequential needs a ratio, count or tail signal (use threshold for quantile and gauge)",
            ".method",
        ),
        Cel(
            "!has(self.tail) || (has(self.method) && self.method == 'sequential' && "
            "has(self.counts) && self.counts == 'exact')",
            TAIL_IS_SEQUENTIAL,
            ".method",
        ),
        Cel(
            f"!has(self.tail) || (self.tail.histogram.matches('{_CEL_HISTOGRAM}') && "
            f"!self.tail.histogram.matches('^{_CEL_SPACE}*([a-zA-Z_:][a-zA-Z0-9_:]*)?_(bucket|count|sum)([^a-zA-Z0-9_:]|$)') && "
            "!self.tail.histogram.contains('#') && "
            f"!self.tail.histogram.matches('{_CEL_LE_MATCHER}'))",
            TAIL_NEEDS_A_HISTOGRAM,
            ".tail.histogram",
        ),
        Cel(
            "!has(self.tail) || (!has(self.min) && !has(self.max) && has(self.compare) && "
            "!has(self.compare.maxDrop) && has(self.compare.maxRise) && self.compare.maxRise.endsWith('%'))",
            TAIL_RULE,
            ".compare",
        ),
        Cel(
            "!has(self.tail) || (!has(self.exposure) && !has(self.samples) && "
            "(!has(self.segmentBy) || !self.segmentBy.exists(l, l == 'le')))",
            TAIL_READS_ITS_OWN,
            ".tail",
        ),
        Cel(
            "!has(self.counts) || self.counts != 'exact' || (has(self.method) && self.method == 'sequential')",
            EXACT_COUNTS_NEED_SEQUENTIAL,
            ".counts",
        ),
        Cel(
            "!has(self.counts) || self.counts != 'exact' || ("
            f"(!has(self.ratio) || (self.ratio.good.matches('{_CEL_SELECTOR}') && "
            f"self.ratio.total.matches('{_CEL_SELECTOR}'))) && "
            f"(!has(self.count) || self.count.matches('{_CEL_SELECTOR}')) && "
            f"(!has(self.exposure) || self.exposure.matches('{_CEL_SELECTOR}')))",
            EXACT_COUNTS_NEED_SELECTORS,
            ".counts",
        ),
        Cel(
            "!has(self.counts) || self.counts != 'exact' || !has(self.samples)",
            EXACT_COUNTS_TAKE_NO_SAMPLES,
            ".samples",
        ),
        Cel(
            "!has(self.counts) || self.counts != 'exact' || !has(self.count) || has(self.exposure)",
            EXACT_COUNTS_NEED_EXPOSURE,
            ".exposure",
        ),
        Cel(
            "has(self.ratio) || !has(self.compare) || "
            "((!has(self.compare.maxDrop) || !self.compare.maxDrop.endsWith('pp')) && "
            "(!has(self.compare.maxRise) || !self.compare.maxRise.endsWith('pp')))",
            "percentage points (pp) only apply to ratio signals",
            ".compare",
        ),
    ],
    Step: [Cel(cel_exactly_one(Step, STEP_KINDS), "a step needs exactly one of setWeight, gate, approval, pause")],
    WorkloadRef: [
        Cel(
            "!has(self.autoscalerRef) || !has(self.scaleWithWeight)",
            "cannot size the canary with an autoscalerRef: the HPA sizes it (drop one of the two)",
            ".scaleWithWeight",
        )
    ],
    CheckoutRolloutSpec: [
        Cel(
            "!has(self.workloadRef) || !has(self.routing.replicas)",
            "a workloadRef rollout cannot use the replicas router: both would write the Deployments' replicas",
            ".routing.replicas",
        ),
        Cel(
            "self.stable.service != self.canary.service",
            "stable and canary must name different services",
            ".canary.service",
        ),
        Cel(
            "(has(self.stable.variant) ? self.stable.variant : 'stable') != "
            "(has(self.canary.variant) ? self.canary.variant : 'canary')",
            "stable and canary must carry different variant labels (unset, they are 'stable' and 'canary')",
            ".canary.variant",
        ),
        Cel(
            "self.steps.filter(s, has(s.setWeight)).map(s, s.setWeight).isSorted()",
            "setWeight steps must never decrease: exposure only grows",
            ".steps",
        ),
        Cel(
            "self.steps.all(s, !has(s.gate) || "
            "s.gate.pass.all(n, has(self.gates) && self.gates.exists(g, g.name == n)))",
            "gate steps may only name gates declared in spec.gates",
            ".steps",
        ),
    ],
}
