"""The recording source: recorded observations for backtests and the CLI's dry run.

:class:`RecordingSource` implements the metrics port (:mod:`checkout_gates.metrics.port`), so the
code that reads gates from Prometheus reads them from a recording the same way; the replay loop
of ``evaluate --replay`` also takes every recorded time at once (:meth:`RecordingSource.readings_at`).

A recording is a JSON-lines file, one line per gate, variant, segment and time::

    {"t": "2026-11-27T10:00:00Z", "gate": "auth-approval", "variant": "canary",
     "labels": {"provider": "adyen", "method": "card"},
     "value": 0.97, "samples": 1200, "good": 1164, "total": 1200}

Each line holds the *window value*: what the operator's query would have returned at time ``t``
over the gate's query window (an ``increase(...[window])``, a quantile over the window, a
gauge's value at ``t``), never a cumulative counter since process start. ``window`` (a duration
such as ``"30s"``) may state that window; it becomes the reading's ``window_seconds``.

Fields:

* ``t`` (required): an RFC 3339 time with a zone (``Z`` or ``+01:00``).
* ``gate`` (required): the gate's name.
* ``variant`` (required unless ``error``): ``canary`` or ``stable`` -- the side of the rollout,
  not the metrics' variant label.
* ``labels``: the segment, as the gate's ``segmentBy`` labels and their values; ``{}`` or left
  out for a scalar result.
* ``value``: the signal; left out or ``null`` for no data. For a ratio it defaults to
  ``good / total`` (null when total is 0) and, when given, must agree with it.
* ``samples``: the observations behind the value (a ratio's defaults to ``total``).
* ``good``, ``total``: a ratio's counts, both or neither.
* ``error``: the gate's queries failed at ``t`` with this text (a Prometheus outage); such a
  line carries no variant, labels or numbers, and no other line of that gate and time may.
* ``window``: the query window, see above.

At a recorded time, a gate with no line at that time reads as no data (empty for both variants),
just as an empty Prometheus result would.

Read through the port over a window longer than the recorded one (per-interval values read for a
5-minute threshold window, or for a sequential gate's whole step), a ratio or count gate's
recorded values in that window are added up, as ``increase(...[window])`` over the longer range
would return them (:class:`~checkout_gates.rollout.replay.WindowSums`, the replay loop's own
arithmetic); a quantile or gauge reading is used as recorded.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from checkout_gates.api.quantities import Duration, parse_duration
from checkout_gates.api.spec import CheckoutRolloutSpec, Gate
from checkout_gates.gates.observations import Sample, Segment, SignalReading, segment_name
from checkout_gates.metrics.port import MetricsSource
from checkout_gates.rollout.plan import GateRead
from checkout_gates.rollout.replay import WindowSums, needs_widening

RATIO_TOLERANCE = 5e-4  # how far a recorded ratio value may be from good/total (rounding)
MAX_REPORTED = 20  # problems listed in one RecordingError

Count = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class RecordingError(ValueError):
    """A recording that cannot be replayed; the message lists every problem by line and field."""


class _Line(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    t: AwareDatetime
    gate: Annotated[str, Field(min_length=1)]
    variant: Literal["canary", "stable"] | None = None
    labels: dict[str, str] = {}
    value: float | None = None
    samples: Count | None = None
    good: Count | None = None
    total: Count | None = None
    error: Annotated[str, Field(min_length=1)] | None = None
    window: Duration | None = None

    @field_validator("value")
    @classmethod
    def _not_nan(cls, value: float | None) -> float | None:
        if value is not None and math.isnan(value):
            raise ValueError("NaN is not a value; leave value out (or null) for no data")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> _Line:
        if self.error is not None:
            stray = [
                name for name in ("variant", "value", "samples", "good", "total") if getattr(self, name) is not None
            ]
            if self.labels:
                stray.append("labels")
            if stray:
                raise ValueError(f"a line with an error carries no {', '.join(stray)} (the whole reading failed)")
            return self
        if self.variant is None:
            raise ValueError("variant is required (canary or stable) unless the line records an error")
        if (self.good is None) != (self.total is None):
            raise ValueError("good and total go together: give both or neither")
        if self.good is not None and self.total is not None and self.value is not None:
            expected = self.good / self.total if self.total > 0 else None
            if expected is None or abs(self.value - expected) > RATIO_TOLERANCE:
                shown = "null (total is 0)" if expected is None else f"{expected:.6g}"
                raise ValueError(f"value {self.value:g} disagrees with good/total = {shown}; leave value out")
        return self

    def sample(self) -> Sample:
        value = self.value
        samples = self.samples
        if self.good is not None and self.total is not None:
            if value is None and self.total > 0:
                value = self.good / self.total
            if samples is None:
                samples = self.total
        return Sample(value=value, samples=samples, good=self.good, total=self.total)

    def segment(self) -> Segment:
        return tuple(sorted(self.labels.items()))


@dataclass
class _Moment:
    """Everything recorded for one gate at one time, with the line numbers it came from."""

    canary: dict[Segment, Sample] = field(default_factory=dict)
    stable: dict[Segment, Sample] = field(default_factory=dict)
    lines: dict[tuple[str, Segment], int] = field(default_factory=dict)
    error: str | None = None
    error_line: int = 0
    window_seconds: float | None = None
    window_line: int = 0

    def reading(self, gate: str) -> SignalReading:
        window = self.window_seconds or 0.0
        if self.error is not None:
            return SignalReading(gate=gate, error=self.error, window_seconds=window)
        return SignalReading(gate=gate, canary=dict(self.canary), stable=dict(self.stable), window_seconds=window)


class RecordingSource(MetricsSource):
    """Recorded readings by time and gate; ``name`` (the file) names it in messages."""

    def __init__(
        self, moments: Mapping[datetime, Mapping[str, _Moment]], gates: Iterable[str], *, name: str = "<recording>"
    ) -> None:
        self._moments = {t: dict(by_gate) for t, by_gate in moments.items()}
        self._gates = tuple(sorted(set(gates)))
        self.name = name
        # Per gate name and signal kind: running sums over every recorded time, built on first use.
        self._sums: dict[tuple[str, str], WindowSums] = {}

    @classmethod
    def load(cls, path: str | Path) -> RecordingSource:
        """Read and validate a recording; RecordingError lists every bad line (number and field)."""
        source = Path(path)
        try:
            text = source.read_text(encoding="utf-8")
        except OSError as error:
            raise RecordingError(f"{source}: cannot read the recording: {error.strerror or error}") from error
        return cls.parse(text, name=str(source))

    @classmethod
    def parse(cls, text: str, *, name: str = "<recording>") -> RecordingSource:
        """A recording from JSON-lines text; ``name`` prefixes the error messages."""
        problems: list[str] = []
        moments: dict[datetime, dict[str, _Moment]] = {}
        gates: set[str] = set()
        for number, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            line, problem = _parse_line(raw)
            if line is None:
                problems.append(f"line {number}: {problem}")
                continue
            t = line.t.astimezone(UTC)
            gates.add(line.gate)
            moment = moments.setdefault(t, {}).setdefault(line.gate, _Moment())
            conflict = _add(moment, line, number)
            if conflict is not None:
                problems.append(f"line {number}: {conflict}")
        if problems:
            shown = problems[:MAX_REPORTED]
            more = len(problems) - len(shown)
            tail = f"\n  ... and {more} more" if more else ""
            raise RecordingError(
                f"{name}: {len(problems)} bad line{'s' if len(problems) != 1 else ''}:\n  " + "\n  ".join(shown) + tail
            )
        if not moments:
            raise RecordingError(f"{name}: the recording has no lines")
        return cls(moments, gates, name=name)

    @property
    def gates(self) -> tuple[str, ...]:
        """The names of every gate recorded at any time, sorted."""
        return self._gates

    def times(self) -> list[datetime]:
        """The distinct recorded times (UTC), sorted."""
        return sorted(self._moments)

    def readings_at(self, t: datetime) -> dict[str, SignalReading]:
        """Every recorded gate's reading at ``t``: what was recorded at exactly t, or no data.

        A naive ``t`` is taken as UTC.
        """
        by_gate = self._moments.get(_utc(t), {})
        return {gate: (by_gate[gate] if gate in by_gate else _Moment()).reading(gate) for gate in self._gates}

    # --- the port ----------------------------------------------------------------------------

    @property
    def description(self) -> str:
        return f"recording {self.name}"

    async def check(self, at: datetime | None = None) -> str | None:
        return None  # loaded and validated: every read is answered (no data where nothing was recorded)

    async def aclose(self) -> None:
        return None  # nothing held open: the recording was read whole

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
        """The reading recorded at ``at`` (no data if none), added up over ``window_seconds`` when
        the recorded window is shorter and the signal adds up. A recording has no "now": without
        ``at`` the reading is an error (Inconclusive). A recording holds readings, not raw samples:
        ``since`` is not used (a gate with ``counts: exact`` is judged on the window's sums)."""
        del since
        if at is None:
            return SignalReading(
                gate=gate.name,
                error=f"{self.description} is read at recorded times, and no time was given",
                window_seconds=window_seconds,
            )
        moment = self._moments.get(_utc(at), {}).get(gate.name, _Moment())
        recorded = moment.reading(gate.name)
        if not needs_widening(GateRead(gate, window_seconds), recorded):
            return recorded
        return self._window_sums(gate).window(_utc(at), window_seconds)

    def _window_sums(self, gate: Gate) -> WindowSums:
        key = (gate.name, gate.signal_kind)
        sums = self._sums.get(key)
        if sums is None:
            sums = self._sums[key] = WindowSums(gate)
            for t in self.times():
                sums.add(t, self._moments[t].get(gate.name, _Moment()).reading(gate.name))
        return sums


def _utc(t: datetime) -> datetime:
    """A naive time is taken as UTC."""
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _parse_line(raw: str) -> tuple[_Line | None, str]:
    try:
        data: Any = json.loads(raw)
    except ValueError as error:
        return None, f"not JSON: {error}"
    if not isinstance(data, dict):
        return None, f"expected a JSON object, found {type(data).__name__}"
    try:
        return _Line.model_validate(data), ""
    except ValidationError as error:
        return None, "; ".join(_describe(item) for item in error.errors())


def _describe(item: Mapping[str, Any]) -> str:
    location = ".".join(str(part) for part in item.get("loc", ()))
    message = str(item.get("msg", "invalid"))
    message = message.removeprefix("Value error, ")
    if item.get("type") == "extra_forbidden":
        message = "unknown field (known: t, gate, variant, labels, value, samples, good, total, error, window)"
    return f"field {location!r}: {message}" if location else message


def _add(moment: _Moment, line: _Line, number: int) -> str | None:
    """Record one line; a problem text if it contradicts an earlier line of the same gate and time."""
    if line.window is not None:
        seconds = parse_duration(line.window)
        if moment.window_seconds is not None and moment.window_seconds != seconds:
            return f"field 'window': {line.window} differs from line {moment.window_line}'s window"
        moment.window_seconds, moment.window_line = seconds, number
    when = line.t.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if line.error is not None:
        if moment.error is not None:
            return f"gate {line.gate!r} at {when} already has an error on line {moment.error_line}"
        if moment.lines:
            first = min(moment.lines.values())
            return f"gate {line.gate!r} at {when} has samples (line {first}) and an error: choose one"
        moment.error, moment.error_line = line.error, number
        return None
    if moment.error is not None:
        return f"gate {line.gate!r} at {when} has an error (line {moment.error_line}) and samples: choose one"
    assert line.variant is not None  # the model's validator requires it without an error
    segment = line.segment()
    key = (line.variant, segment)
    if key in moment.lines:
        return (
            f"duplicate of line {moment.lines[key]} (gate {line.gate!r}, {line.variant}, "
            f"segment {segment_name(segment)}, {when})"
        )
    moment.lines[key] = number
    target = moment.canary if line.variant == "canary" else moment.stable
    target[segment] = line.sample()
    return None
