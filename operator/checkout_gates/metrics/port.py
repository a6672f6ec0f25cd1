"""The one metrics port: what the controller and the dry-run commands read gates through.

Two adapters implement it: :class:`~checkout_gates.metrics.prometheus.PrometheusSource` (instant
queries against a Prometheus server) and :class:`~checkout_gates.metrics.recording.RecordingSource`
(a recording). Callers hold a :class:`MetricsSource` and never see PromQL, HTTP or files.

The contract every adapter keeps: a read never raises. Whatever goes wrong (an unreachable server,
a rejected query, a number that is not one, a time the recording lacks) comes back as a
``SignalReading`` with ``error`` set, which the core judges Inconclusive; the error text is bounded
and carries no foreign response body and no secret.

Adapters subclass the Protocol explicitly, so that mypy checks their signatures against it where
they are defined, and so that they share :meth:`MetricsSource.read_gates` and the context-manager
methods instead of each carrying a copy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.api.spec import CheckoutRolloutSpec, Gate
from checkout_gates.gates.observations import SignalReading


class GateAndWindow(Protocol):
    """One gate to read and the window to read it over (the plan's GateRead, the dry run's GateContext)."""

    @property
    def gate(self) -> Gate: ...

    @property
    def window_seconds(self) -> float: ...

    @property
    def since(self) -> datetime | None:
        """Where a gate with carried evidence counts from (None: ``window_seconds`` before the instant)."""
        ...


class MetricsSource(Protocol):
    """Readings of a rollout's gates, for both variants, over a window ending at an instant."""

    @property
    def description(self) -> str:
        """The source in words for messages, e.g. ``Prometheus at http://prometheus:9090``."""
        ...

    async def check(self, at: datetime | None = None) -> str | None:
        """None when the source can answer reads at ``at`` (None: now); else why not, in words.

        A dry run asks once before reading, to stop with the reason instead of reporting every
        gate Inconclusive for the same cause.
        """
        ...

    async def read_gate(
        self,
        gate: Gate,
        *,
        spec: CheckoutRolloutSpec,
        namespace: str,
        name: str,
        window_seconds: float,
        at: datetime | None = None,
        since: datetime | None = None,
    ) -> SignalReading:
        """Both variants' readings of one gate over the ``window_seconds`` before ``at``.

        ``at`` None means the source's own notion of now (Prometheus: a settled recent instant).
        ``since``, for a gate with ``counts: exact``: count from there instead, interval by interval
        (the analysis interval, on a grid of whole intervals), for evidence carried across steps.
        Never raises: failures are readings with ``error`` set.
        """
        ...

    async def aclose(self) -> None:
        """Release connections and anything else the source holds; reads after it are not allowed."""
        ...

    async def read_gates(
        self,
        gates: Sequence[Gate],
        *,
        spec: CheckoutRolloutSpec,
        namespace: str,
        name: str,
        window_seconds: float | Mapping[str, float],
        at: datetime | None = None,
        since: Mapping[str, datetime | None] | None = None,
    ) -> dict[str, SignalReading]:
        """Readings of several gates, concurrently, by gate name; ``window_seconds`` (and ``since``)
        may differ per gate."""

        def window(gate: Gate) -> float:
            return window_seconds[gate.name] if isinstance(window_seconds, Mapping) else window_seconds

        readings = await asyncio.gather(
            *(
                self.read_gate(
                    gate,
                    spec=spec,
                    namespace=namespace,
                    name=name,
                    window_seconds=window(gate),
                    at=at,
                    since=(since or {}).get(gate.name),
                )
                for gate in gates
            )
        )
        return {reading.gate: reading for reading in readings}

    async def read_for(
        self, rollout: CheckoutRollout, reads: Sequence[GateAndWindow], *, at: datetime | None = None
    ) -> dict[str, SignalReading]:
        """What the controller, ``evaluate`` and ``backtest`` all ask: a rollout's due gates, each
        over its own window, labelled with the rollout's namespace and name."""
        return await self.read_gates(
            [read.gate for read in reads],
            spec=rollout.spec,
            namespace=rollout.metadata.namespace,
            name=rollout.metadata.name,
            window_seconds={read.gate.name: read.window_seconds for read in reads},
            at=at,
            since={read.gate.name: read.since for read in reads},
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
