"""The audit sink port: where the operator delivers its audit records (rollout/audit.py).

A sink takes a batch of records or raises :class:`AuditDeliveryError` with a bounded message that
quotes nothing of the server's answer but its status. The controller retries later; a sink must
dedup on each record's ``key``, since a batch may arrive more than once (at least once delivery).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class AuditDeliveryError(Exception):
    """The sink did not accept a batch."""


class AuditSink(Protocol):
    description: str
    """Where the records go, safe to log (no credentials)."""

    async def send(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Deliver the records; AuditDeliveryError when the sink did not take them all."""
        ...

    async def aclose(self) -> None: ...
