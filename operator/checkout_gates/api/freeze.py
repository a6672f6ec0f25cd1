"""``CheckoutFreeze``: windows in which no rollout's exposure grows (docs/change-control.md).

Cluster-scoped, written by whoever owns change control (peak season, a payment provider's
maintenance, month-end close). Fixed windows are RFC 3339 instants; recurring ones are days of
the week and a time of day in an IANA time zone (``to`` at or before ``from`` runs past midnight).
"""

from __future__ import annotations

import difflib
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import AwareDatetime, Field, field_validator, model_validator

from checkout_gates.api.base import ApiModel, field_error
from checkout_gates.api.spec import GROUP, VERSION, Cel, Name

FREEZE_KIND = "CheckoutFreeze"
FREEZE_PLURAL = "checkoutfreezes"
FREEZE_API_VERSION = f"{GROUP}/{VERSION}"

Weekday = Literal["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
WEEKDAYS: tuple[Weekday, ...] = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
TimeOfDay = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class FixedWindow(ApiModel):
    start: AwareDatetime
    """When the freeze begins (RFC 3339 with an offset, e.g. 2026-11-27T00:00:00Z)."""
    end: AwareDatetime
    """When it ends (after start)."""

    @model_validator(mode="after")
    def _ordered(self) -> FixedWindow:
        if self.end <= self.start:
            raise field_error("end", f"{self.end.isoformat()} is not after start {self.start.isoformat()}")
        return self


class RecurringWindow(ApiModel):
    days: Annotated[list[Weekday], Field(min_length=1, max_length=7)]
    """The days (in timeZone) on which the window begins: Mon, Tue, Wed, Thu, Fri, Sat, Sun."""
    from_: Annotated[TimeOfDay, Field(alias="from")]
    """The time of day it begins (HH:MM, 24 h, in timeZone)."""
    to: TimeOfDay
    """The time of day it ends; at or before from, it ends the next day."""
    time_zone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"
    """An IANA time zone, e.g. Europe/Berlin (daylight saving time included)."""

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            close = difflib.get_close_matches(value, sorted(available_timezones()), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else " (an IANA name, e.g. Europe/Berlin)"
            raise ValueError(f"{value!r} is not a known time zone{hint}") from None
        return value


class CheckoutFreezeSpec(ApiModel):
    reason: Annotated[str, Field(min_length=1, max_length=512)]
    """Why exposure must not grow (shown on every rollout it holds, e.g. "Black Friday peak")."""
    windows: Annotated[list[FixedWindow], Field(max_length=50)] = []
    """Fixed windows."""
    recurring: Annotated[list[RecurringWindow], Field(max_length=20)] = []
    """Weekly windows."""
    namespaces: Annotated[list[Name], Field(max_length=100)] = []
    """The namespaces whose rollouts it holds; empty: every namespace."""

    @model_validator(mode="after")
    def _some_window(self) -> CheckoutFreezeSpec:
        if not self.windows and not self.recurring:
            raise field_error("windows", "a freeze needs at least one window (windows or recurring)")
        return self


# CEL rules mirrored into the CheckoutFreeze CRD (api/crd.py), so that kube-apiserver refuses
# what the models do (a time zone is checked by the operator only: CEL knows none).
FREEZE_CEL_RULES: dict[type[ApiModel], list[Cel]] = {
    FixedWindow: [Cel("timestamp(self.end) > timestamp(self.start)", "end must be after start", ".end")],
    CheckoutFreezeSpec: [
        Cel(
            "(has(self.windows) && size(self.windows) > 0) || (has(self.recurring) && size(self.recurring) > 0)",
            "a freeze needs at least one window (windows or recurring)",
            ".windows",
        )
    ],
}
