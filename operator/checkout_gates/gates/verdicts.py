"""Verdicts: what the core concludes about a gate, with the numbers and a reason a person can read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

VerdictName = Literal["Pass", "Fail", "Inconclusive"]

# The worst verdict decides a gate; Inconclusive is worse than Pass because it never counts as one.
SEVERITY: dict[VerdictName, int] = {"Pass": 0, "Inconclusive": 1, "Fail": 2}


@dataclass(frozen=True)
class SegmentResult:
    segment: str
    verdict: VerdictName
    reason: str
    value: float | None = None
    baseline: float | None = None
    samples: float | None = None
    # How far past its limit a failing segment is (0 when it passes); ranks failing segments.
    severity: float = 0.0


@dataclass(frozen=True)
class GateVerdict:
    """One gate at one evaluation. The fields other than ``segments`` describe the deciding segment."""

    gate: str
    verdict: VerdictName
    reason: str
    segment: str = ""
    value: float | None = None
    baseline: float | None = None
    samples: float | None = None
    critical: bool = False
    segments: tuple[SegmentResult, ...] = ()

    @property
    def passed(self) -> bool:
        return self.verdict == "Pass"
