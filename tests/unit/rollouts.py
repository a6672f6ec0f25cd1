"""Builders of rollouts and readings for the core's tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.api.status import CheckoutRolloutStatus
from checkout_gates.gates.observations import Sample, SignalReading
from checkout_gates.rollout.actions import ConsumeAnnotation, SetWeights
from checkout_gates.rollout.machine import Observations, decide
from checkout_gates.rollout.plan import waits_on_router

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)

GATES: list[dict[str, Any]] = [
    {
        "name": "auth-approval",
        "ratio": {"good": "good{variant='{{variant}}'}", "total": "total{variant='{{variant}}'}"},
        "segmentBy": ["provider"],
        "compare": {"maxDrop": "1pp"},
        "minSamples": 100,
    },
    {
        "name": "duplicate-charges",
        "count": "dup{variant='{{variant}}'}",
        "max": 0,
        "critical": True,
        "onMissingData": "pass",
    },
]


def rollout_doc(
    steps: list[dict[str, Any]] | None = None, *, on_halt: str = "hold", annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "gates.checkout.dev/v1alpha1",
        "kind": "CheckoutRollout",
        "metadata": {
            "name": "checkout-api",
            "namespace": "payments",
            "uid": "0b7e-uid",
            "generation": 1,
            "annotations": annotations or {},
        },
        "spec": {
            "stable": {"service": "checkout-stable"},
            "canary": {"service": "checkout-canary"},
            "routing": {"gatewayAPI": {"httpRoute": "checkout"}},
            "prometheus": {"address": "http://127.0.0.1:9090"},
            "owner": {
                "name": "payments-oncall",
                "page": [{"alertmanager": {"url": "http://127.0.0.1:9093"}}],
                "escalateAfter": "10m",
                "escalateTo": [{"webhook": {"url": "http://127.0.0.1:9999/hook"}}],
            },
            "gates": GATES,
            "steps": steps
            or [
                {"setWeight": 5},
                {"gate": {"pass": ["auth-approval", "duplicate-charges"], "window": "1m"}},
                {"approval": {}},
                {"setWeight": 25},
                {"gate": {"pass": ["auth-approval", "duplicate-charges"], "window": "1m"}},
                {"setWeight": 100},
            ],
            "analysis": {"interval": "30s", "failureLimit": 2, "inconclusiveLimit": 3},
            "onHalt": on_halt,
        },
    }


def make_rollout(**kwargs: Any) -> CheckoutRollout:
    return CheckoutRollout.model_validate(rollout_doc(**kwargs))


def with_status(rollout: CheckoutRollout, status: CheckoutRolloutStatus) -> CheckoutRollout:
    return rollout.model_copy(update={"status": status})


def with_annotations(rollout: CheckoutRollout, annotations: dict[str, str]) -> CheckoutRollout:
    return rollout.model_copy(update={"metadata": rollout.metadata.model_copy(update={"annotations": annotations})})


def ratio_sample(total: float, approval: float) -> Sample:
    good = total * approval
    return Sample(value=approval if total else None, samples=total, good=good, total=total)


def readings(
    *,
    canary_approval: float = 0.97,
    stable_approval: float = 0.97,
    canary_total: float = 1000,
    duplicates: float = 0,
    error: str | None = None,
) -> dict[str, SignalReading]:
    seg = (("provider", "adyen"),)
    return {
        "auth-approval": SignalReading(
            gate="auth-approval",
            canary={seg: ratio_sample(canary_total, canary_approval)},
            stable={seg: ratio_sample(10 * canary_total, stable_approval)},
            error=error,
            window_seconds=30,
        ),
        "duplicate-charges": SignalReading(
            gate="duplicate-charges",
            canary={(): Sample(value=duplicates)},
            stable={(): Sample(value=0)},
            error=error,
            window_seconds=30,
        ),
    }


HEALTHY = readings()


class Driver:
    """Runs decide on a clock, applying its status back like the controller does."""

    def __init__(self, rollout: CheckoutRollout, start: datetime = T0, *, router_confirms: bool = True) -> None:
        self.rollout = rollout
        self.router_confirms = router_confirms
        self.now = start
        self.actions: list[Any] = []

    def step(self, obs: dict[str, SignalReading] | None = None, advance: float = 30.0) -> CheckoutRollout:
        observations = Observations(readings=obs or {})
        # Like the controller: once the router confirms a step's weights, it passes again at once
        # (with no readings: those were for the step before), so that the step completes.
        for _ in range(len(self.rollout.spec.steps) + 2):
            decision = decide(self.rollout, observations, self.now)
            self.actions.extend(decision.actions)
            self.rollout = with_status(self.rollout, decision.status)
            consumed = {a.key for a in decision.actions if isinstance(a, ConsumeAnnotation)}
            if consumed:
                kept = {k: v for k, v in self.rollout.metadata.annotations.items() if k not in consumed}
                self.rollout = with_annotations(self.rollout, kept)
            applied = [a.weights for a in decision.actions if isinstance(a, SetWeights)]
            if not (self.router_confirms and applied):
                break
            confirmed = {"router_target": applied[-1], "router_weights": applied[-1]}
            self.rollout = with_status(self.rollout, self.status.model_copy(update=confirmed))
            if not waits_on_router(self.rollout.spec, self.status):
                break
            observations = Observations()
        self.now += timedelta(seconds=advance)
        return self.rollout

    def annotate(self, annotations: dict[str, str]) -> None:
        self.rollout = with_annotations(self.rollout, annotations)

    @property
    def status(self) -> CheckoutRolloutStatus:
        return self.rollout.status
