"""Notices to the owner (``owner.notify``): nobody waits in silence, nothing is a page.

A notice is opened when this decision recorded one of the events a notify target listens for
(``AwaitingApproval``, ``Started``, ``Promoted``, ``Aborted``), once per event (its dedup key names
the rollout, generation, step and epoch, like a page's). Each target gets it until it took it (at
most MAX_ATTEMPTS tries, the last error kept in status). An approval notice is resolved once the
rollout no longer waits at that step (approved, aborted, changed), so a PagerDuty incident or an
Alertmanager alert it opened closes; the other events are trigger only.
"""

from __future__ import annotations

from collections.abc import Mapping

from checkout_gates.api.spec import NoticeEvent
from checkout_gates.api.status import HISTORY_LIMIT, CheckoutRolloutStatus, PageDelivery, PageState
from checkout_gates.rollout import pages
from checkout_gates.rollout.actions import Notify
from checkout_gates.rollout.draft import Draft

PREFIX = "notify"
NOTICE_LIMIT = 8
MAX_ATTEMPTS = 5
WAITING: NoticeEvent = "AwaitingApproval"
EVENTS: frozenset[str] = frozenset({"AwaitingApproval", "Started", "Promoted", "Aborted"})


def follow(draft: Draft, before: CheckoutRolloutStatus, details: Mapping[str, str]) -> None:
    """Open a notice for each listened-for event this decision recorded, resolve an approval
    notice the rollout no longer waits on, and state what is still to be sent."""
    recorded = min(draft.status.epoch - before.epoch, HISTORY_LIMIT)
    for entry in draft.status.history[len(draft.status.history) - recorded :] if recorded > 0 else []:
        if entry.action in EVENTS:
            _open(draft, entry.action, entry.reason, entry.step)  # type: ignore[arg-type]
    if draft.status.phase != WAITING:
        _resolve_waiting(draft)
    draft.actions.extend(_actions(draft.status.notices, details))


def _open(draft: Draft, event: NoticeEvent, reason: str, step: int) -> None:
    targets = [index for index, target in enumerate(draft.spec.owner.notify) if event in target.on]
    if not targets:
        return
    slug = f"notice-{event.lower()}"
    key = pages.dedup_key(draft.rollout, step, slug, draft.status.epoch)
    if any(notice.dedup_key == key for notice in draft.status.notices):
        return
    if event == WAITING:
        _resolve_waiting(draft)  # one wait follows another (back-to-back approval steps, a restart)
    meta = draft.rollout.metadata
    notice = PageState(
        dedup_key=key,
        reason=event,
        summary=f"{meta.namespace}/{meta.name}: {_headline(event, step)}: {reason}"[:1024],
        triggered_at=draft.now,
        deliveries=[
            PageDelivery(target=pages.target_name(PREFIX, index, draft.spec.owner.notify[index].kind))
            for index in targets
        ],
    )
    _keep(draft, notice)


def _keep(draft: Draft, notice: PageState) -> None:
    """Add ``notice``; when full, drop the oldest with nothing left to send (an open approval
    notice is kept until its resolution went out)."""
    kept = [*draft.status.notices, notice]
    while len(kept) > NOTICE_LIMIT:
        done = next((n for n in kept if not _actions([n], {})), kept[0])
        kept.remove(done)
    draft.update(notices=kept)


def override(draft: Draft, action: str, what: str) -> None:
    """An emergency override of the gates (skip-step, promote-full) told to every page target
    at severity warning: trigger only (no halt to resolve), one per override."""
    owner = draft.spec.owner
    meta = draft.rollout.metadata
    notice = PageState(
        dedup_key=pages.dedup_key(draft.rollout, draft.status.current_step, action.lower(), draft.status.epoch),
        reason=action,
        summary=f"{meta.namespace}/{meta.name}: {what}"[:1024],
        triggered_at=draft.now,
        deliveries=[
            PageDelivery(target=pages.target_name(pages.PRIMARY_PREFIX, index, target.kind))
            for index, target in enumerate(owner.page)
        ],
    )
    _keep(draft, notice)


OVERRIDES = frozenset({"StepSkipped", "PromotedFull", "FreezeBroken"})


def _headline(event: NoticeEvent, step: int) -> str:
    return {
        "AwaitingApproval": f"step {step} waits for approval",
        "Started": "rollout started",
        "Promoted": "promoted",
        "Aborted": "aborted",
    }[event]


def _resolve_waiting(draft: Draft) -> None:
    notices = draft.status.notices
    if not any(n.reason == WAITING and n.resolved_at is None for n in notices):
        return
    draft.update(
        notices=[
            pages.resolve(notice, draft.now) if notice.reason == WAITING else notice for notice in draft.status.notices
        ]
    )


def _actions(notices: list[PageState], details: Mapping[str, str]) -> list[Notify]:
    actions: list[Notify] = []
    for notice in notices:
        # An override is retried like a page, without a limit: it must reach someone.
        limit = 10**9 if notice.reason in OVERRIDES else MAX_ATTEMPTS
        if notice.resolved_at is None:
            due = [d for d in notice.deliveries if d.delivered_at is None and d.attempts < limit]
        else:
            # Resolved: only targets that got the trigger hear of the resolution.
            due = [
                d
                for d in notice.deliveries
                if d.delivered_at is not None and d.resolved_at is None and d.attempts < 2 * MAX_ATTEMPTS
            ]
        for prefix in (PREFIX, pages.PRIMARY_PREFIX):
            targets = tuple(pages.parse_target_name(d.target)[1] for d in due if d.target.startswith(f"{prefix}["))
            if not targets:
                continue
            actions.append(
                Notify(
                    dedup_key=notice.dedup_key,
                    summary=notice.summary if notice.resolved_at is None else f"resolved: {notice.summary}",
                    details={**details, "event": notice.reason} if notice.resolved_at is None else {},
                    targets=targets,
                    triggered_at=notice.triggered_at,
                    resolved=notice.resolved_at is not None,
                    severity="warning" if notice.reason in OVERRIDES else "info",
                    prefix=prefix,
                )
            )
    return actions
