"""The audit record: one per history entry, the same on the operator's log and at the audit sink.

Every transition the state machine records (``Draft.record``) is numbered: its ``seq`` is the
epoch it made, 1 for the rollout's first. With the rollout's uid that number is the record's
``key``, which a receiver dedups on: delivery to the sink is at least once (a crash between the
sink's answer and the status write that says so sends the same records again, same keys).

``status.audit.delivered`` is the seq up to which the sink has accepted every record. The history
keeps the last 50 entries, so records the sink did not take before they rolled out of it are
counted in ``status.audit.lost`` (and said so in the operator's log): the log line written at the
transition is then the only copy. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from checkout_gates.api.resource import CheckoutRollout, ObjectMeta
from checkout_gates.api.status import EVIDENCE_LIMIT, AuditExport, CheckoutRolloutStatus, GateStatus, HistoryEntry

# The most records one delivery carries (a full history).
BATCH_LIMIT = 50
# Retries of a failed delivery wait 5 s, doubling, at most 5 minutes.
RETRY_FIRST = 5.0
RETRY_MAX = 300.0


def evidence(gates: Sequence[GateStatus]) -> str:
    """The gates' verdicts in one line: ``auth-rate Pass 0.962 vs 0.961 n=1204 [provider=adyen]``."""
    parts = []
    for gate in gates:
        part = f"{gate.name} {gate.verdict}"
        if gate.value is not None:
            part += f" {gate.value:.4g}"
            if gate.baseline is not None:
                part += f" vs {gate.baseline:.4g}"
        if gate.samples is not None:
            part += f" n={gate.samples:.0f}"
        if gate.segment:
            part += f" [{gate.segment}]"
        parts.append(part)
    text = "; ".join(parts)
    return text if len(text) <= EVIDENCE_LIMIT else text[: EVIDENCE_LIMIT - 1] + "…"


def numbered(status: CheckoutRolloutStatus) -> list[tuple[int, HistoryEntry]]:
    """The history with each entry's seq. Entries written before seq existed are numbered by
    their place: the epoch counts every entry ever recorded, the last one included."""
    count = len(status.history)
    return [(entry.seq or status.epoch - (count - 1 - index), entry) for index, entry in enumerate(status.history)]


def key(meta: ObjectMeta, seq: int) -> str:
    return f"{meta.namespace}/{meta.name}/{meta.uid}/{seq}"


def record(meta: ObjectMeta, seq: int, entry: HistoryEntry) -> dict[str, Any]:
    """The audit record of one history entry (JSON-ready, snake_case like the operator's log)."""
    return {
        "key": key(meta, seq),
        "seq": seq,
        "namespace": meta.namespace,
        "rollout": meta.name,
        "uid": meta.uid,
        "time": _rfc3339(entry.time),
        "actor": entry.actor,
        "action": entry.action,
        "reason": entry.reason,
        "step": entry.step,
        "canary_weight": entry.canary_weight,
        "generation": entry.generation,
        "revision": entry.revision,
        "evidence": entry.evidence,
    }


def new_records(rollout: CheckoutRollout, after: CheckoutRolloutStatus) -> list[dict[str, Any]]:
    """The records of the entries ``after`` added to the rollout's history (for the log line)."""
    return [record(rollout.metadata, seq, entry) for seq, entry in numbered(after) if seq > rollout.status.epoch]


@dataclass(frozen=True)
class Pending:
    """What the sink has yet to take: ``records`` (oldest first, at most a batch) and ``lost``
    records that left the history before it took them (all before ``seq`` ``gone_through``)."""

    records: list[dict[str, Any]]
    lost: int = 0
    gone_through: int = 0

    @property
    def through(self) -> int:
        """The seq of the last record sent."""
        return int(self.records[-1]["seq"]) if self.records else self.gone_through


def pending(rollout: CheckoutRollout) -> Pending:
    """The records the sink has yet to accept. A rollout the sink has never seen (no
    ``status.audit``: the sink is new, or so is the rollout) sends its whole history."""
    status = rollout.status
    export = status.audit
    entries = numbered(status)
    if not entries:
        return Pending([])
    delivered = export.delivered if export is not None else 0
    gone_through = entries[0][0] - 1
    lost = max(0, gone_through - delivered) if export is not None else 0
    waiting = [(seq, entry) for seq, entry in entries if seq > delivered]
    records = [record(rollout.metadata, seq, entry) for seq, entry in waiting[:BATCH_LIMIT]]
    # Carried even when nothing is lost: what is gone from the history is never waited for (a
    # rollout new to the sink, whose first delivery fails, must not count its past as lost).
    return Pending(records, lost, gone_through)


def exported(status: CheckoutRolloutStatus, sent: Pending, error: str, now: datetime) -> CheckoutRolloutStatus:
    """The status once the delivery of ``sent`` succeeded (``error`` empty) or failed. Records
    found lost are counted once and not waited for again, whatever the delivery's fate."""
    before = status.audit or AuditExport()
    delivered = max(before.delivered, sent.gone_through)
    if error:
        after = before.model_copy(
            update={
                "delivered": delivered,
                "lost": before.lost + sent.lost,
                "failures": before.failures + 1,
                "error": error[:1024],
                "attempted_at": now,
            }
        )
    else:
        after = AuditExport(delivered=max(delivered, sent.through), lost=before.lost + sent.lost, attempted_at=now)
    return status if after == before else status.model_copy(update={"audit": after})


def waiting(status: CheckoutRolloutStatus) -> bool:
    """Whether the history holds a record the sink has not taken (by the history, not the epoch:
    an epoch ahead of an emptied history has nothing left to send)."""
    entries = numbered(status)
    delivered = status.audit.delivered if status.audit is not None else 0
    return bool(entries) and entries[-1][0] > delivered


def retry_after(export: AuditExport | None) -> float | None:
    """Seconds until a failed delivery is tried again; None when the last one succeeded."""
    if export is None or not export.failures:
        return None
    return float(min(RETRY_FIRST * 2 ** min(export.failures - 1, 16), RETRY_MAX))  # no overflow after days down


def _rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")
