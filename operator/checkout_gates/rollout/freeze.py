"""Whether a CheckoutFreeze holds a rollout now, and until when (pure: the freezes and the time
come in as data). The decision of what a freeze holds is rollout/machine.py's: no step that grows
exposure opens (a setWeight above the current weight, a promotion); gates, approvals, halts and
aborts go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from checkout_gates.api.freeze import WEEKDAYS, CheckoutFreezeSpec, RecurringWindow
from checkout_gates.api.status import FreezeState
from checkout_gates.rollout.draft import Draft


@dataclass(frozen=True)
class Freeze:
    """One CheckoutFreeze as read: its name and spec."""

    name: str
    spec: CheckoutFreezeSpec


@dataclass(frozen=True)
class Active:
    name: str
    reason: str
    until: datetime


def active(freezes: Sequence[Freeze], namespace: str, now: datetime) -> Active | None:
    """The freeze that holds a rollout in ``namespace`` at ``now`` (the one lasting longest), if any."""
    found: list[Active] = []
    for freeze in freezes:
        if freeze.spec.namespaces and namespace not in freeze.spec.namespaces:
            continue
        for window in freeze.spec.windows:
            if window.start <= now < window.end:
                found.append(Active(freeze.name, freeze.spec.reason, window.end))
        for recurring in freeze.spec.recurring:
            end = _recurring_end(recurring, now)
            if end is not None:
                found.append(Active(freeze.name, freeze.spec.reason, end))
    return max(found, key=lambda a: (a.until, a.name), default=None)


def _recurring_end(window: RecurringWindow, now: datetime) -> datetime | None:
    """The end of the occurrence of ``window`` that contains ``now``, if one does (it may have
    begun the day before, for a window past midnight)."""
    zone = ZoneInfo(window.time_zone)
    local = now.astimezone(zone)
    start_h, start_m = (int(part) for part in window.from_.split(":"))
    end_h, end_m = (int(part) for part in window.to.split(":"))
    for back in (0, 1):
        day = (local - timedelta(days=back)).date()
        if WEEKDAYS[day.weekday()] not in window.days:
            continue
        start = datetime(day.year, day.month, day.day, start_h, start_m, tzinfo=zone)
        end = datetime(day.year, day.month, day.day, end_h, end_m, tzinfo=zone)
        if end <= start:
            end += timedelta(days=1)
        if start <= now < end:
            return end
    return None


# --- what a freeze does to a rollout ---------------------------------------------------------------

HOLDS_IN = ("Progressing", "AwaitingApproval", "Paused", "Halted")
UNREADABLE_FOR = timedelta(minutes=1)


def follow(draft: Draft, freezes: Sequence[Freeze], error: str | None) -> None:
    """Keep ``status.freeze`` true to the freezes now (recorded when one begins or ends)."""
    current = draft.status.freeze
    if draft.status.phase not in HOLDS_IN:
        if current is not None:
            draft.update(freeze=None)
        return
    found = active(freezes, draft.rollout.metadata.namespace, draft.now)
    if found is None and error:
        # Fail closed: a freeze that cannot be read may be one that holds (peak season).
        found = Active(
            "",
            f"CheckoutFreezes cannot be read ({error[:300]}): exposure held until they can",
            draft.now + UNREADABLE_FOR,
        )
    if found is None:
        if current is not None:
            draft.update(freeze=None)
            draft.record("FreezeEnded", f"freeze {current.name or '(unreadable)'} is over: exposure may grow again")
            draft.emit("FreezeEnded", f"freeze {current.name or '(unreadable)'} is over")
        return
    if current is not None and current.name == found.name and (current.until == found.until or not found.name):
        if not found.name and current.until != found.until:
            draft.update(freeze=current.model_copy(update={"until": found.until, "reason": found.reason}))
        return
    broken = current is not None and current.broken_by and current.name == found.name
    draft.update(
        freeze=FreezeState(
            name=found.name,
            reason=found.reason,
            until=found.until,
            broken_by=current.broken_by if broken and current is not None else "",
            broken_reason=current.broken_reason if broken and current is not None else "",
        )
    )
    if current is None or current.name != found.name:
        what = f"freeze {found.name}" if found.name else "freezes unreadable"
        draft.record("Frozen", f"{what} until {found.until.isoformat()}: {found.reason}; exposure does not grow")
        draft.emit("Frozen", f"{what} until {found.until.isoformat()}: exposure held at {draft.status.weights.canary}%")


def holds(draft: Draft) -> bool:
    """Whether exposure may not grow now."""
    state = draft.status.freeze
    return state is not None and not state.broken_by


def message(draft: Draft) -> str:
    state = draft.status.freeze
    if state is None or state.broken_by:
        return ""
    who = f"{state.name}: " if state.name else ""
    return f"Frozen until {state.until.isoformat()} ({who}{state.reason}); "


def break_glass(draft: Draft, actor: str, reason: str) -> str | None:
    """An approver lifts the freeze for this rollout until the window ends; why not, or None."""
    state = draft.status.freeze
    if state is None:
        return "no freeze holds this rollout"
    if state.broken_by:
        return f"{state.broken_by} broke the freeze for this window already"
    if not state.name:
        return "the freezes cannot be read: there is no window to break, only an error to fix"
    draft.update(freeze=state.model_copy(update={"broken_by": actor, "broken_reason": reason}))
    return None
