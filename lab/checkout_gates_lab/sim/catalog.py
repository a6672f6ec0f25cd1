"""The simulated shop: its segments, their traffic mix and base rates, and the metric names.

The metric names and labels are a contract: the example rollouts in ``examples/gates/`` query
them. The rates are those of a healthy checkout; faults (``scenario.py``) move them.
"""

from __future__ import annotations

from dataclasses import dataclass

VARIANTS = ("stable", "canary")
PATHS = ("standard", "express", "guest", "saved_card", "gift_card")
PROVIDERS = ("adyen", "stripe", "braintree")
METHODS = ("card", "wallet", "bank_transfer")
KINDS = ("full", "partial")
AUTH_OUTCOMES = ("approved", "declined", "error")
CAPTURE_OUTCOMES = ("succeeded", "failed")
REFUND_OUTCOMES = ("succeeded", "failed")


@dataclass(frozen=True)
class PathProfile:
    name: str
    share: float  # of checkout attempts
    completion: float  # attempts that complete
    latency_factor: float  # times the base latency


@dataclass(frozen=True)
class PaymentProfile:
    provider: str
    method: str
    share: float  # of authorizations
    approval: float  # authorizations approved


@dataclass(frozen=True)
class RefundProfile:
    kind: str
    share: float  # of refunds
    success: float


PATH_PROFILES = (
    PathProfile("standard", 0.55, 0.975, 1.0),
    PathProfile("express", 0.15, 0.965, 0.8),
    PathProfile("guest", 0.14, 0.962, 1.1),
    PathProfile("saved_card", 0.11, 0.98, 0.9),
    PathProfile("gift_card", 0.05, 0.955, 1.15),
)

PAYMENT_PROFILES = (
    PaymentProfile("adyen", "card", 0.22, 0.965),
    PaymentProfile("adyen", "wallet", 0.08, 0.972),
    PaymentProfile("adyen", "bank_transfer", 0.04, 0.95),
    PaymentProfile("stripe", "card", 0.24, 0.96),
    PaymentProfile("stripe", "wallet", 0.10, 0.97),
    PaymentProfile("stripe", "bank_transfer", 0.02, 0.952),
    PaymentProfile("braintree", "card", 0.20, 0.955),
    PaymentProfile("braintree", "wallet", 0.10, 0.967),
)

REFUND_PROFILES = (
    RefundProfile("full", 0.7, 0.991),
    RefundProfile("partial", 0.3, 0.988),
)

AUTH_ERROR = 0.004  # of all authorizations; the rest of the non-approved are declines
CAPTURE_SUCCESS = 0.998

# Checkout latency: log-normal around the median, times the path's factor (p99 about 0.9 s).
LATENCY_MEDIAN_SECONDS = 0.32
LATENCY_SIGMA = 0.42
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0)


def provider_shares() -> dict[str, float]:
    """Each provider's share of payments, summed over its methods."""
    shares = dict.fromkeys(PROVIDERS, 0.0)
    for profile in PAYMENT_PROFILES:
        shares[profile.provider] += profile.share
    return shares


@dataclass(frozen=True)
class MetricSpec:
    name: str
    labels: tuple[str, ...]
    help: str


ATTEMPTS = MetricSpec("checkout_attempts_total", ("variant", "path"), "Checkout attempts.")
COMPLETIONS = MetricSpec("checkout_completions_total", ("variant", "path"), "Checkouts that completed.")
AUTHORIZATIONS = MetricSpec(
    "payment_authorizations_total", ("variant", "provider", "method", "outcome"), "Payment authorizations."
)
CAPTURES = MetricSpec("payment_captures_total", ("variant", "provider", "method", "outcome"), "Payment captures.")
REFUNDS = MetricSpec("payment_refunds_total", ("variant", "provider", "kind", "outcome"), "Refunds.")
DUPLICATE_CHARGES = MetricSpec(
    "payment_duplicate_charges_total", ("variant", "provider"), "Customers charged twice for one order."
)
DUPLICATE_ORDERS = MetricSpec("checkout_duplicate_orders_total", ("variant",), "Orders created twice.")
COUNTERS = (ATTEMPTS, COMPLETIONS, AUTHORIZATIONS, CAPTURES, REFUNDS, DUPLICATE_CHARGES, DUPLICATE_ORDERS)

MISMATCH_QUEUE = MetricSpec(
    "order_payment_mismatch_queue", ("variant",), "Orders whose payment state disagrees, not yet reconciled."
)
LATENCY = MetricSpec("checkout_request_duration_seconds", ("variant",), "Checkout request duration.")
CANARY_SHARE = MetricSpec("sim_canary_share", (), "Share of simulated traffic sent to the canary (0 to 1).")
FAULT_ACTIVE = MetricSpec("sim_fault_active", ("fault",), "1 while the scenario's fault is active.")


def series(spec: MetricSpec) -> tuple[tuple[str, ...], ...]:
    """Every label-value tuple the simulator emits for a metric, so all series exist from the start."""
    per_variant: tuple[tuple[str, ...], ...]
    if spec in (ATTEMPTS, COMPLETIONS):
        per_variant = tuple((path,) for path in PATHS)
    elif spec == AUTHORIZATIONS:
        per_variant = tuple((p.provider, p.method, o) for p in PAYMENT_PROFILES for o in AUTH_OUTCOMES)
    elif spec == CAPTURES:
        per_variant = tuple((p.provider, p.method, o) for p in PAYMENT_PROFILES for o in CAPTURE_OUTCOMES)
    elif spec == REFUNDS:
        per_variant = tuple((pr, k.kind, o) for pr in PROVIDERS for k in REFUND_PROFILES for o in REFUND_OUTCOMES)
    elif spec == DUPLICATE_CHARGES:
        per_variant = tuple((provider,) for provider in PROVIDERS)
    elif spec in (DUPLICATE_ORDERS, MISMATCH_QUEUE, LATENCY):
        per_variant = ((),)
    else:
        raise ValueError(f"{spec.name} is not a per-variant metric")
    return tuple((variant, *rest) for variant in VARIANTS for rest in per_variant)
