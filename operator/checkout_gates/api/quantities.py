"""Kubernetes-style durations (``30s``, ``10m``, ``1h30m``) and tolerances (``0.5pp``, ``20%``, ``0.2``).

Both stay strings in the spec, exactly as the release engineer wrote them, so that
``kubectl get -o yaml`` shows what was applied; the core converts them when it needs numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

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


_NS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_INT64_MAX = 2**63 - 1
MAX_DURATION = "8760h"
"""The longest duration a spec may state (365 days): kube-apiserver checks the same with CEL."""


def go_duration_nanoseconds(text: str) -> int | None:
    """Nanoseconds as Go's ``time.ParseDuration`` (and so CEL's ``duration()``) computes them, for a
    string of :data:`DURATION_PATTERN`; None where Go overflows (beyond about 292 years).

    Go keeps whole nanoseconds: each fraction is scaled with float64 arithmetic and truncated, so
    ``8760.0000000001h`` is exactly ``8760h`` to kube-apiserver; this mirrors that, digit for
    digit, so lint and kube-apiserver agree at the bounds too.
    """
    total = 0
    for whole, fraction, unit in re.findall(r"([0-9]+)(?:\.([0-9]+))?(ms|s|m|h)", text):
        value = int(whole)
        if value > _INT64_MAX:
            return None
        digits, scale = 0, 1.0
        for digit in fraction:  # Go's leadingFraction: digits past int64 precision are dropped
            if digits > _INT64_MAX // 10:
                break
            candidate = digits * 10 + int(digit)
            if candidate > 2**63:
                break
            digits, scale = candidate, scale * 10
        per_unit = _NS[unit]
        if value > 2**63 // per_unit:
            return None
        value *= per_unit
        if digits > 0:
            value += int(float(digits) * (float(per_unit) / scale))
            if value > 2**63:
                return None
        total += value
        if total > 2**63:
            return None
    return total if total <= _INT64_MAX else None


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
    nanoseconds = go_duration_nanoseconds(text)
    if nanoseconds is None or nanoseconds > _NS["h"] * int(MAX_DURATION.removesuffix("h")):
        raise ValueError(f"{text!r} is longer than {MAX_DURATION} (365 days), the longest a rollout may wait")
    return text


def _duration_schema(between: tuple[str, str] | None = None) -> dict[str, Any]:
    # Given the pattern, a duration is longer than zero when one of its digits is not 0. CEL's
    # duration() is Go's time.ParseDuration, which fails (and so refuses) beyond ~292 years.
    rules: list[dict[str, str]] = [
        {"rule": "self.matches('[1-9]')", "message": "must be longer than zero"},
        {
            "rule": f"duration(self) <= duration('{MAX_DURATION}')",
            "message": f"must be at most {MAX_DURATION} (365 days)",
        },
    ]
    if between is not None:
        shortest, longest = between
        rules.append(
            {
                "rule": f"duration(self) >= duration('{shortest}') && duration(self) <= duration('{longest}')",
                "message": f"must be between {shortest} and {longest}",
            }
        )
    return {"x-kubernetes-validations": rules}


def _between(shortest: str, longest: str) -> Callable[[str], str]:
    """A validator for durations whose extremes harm others (a busy loop, a slot held for an hour)."""
    low, high = go_duration_nanoseconds(shortest), go_duration_nanoseconds(longest)
    assert low is not None and high is not None and low <= high, (shortest, longest)

    def check(text: str) -> str:
        nanoseconds = go_duration_nanoseconds(text)
        if nanoseconds is not None and not low <= nanoseconds <= high:
            raise ValueError(f"{text!r} must be between {shortest} and {longest}")
        return text

    return check


# The pattern, the length bound and the CEL rules go into the CRD, so that kube-apiserver refuses
# what lint refuses (an AfterValidator alone leaves no trace in the JSON schema).
Duration = Annotated[
    str,
    Field(max_length=DURATION_MAX_LENGTH, pattern=DURATION_PATTERN, json_schema_extra=_duration_schema()),
    AfterValidator(_check_duration),
]
INTERVAL_BOUNDS = ("1s", "1h")
QUERY_TIMEOUT_BOUNDS = ("1ms", "60s")
# How often a rollout is evaluated: below a second is a busy loop on the operator and Prometheus.
AnalysisInterval = Annotated[
    str,
    Field(
        max_length=DURATION_MAX_LENGTH, pattern=DURATION_PATTERN, json_schema_extra=_duration_schema(INTERVAL_BOUNDS)
    ),
    AfterValidator(_check_duration),
    AfterValidator(_between(*INTERVAL_BOUNDS)),
]
# How long one query may take: past a minute a hanging Prometheus holds the rollout's pass for that long.
QueryTimeout = Annotated[
    str,
    Field(
        max_length=DURATION_MAX_LENGTH,
        pattern=DURATION_PATTERN,
        json_schema_extra=_duration_schema(QUERY_TIMEOUT_BOUNDS),
    ),
    AfterValidator(_check_duration),
    AfterValidator(_between(*QUERY_TIMEOUT_BOUNDS)),
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
