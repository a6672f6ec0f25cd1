"""The on-call interface: ``gates.checkout.dev/{approve,abort,retry,pause,undo}=<actor>``, and the
emergency controls ``promote-full`` and ``skip-step`` (which need a reason).

An annotation is consumed once: its effect and actor go into history, then the controller removes
it. If the controller dies between the two, the annotation is still there on restart; the status
remembers (key, value, epoch) of what it consumed, and the epoch moves on every transition, so a
leftover is recognised as already done instead of being applied twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from checkout_gates.api.spec import GROUP
from checkout_gates.api.status import CheckoutRolloutStatus

Command = Literal["abort", "retry", "pause", "approve", "undo", "skip-step", "promote-full", "break-freeze"]
# Abort wins over everything, so it is read first; the emergency controls lose to every other
# command given at the same time (the safer one is taken).
COMMANDS: tuple[Command, ...] = (
    "abort",
    "retry",
    "pause",
    "approve",
    "undo",
    "skip-step",
    "promote-full",
    "break-freeze",
)
# Overrides of the gates: approvers only, never without a reason, always paged and recorded.
EMERGENCY: frozenset[Command] = frozenset({"skip-step", "promote-full", "break-freeze"})
REASON_KEY = f"{GROUP}/reason"
# Who last changed the spec, stamped by admission (the chart's MutatingAdmissionPolicy writes the
# request's user into it on every spec change, whatever the client sent), read into the history.
CHANGED_BY_KEY = f"{GROUP}/spec-changed-by"


def annotation_key(command: Command) -> str:
    return f"{GROUP}/{command}"


@dataclass(frozen=True)
class Request:
    command: Command
    actor: str
    key: str
    reason: str = ""  # gates.checkout.dev/reason as it stood with the request

    @property
    def value(self) -> str:
        return self.actor


def pending_requests(annotations: Mapping[str, str]) -> list[Request]:
    """The on-call requests present on the object, abort first."""
    found = []
    for command in COMMANDS:
        key = annotation_key(command)
        actor = annotations.get(key)
        if actor is not None:
            found.append(Request(command, actor.strip() or "unknown", key, annotations.get(REASON_KEY, "")))
    return found


def already_consumed(status: CheckoutRolloutStatus, request: Request) -> bool:
    """True for a leftover of a request this status already took into account."""
    # The reason is part of what was taken into account (a request refused for want of one, then
    # made again with one, is a new request), where the record kept it (older records did not).
    return any(
        record.key == request.key
        and record.value == request.value
        and record.epoch == status.epoch
        and (record.reason is None or record.reason == reason_fingerprint(request.reason))
        for record in status.consumed
    )


def reason_fingerprint(reason: str) -> str:
    """A short stand-in for a reason in status (reasons may be long)."""
    return hashlib.sha256(reason.encode()).hexdigest()[:12]


def request_reason(annotations: Mapping[str, str], request: Request) -> str:
    return annotations.get(REASON_KEY, "").strip() or f"{request.command} requested by {request.actor}"


def spec_changed_by(annotations: Mapping[str, str]) -> str:
    """The user admission recorded for the last spec change; ``unknown`` where nothing stamped it."""
    return spec_author(annotations) or "unknown (no admission stamp)"


def spec_author(annotations: Mapping[str, str]) -> str:
    """The user admission recorded for the last spec change; empty where nothing stamped it."""
    return annotations.get(CHANGED_BY_KEY, "").strip()[:253]


STOPPING: frozenset[Command] = frozenset({"abort", "pause"})


def stops_exposure(annotations: Mapping[str, str], status: CheckoutRolloutStatus | None = None) -> bool:
    """Whether an on-call abort or pause waits to be applied (not a leftover already consumed).

    Such a pass is urgent: it goes ahead of the queue, cuts short the rollout's own pass in flight,
    and skips the gate queries (weights first, evaluation after), so a hanging Prometheus or a
    namespace of slow rollouts never delays taking exposure down."""
    return any(
        request.command in STOPPING and (status is None or not already_consumed(status, request))
        for request in pending_requests(annotations)
    )
