"""Kubernetes-style durations (``30s``, ``10m``, ``1h30m``) and tolerances (``0.5pp``, ``20%``, ``0.2``).

Both stay strings in the spec, exactly as the release engineer wrote them, so that
``kubectl get -o yaml`` shows what was applied; the core converts them when it needs numbers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
DURATION_MAX_LENGTH = 32
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}

TOLERANCE_PATTERN = r"^[0-9]+(\.[0-9]+)?(pp|%)?$"
TOLERANCE_MAX_LENGTH = 32


def parse_duration(text: str) -> float:
    """Seconds in a Go/Kubernetes duration string; raises ValueError with the accepted form."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration (use a number and a unit: 500ms, 30s, 10m, 1h30m)")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text))


def format_duration(seconds: float) -> str:
    """The shortest duration string for whole seconds, e.g. ``90`` -> ``1m30s`` (PromQL accepts it)."""
    total = max(1, math.ceil(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts)


def _check_duration(text: str) -> str:
    if parse_duration(text) <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return text


# The pattern, the length bound and the CEL rule go into the CRD, so that kube-apiserver refuses
# what lint refuses (an AfterValidator alone leaves no trace in the JSON schema).
Duration = Annotated[
    str,
    Field(
        max_length=DURATION_MAX_LENGTH,
        pattern=DURATION_PATTERN,
        # Given the pattern, a duration is longer than zero when one of its digits is not 0.
        json_schema_extra={
            "x-kubernetes-validations": [{"rule": "self.matches('[1-9]')", "message": "must be longer than zero"}]
        },
    ),
    AfterValidator(_check_duration),
]


@dataclass(frozen=True)
class Tolerance:
    """How far the canary may fall behind stable: percentage points, percent of stable, or absolute."""

    kind: Literal["points", "relative", "absolute"]
    value: float

    def limit_below(self, baseline: float) -> float:
        """The lowest canary value allowed when higher is better."""
        return baseline - self._allowance(baseline)

    def limit_above(self, baseline: float) -> float:
        """The highest canary value allowed when lower is better."""
        return baseline + self._allowance(baseline)

    def _allowance(self, baseline: float) -> float:
        if self.kind == "points":
            return self.value / 100.0
        if self.kind == "relative":
            return abs(baseline) * self.value / 100.0
        return self.value

    def __str__(self) -> str:
        """The text :func:`parse_tolerance` reads back: plain decimals, never an exponent."""
        suffix = {"points": "pp", "relative": "%", "absolute": ""}[self.kind]
        text = format(Decimal(repr(self.value)), "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return f"{text}{suffix}"


def parse_tolerance(text: str) -> Tolerance:
    if not re.fullmatch(TOLERANCE_PATTERN, text):
        raise ValueError(
            f"{text!r} is not a tolerance (use percentage points like 0.5pp, percent of stable like 20%, "
            "or a plain number in the signal's unit like 0.2)"
        )
    if text.endswith("pp"):
        return Tolerance("points", float(text[:-2]))
    if text.endswith("%"):
        return Tolerance("relative", float(text[:-1]))
    return Tolerance("absolute", float(text))


def _check_tolerance(text: str) -> str:
    parse_tolerance(text)
    return text


ToleranceText = Annotated[
    str, Field(max_length=TOLERANCE_MAX_LENGTH, pattern=TOLERANCE_PATTERN), AfterValidator(_check_tolerance)
]
