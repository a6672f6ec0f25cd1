"""The operator's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

EVALUATIONS = Counter(
    "checkout_gates_evaluations_total", "Gate evaluations, one per rollout and interval.", registry=REGISTRY
)
VERDICTS = Counter(
    "checkout_gates_verdicts_total", "Gate verdicts by gate and verdict.", ["gate", "verdict"], registry=REGISTRY
)
TRANSITIONS = Counter(
    "checkout_gates_transitions_total",
    "Rollout transitions by action (history entries).",
    ["action"],
    registry=REGISTRY,
)
HALTS = Counter("checkout_gates_halts_total", "Halts and aborts by the operator.", ["phase"], registry=REGISTRY)
QUERY_SECONDS = Histogram(
    "checkout_gates_query_seconds",
    "Time to read all gates of one evaluation from Prometheus.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "checkout_gates_reconcile_seconds",
    "Time of one reconcile pass.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
ERRORS = Counter("checkout_gates_errors_total", "Errors by where they happened.", ["where"], registry=REGISTRY)
CONFLICTS = Counter("checkout_gates_status_conflicts_total", "Status writes refused with 409.", registry=REGISTRY)
ROLLOUTS = Gauge("checkout_gates_rollouts", "Rollouts this operator carries.", registry=REGISTRY)
AUDIT_RECORDS = Counter(
    "checkout_gates_audit_records_total",
    "Audit records sent to the audit sink, by outcome (delivered, failed; a failed one is sent again).",
    ["outcome"],
    registry=REGISTRY,
)
AUDIT_LOST = Counter(
    "checkout_gates_audit_lost_total",
    "Audit records that left the status history before the audit sink took them (alert on any).",
    registry=REGISTRY,
)
PREEMPTED = Counter(
    "checkout_gates_passes_preempted_total",
    "Passes cut short by an on-call abort or pause, whose pass went ahead at once.",
    registry=REGISTRY,
)
