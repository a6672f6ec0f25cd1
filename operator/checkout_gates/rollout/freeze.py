"""Whether a CheckoutFreeze holds a rollout now, and until when (pure: the freezes and the time
come in as data). The decision of what a freeze holds is rollout/machine.py's: no step that grows
exposure opens (a setWeight above the current weight, a promotion); gates, approvals, halts and
aborts go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from checkout_gates.api.freeze import WEEKDAYS, CheckoutFreezeSpec, RecurringWindow
from checkout_gates.api.status import FreezeBreak, FreezeState
from checkout_gates.rollout.draft import Draft


@dataclass(frozen=True)
class Freeze:
    """One CheckoutFreeze as read: its name and spec; or, for one this operator cannot read (a
    time zone it does not know), the error and the namespaces it names (then it holds them)."""

    name: str
    spec: CheckoutFreezeSpec | None
    error: str = ""
    namespaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class Active:
    name: str
    reason: str
    until: datetime


UNREADABLE_FOR = timedelta(minutes=1)
UNREADABLE_BREAK = timedelta(hours=1)


def active(freezes: Sequence[Freeze], namespace: str, now: datetime) -> list[Active]:
    """Every freeze window that holds a rollout in ``namespace`` at ``now``, longest first."""
    found: list[Active] = []
    for freeze in freezes:
        if freeze.spec is None:
            if not freeze.namespaces or namespace in freeze.namespaces:
                reason = (
                    f"CheckoutFreeze {freeze.name} cannot be read ({freeze.error}): exposure held until it is fixed"
                )
                found.append(Active(freeze.name, reason, now + UNREADABLE_FOR))
            continue
        if freeze.spec.namespaces and namespace not in freeze.spec.namespaces:
            continue
        for window in freeze.spec.windows:
            if window.start <= now < window.end:
                found.append(Active(freeze.name, freeze.spec.reason, window.end.astimezone(UTC)))
        for recurring in freeze.spec.recurring:
            end = _recurring_end(recurring, now)
            if end is not None:
                found.append(Active(freeze.name, freeze.spec.reason, end))
    return sorted(found, key=lambda a: (a.until, a.name), reverse=True)


def _recurring_end(window: RecurringWindow, now: datetime) -> datetime | None:
    """The end (in UTC) of the occurrence of ``window`` that contains ``now``, if one does (it may
    have begun the day before, for a window past midnight). A time in a DST gap or fold is read as
    the zone reads it (the first of a fold; a gap's time moved by the gap)."""
    zone = ZoneInfo(window.time_zone)
    local = now.astimezone(zone)
    start_h, start_m = (int(part) for part in window.from_.split(":"))
    end_h, end_m = (int(part) for part in window.to.split(":"))
    for back in (0, 1):
        day = (local - timedelta(days=back)).date()
        if WEEKDAYS[day.weekday()] not in window.days:
            continue
        start = datetime(day.year, day.month, day.day, start_h, start_m, tzinfo=zone).astimezone(UTC)
        end_day = day + timedelta(days=1) if (end_h, end_m) <= (start_h, start_m) else day
        end = datetime(end_day.year, end_day.month, end_day.day, end_h, end_m, tzinfo=zone).astimezone(UTC)
        if start <= now < end:
            return end
    return None


# --- what a freeze does to a rollout ---------------------------------------------------------------

HOLDS_IN = ("Progressing", "AwaitingApproval", "Paused", "Halted")


def follow(draft: Draft, freezes: Sequence[Freeze], error: str | None) -> None:
    """Keep ``status.freeze`` true to the freezes now: the longest window that holds the rollout
    and is not broken for it (recorded when one begins to hold, or none holds any more)."""
    current = draft.status.freeze
    if draft.status.phase not in HOLDS_IN:
        if current is not None or draft.status.freeze_breaks:
            draft.update(freeze=None, freeze_breaks=[])
        return
    now = draft.now
    breaks = [b for b in draft.status.freeze_breaks if b.until > now]
    if breaks != draft.status.freeze_breaks:
        draft.update(freeze_breaks=breaks)
    found = active(freezes, draft.rollout.metadata.namespace, now)
    if error:
        # Fail closed: a freeze that cannot be read may be one that holds (peak season).
        found.append(
            Active(
                "",
                f"CheckoutFreezes cannot be read ({error[:300]}): exposure held until they can",
                now + UNREADABLE_FOR,
            )
        )
    broken = {b.name for b in breaks}
    holding = next((a for a in found if a.name not in broken), None)
    if holding is None:
        if current is not None:
            draft.update(freeze=None)
            draft.record(
                "FreezeEnded", f"freeze {current.name or '(unreadable)'} no longer holds: exposure may grow again"
            )
            draft.emit("FreezeEnded", f"freeze {current.name or '(unreadable)'} no longer holds")
        return
    if current is not None and current.name == holding.name:
        # Still the same freeze: only a later end is news (an unreadable one's is refreshed when due).
        if (holding.name and current.until != holding.until) or (not holding.name and now >= current.until):
            draft.update(freeze=current.model_copy(update={"until": holding.until, "reason": holding.reason}))
        return
    draft.update(freeze=FreezeState(name=holding.name, reason=holding.reason, until=holding.until))
    what = f"freeze {holding.name}" if holding.name else "freezes unreadable"
    draft.record("Frozen", f"{what} until {holding.until.isoformat()}: {holding.reason}; exposure does not grow")
    draft.emit("Frozen", f"{what} until {holding.until.isoformat()}: exposure held at {draft.status.weights.canary}%")


def holds(draft: Draft) -> bool:
    """Whether exposure may not grow now."""
    return draft.status.freeze is not None


def message(draft: Draft) -> str:
    state = draft.status.freeze
    if state is None:
        return ""
    who = f"{state.name}: " if state.name else ""
    return f"Frozen until {state.until.isoformat()} ({who}{state.reason}); "


def break_glass(draft: Draft, actor: str, reason: str) -> str | None:
    """An approver lifts the freeze that holds this rollout, for the rest of its window (an hour
    when the freezes cannot be read); why not, or None. Another freeze that holds still holds."""
    state = draft.status.freeze
    if state is None:
        return "no freeze holds this rollout"
    until = state.until if state.name else draft.now + UNREADABLE_BREAK
    kept = [b for b in draft.status.freeze_breaks if b.name != state.name]
    draft.update(
        freeze=None,
        freeze_breaks=[*kept, FreezeBreak(name=state.name, until=until, by=actor, reason=reason)][-8:],
    )
    return None
