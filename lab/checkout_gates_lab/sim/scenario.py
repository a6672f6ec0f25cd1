"""Scenario files: the faults injected into the simulated checkout, validated with pydantic.

A scenario is YAML (field names in camelCase)::

    name: refund-regression
    description: refunds through adyen fail more often on the canary
    baseline: {duplicateChargeRate: 0}   # optional overrides of the healthy rates
    faults:
      - name: adyen-refunds
        variant: canary                   # canary | stable | both
        provider: adyen                   # selectors: provider, method, path, kind (a value or a list)
        start: {atCanaryWeight: 5}        # or {afterSeconds: 120}; left out: from the start
        forSeconds: 600                   # optional: the fault ends after this long
        effect: {refundFailureRate: 0.05} # one or more effects

Rates and drops are absolute fractions (``authApprovalDrop: 0.03`` takes 3 points off the
approval rate). A selector must apply to every effect of its fault, so a selector that would
select nothing is an error, never a silent no-op. Errors name the field: ``faults[0].effect``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
CheckoutPath = Literal["standard", "express", "guest", "saved_card", "gift_card"]
Provider = Literal["adyen", "stripe", "braintree"]
Method = Literal["card", "wallet", "bank_transfer"]
Kind = Literal["full", "partial"]
SELECTORS = ("provider", "method", "path", "kind")

# Which selectors each effect understands: the labels of the segments it acts on.
APPLIES_TO: dict[str, tuple[str, ...]] = {
    "completion_drop": ("path",),
    "duplicate_order_rate": ("path",),
    "mismatch_rate": ("path",),
    "latency_multiplier": ("path",),
    "auth_approval_drop": ("provider", "method"),
    "silent_decline_rate": ("provider", "method"),
    "capture_failure_rate": ("provider", "method"),
    "duplicate_charge_rate": ("provider", "method"),
    "refund_failure_rate": ("provider", "kind"),
    "mismatch_growth_per_minute": (),
}


class ScenarioModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


def _as_tuple(value: Any) -> Any:
    return (value,) if isinstance(value, str) else value


def _wire(field: str) -> str:
    return to_camel(field)


class Baseline(ScenarioModel):
    """The healthy rates that are not per segment (those live in ``catalog.py``)."""

    duplicate_charge_rate: Probability = 1e-5  # of captured payments
    duplicate_order_rate: Probability = 1e-5  # of completed checkouts
    mismatch_rate: Probability = 5e-5  # of checkout attempts; reconciled automatically
    reconcile_seconds: float = Field(120.0, gt=0.0)  # mean time to reconcile one automatically
    manual_reconcile_per_minute: float = Field(0.5, ge=0.0)  # manual reconciliation capacity, per variant
    refunds_per_checkout: float = Field(0.05, ge=0.0, le=1.0)  # refund requests per checkout attempt


class Start(ScenarioModel):
    after_seconds: float | None = Field(None, ge=0.0)
    at_canary_weight: float | None = Field(None, gt=0.0, le=100.0)

    @model_validator(mode="after")
    def _one(self) -> Start:
        chosen = [name for name in ("after_seconds", "at_canary_weight") if getattr(self, name) is not None]
        if len(chosen) != 1:
            raise ValueError("needs exactly one of afterSeconds, atCanaryWeight")
        return self


class Effect(ScenarioModel):
    completion_drop: Probability | None = None
    auth_approval_drop: Probability | None = None
    silent_decline_rate: Probability | None = None
    capture_failure_rate: Probability | None = None
    refund_failure_rate: Probability | None = None
    duplicate_charge_rate: Probability | None = None
    duplicate_order_rate: Probability | None = None
    mismatch_rate: Probability | None = None
    mismatch_growth_per_minute: float | None = Field(None, ge=0.0)
    latency_multiplier: float | None = Field(None, gt=0.0, le=100.0)

    @model_validator(mode="after")
    def _some(self) -> Effect:
        if not self.chosen():
            raise ValueError(f"needs at least one of {', '.join(_wire(name) for name in APPLIES_TO)}")
        return self

    def chosen(self) -> tuple[str, ...]:
        """The (python) names of the effects set."""
        return tuple(name for name in APPLIES_TO if getattr(self, name) is not None)


class Fault(ScenarioModel):
    # `effect` comes first: the selectors' validator checks them against it.
    effect: Effect
    name: str | None = Field(None, min_length=1)
    variant: Literal["canary", "stable", "both"] = "canary"
    start: Start = Start(after_seconds=0.0)
    for_seconds: float | None = Field(None, gt=0.0)
    provider: Annotated[tuple[Provider, ...] | None, BeforeValidator(_as_tuple)] = None
    method: Annotated[tuple[Method, ...] | None, BeforeValidator(_as_tuple)] = None
    path: Annotated[tuple[CheckoutPath, ...] | None, BeforeValidator(_as_tuple)] = None
    kind: Annotated[tuple[Kind, ...] | None, BeforeValidator(_as_tuple)] = None

    @field_validator(*SELECTORS)
    @classmethod
    def _applies(cls, value: tuple[str, ...] | None, info: ValidationInfo) -> tuple[str, ...] | None:
        effect = info.data.get("effect")
        if value is None:
            return value
        if not value:
            raise ValueError("needs at least one value (or leave the selector out)")
        if not isinstance(effect, Effect):
            return value  # the effect is invalid and reported on its own
        selector = info.field_name
        wrong = [name for name in effect.chosen() if selector not in APPLIES_TO[name]]
        if wrong:
            details = "; ".join(
                f"{_wire(name)} selects by {', '.join(APPLIES_TO[name]) or 'nothing (variant only)'}" for name in wrong
            )
            raise ValueError(f"selector {selector} does not apply to this effect ({details})")
        return value

    def selects(self, variant: str, segment: dict[str, str]) -> bool:
        """Whether this fault acts on the variant and the segment (labels the segment lacks match)."""
        if self.variant not in (variant, "both"):
            return False
        for selector in SELECTORS:
            chosen: tuple[str, ...] | None = getattr(self, selector)
            if chosen is not None and selector in segment and segment[selector] not in chosen:
                return False
        return True


class Scenario(ScenarioModel):
    name: str = "unnamed"
    description: str = ""
    baseline: Baseline = Baseline()
    faults: tuple[Fault, ...] = ()

    def fault_names(self) -> tuple[str, ...]:
        """Each fault's name, ``fault-N`` (1-based) for one without."""
        return tuple(fault.name or f"fault-{index}" for index, fault in enumerate(self.faults, start=1))


class ScenarioError(ValueError):
    """A scenario that cannot be read or is invalid; ``problems`` name the fields."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def parse_scenario(data: Any, source: str = "scenario") -> Scenario:
    """A Scenario from parsed YAML; raises ScenarioError naming each bad field."""
    if data is None:
        data = {}
    try:
        return Scenario.model_validate(data)
    except ValidationError as error:
        problems = []
        for item in error.errors():
            where = _location(tuple(item["loc"]))
            message = item["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {message}" if where else message)
        raise ScenarioError(source, problems) from None


def load_scenario(path: Path | str) -> Scenario:
    """Read and validate a scenario file; its name defaults to the file's stem."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(str(path), [f"cannot read: {error}"]) from None
    except yaml.YAMLError as error:
        raise ScenarioError(str(path), [f"not valid YAML: {error}".replace("\n", " ")]) from None
    if isinstance(data, dict) and "name" not in data:
        data = {**data, "name": path.stem}
    return parse_scenario(data, str(path))
