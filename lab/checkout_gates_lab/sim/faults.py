"""When each fault of a scenario is active, and what the active ones add up to for one segment."""

from __future__ import annotations

import math
from dataclasses import dataclass

from checkout_gates_lab.sim.scenario import Fault, Scenario


@dataclass
class _Slot:
    fault: Fault
    started_at: float | None = None


class FaultSchedule:
    """Starts faults at their time or canary weight; a started fault stays on (for ``forSeconds``)."""

    def __init__(self, scenario: Scenario) -> None:
        self._slots = [_Slot(fault) for fault in scenario.faults]
        self.names = scenario.fault_names()
        self._active: tuple[Fault, ...] = ()
        self._flags: tuple[bool, ...] = (False,) * len(self._slots)

    def update(self, elapsed: float, canary_weight: float) -> None:
        """Advance to ``elapsed`` seconds with the canary at ``canary_weight`` percent."""
        for slot in self._slots:
            start = slot.fault.start
            if slot.started_at is None and (
                (start.after_seconds is not None and elapsed >= start.after_seconds)
                or (start.at_canary_weight is not None and canary_weight >= start.at_canary_weight)
            ):
                slot.started_at = elapsed
        self._flags = tuple(_on(slot, elapsed) for slot in self._slots)
        self._active = tuple(slot.fault for slot, on in zip(self._slots, self._flags, strict=True) if on)

    @property
    def active(self) -> tuple[Fault, ...]:
        return self._active

    def flags(self) -> dict[str, bool]:
        """Each fault's name and whether it is active now."""
        return dict(zip(self.names, self._flags, strict=True))

    def started_at(self) -> dict[str, float | None]:
        """Each fault's name and when (seconds since the start) it began, None if not yet."""
        return {name: slot.started_at for name, slot in zip(self.names, self._slots, strict=True)}


def _on(slot: _Slot, elapsed: float) -> bool:
    if slot.started_at is None:
        return False
    duration = slot.fault.for_seconds
    return duration is None or elapsed < slot.started_at + duration


def added(faults: tuple[Fault, ...], effect: str, variant: str, **segment: str) -> float:
    """The sum of an additive effect (a drop or a rate) over the faults that select this segment."""
    total = 0.0
    for fault in faults:
        value: float | None = getattr(fault.effect, effect)
        if value is not None and fault.selects(variant, segment):
            total += value
    return total


def multiplied(faults: tuple[Fault, ...], effect: str, variant: str, **segment: str) -> float:
    """The product of a multiplicative effect over the faults that select this segment (1 if none)."""
    factors = [
        value
        for fault in faults
        if (value := getattr(fault.effect, effect)) is not None and fault.selects(variant, segment)
    ]
    return math.prod(factors) if factors else 1.0
