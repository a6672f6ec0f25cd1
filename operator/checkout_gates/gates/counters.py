r"""Exact counter increments from raw Prometheus samples: the reset rule, no extrapolation.

Pure: no I/O, no clock, standard library only.  The metrics adapter asks Prometheus for the raw
samples of each counter series (a bare range selector, ``metric{...}[R]``, evaluated at ``end``;
not aggregated: a sum over pods drops when one pod's series ends, which would read as a reset)
and hands them here; :func:`counter_increase` returns the exact number of counter increments in
``(start, end]`` per series and summed per segment, which is what the sequential test
(:mod:`checkout_gates.gates.sequential`) needs.  Each arm is one call (the caller selects the
arm's series).

Why not ``increase()``
----------------------
``increase(v[R])`` (https://prometheus.io/docs/prometheus/latest/querying/functions/#increase)
looks only at the samples inside the range, so the events between the last sample before the
range and the first one inside it are never seen; to make up for that it *extrapolates*: the
increase between the first and the last sample in the range is stretched towards the range's
edges (all the way to an edge less than 1.1 average sample intervals away, else by half an
interval).  That is a fine rate estimate and a wrong event count: it is not an integer, and at a
step's first evaluations, with two or three samples in the range, the observed increments are
stretched over about twice their time, so the evidence is roughly doubled.  The sequential test's guarantee (Ville's inequality) is about
the events themselves, so inflated counts inflate false halts beyond alpha (issue 13).

Prometheus' counter semantics
-----------------------------
A counter (https://prometheus.io/docs/concepts/metric_types/#counter) is a cumulative value that
only goes up, except that it restarts from 0 when its process restarts.  Prometheus itself (in
``rate``, ``increase`` and ``resets``, https://prometheus.io/docs/prometheus/latest/querying/functions/#resets)
reads any drop between consecutive samples as such a reset.  The rule here is the same, applied
to consecutive usable samples ``v_prev -> v``:

* ``v >= v_prev``: the increment is ``v - v_prev``;
* ``v < v_prev``: a reset, the process restarted from 0 and the increment is ``v``.

No extrapolation: only what the samples prove happened is counted, so counts of events are exact
integers (float arithmetic on integer values is exact below 2^53).  An increment is attributed to
the moment of the sample that observed it: the events happened somewhere between the two samples,
the later sample is the first proof of them.

The baseline, and series born in the window
-------------------------------------------
A series counts from its *baseline*, its last sample at or before ``start``: its value then is
history, not evidence.  A sample exactly at ``start`` is a baseline, not counted.  So the range
``R`` must reach before ``start`` by at least one scrape interval, better a few
(:func:`selector_range_seconds`); otherwise an old series looks newborn (below) and its whole
history is counted.

A series with no sample at or before ``start`` was born after it: a new canary pod, or a labelled
child that the client library creates at its first event (``provider="klarna"`` appears with value
1).  Its first sample counts from 0 (increment = its first value): that is how a new pod's first
events and a new child's first event get counted at all.  The rule's one bias: a series created
shortly before ``start`` but first scraped after it brings the events between its creation and
``start`` into this window, at most one scrape interval of events (``counted_from_zero`` in the
results shows how much was counted this way).  It is the same straddle as every other series':
the first increment after ``start`` covers the events since the baseline, the last scrape before
``start``, so up to one scrape interval of pre-``start`` events is counted for any series (only
an increment that straddles nothing, a baseline exactly at ``start``, is split exactly).

What is skipped, and what is reported
-------------------------------------
Nothing here raises on data; every oddity becomes a :class:`CounterNote` (aggregated per series
and kind, so a flapping series cannot flood a reason):

* NaN, infinite or negative values (a counter is never negative) are skipped;  Prometheus'
  staleness marker, a NaN with a special bit pattern
  (https://prometheus.io/docs/prometheus/latest/querying/basics/#staleness), never appears in
  the HTTP API, but if it does it is skipped too, named as such.  The comparison for the next
  sample is with the last usable one.
* Samples out of time order are sorted; samples sharing a timestamp are merged into one, the
  largest value (the result does not depend on the order of the input); a series whose labels
  appear twice has its samples merged.  Prometheus sends none of these, so each is noted.
* Samples after ``end`` are ignored.
* Gaps longer than ``max_gap`` seconds between consecutive usable samples.  A counter is
  cumulative, so a gap loses nothing by itself: the next sample brings the increments of the whole
  gap.  But a reset inside a gap loses the events between the last sample before the gap and the
  crash ("possible-undercount"); a reset the counter has climbed back over by the next sample is
  invisible (read as a smaller increment), which no reader of Prometheus can tell.  A gap across
  ``start`` brings events from before ``start`` into the window ("possible-overcount").
* A series that stops reporting ("went-silent"): a replaced pod, or failing scrapes.  The events
  after its last sample are not counted yet, and are lost if the process is gone.

Even without gaps, a restart loses the events between the process's last scrape and its crash (at
most one scrape interval of one pod's events); Prometheus cannot see them either.

Intervals, and counting at every scrape
---------------------------------------
:func:`increments_between` splits ``(b_0, b_n]`` at boundaries into intervals ``(b_i, b_{i+1}]``
(left-open like the window, so that they add up to it exactly), so that a caller can weigh each
interval's increments with the canary share in force then.  An increment whose two samples
straddle a boundary goes wholly to the interval of the later sample (no pro-rating: counts stay
integers): a boundary splits a series exactly only where it falls on one of its scrape times,
otherwise up to one scrape interval of its events moves to the later interval.  :class:`CounterCursor` and
:func:`advance` do the same incrementally, from the last sample seen of each series, so an
e-process can be updated at every scrape from short queries.
"""

from __future__ import annotations

import math
import struct
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from types import MappingProxyType
from typing import Literal

from checkout_gates.gates.observations import SCALAR, Segment

__all__ = [
    "OVERCOUNT_KINDS",
    "UNDERCOUNT_KINDS",
    "CounterCursor",
    "CounterIncreases",
    "CounterNote",
    "CounterNoteKind",
    "CounterSeries",
    "CursorAdvance",
    "LastSample",
    "SegmentIncrease",
    "SeriesIncrease",
    "SeriesLabels",
    "advance",
    "counter_increase",
    "counter_segment",
    "increments_between",
    "is_stale_marker",
    "selector_range_seconds",
    "series_labels",
    "series_text",
]

SeriesLabels = tuple[tuple[str, str], ...]
"""A series' identity: all its labels (``__name__`` included) as sorted ``(label, value)`` pairs."""

CounterNoteKind = Literal[
    "non-finite-value",  # NaN or +-Inf sample skipped
    "stale-marker",  # Prometheus' staleness NaN skipped (the HTTP API never sends one)
    "negative-value",  # a counter is never negative: skipped
    "bad-timestamp",  # NaN or infinite timestamp: skipped
    "unordered-samples",  # samples not in time order: sorted
    "conflicting-duplicate",  # two values at one timestamp: the largest kept
    "repeated-series",  # one label set twice in the input: samples merged
    "gap",  # no sample for more than max_gap; counted in full
    "possible-undercount",  # a reset after a gap: the events before the crash are lost
    "possible-overcount",  # a gap across start: events before start may be counted
    "went-silent",  # no sample in the last max_gap before the end
]

UNDERCOUNT_KINDS: frozenset[CounterNoteKind] = frozenset({"possible-undercount"})
OVERCOUNT_KINDS: frozenset[CounterNoteKind] = frozenset({"possible-overcount"})

# Prometheus' staleness marker (model/value/value.go, StaleNaN): a signalling NaN with this exact
# bit pattern, unlike the NaN that arithmetic produces.
_STALE_NAN_BITS = 0x7FF0000000000002
_LABELS_SHOWN = 200


def is_stale_marker(value: float) -> bool:
    """True for Prometheus' staleness marker (a NaN with a special bit pattern), not for other NaNs."""
    bits: int = struct.unpack("<Q", struct.pack("<d", value))[0]
    return bits == _STALE_NAN_BITS


def series_labels(labels: Mapping[str, str]) -> SeriesLabels:
    """The identity of a series: its labels as sorted pairs."""
    return tuple(sorted((str(name), str(value)) for name, value in labels.items()))


def series_text(series: SeriesLabels) -> str:
    """``{pod="checkout-7f9", provider="adyen"}``, bounded in length for reasons and logs."""
    text = "{" + ", ".join(f'{name}="{value}"' for name, value in series) + "}"
    return text if len(text) <= _LABELS_SHOWN else text[: _LABELS_SHOWN - 4] + "...}"


def counter_segment(labels: Mapping[str, str] | SeriesLabels, segment_by: Sequence[str]) -> Segment:
    """The segment of a raw series: its values of the ``segment_by`` labels ("" when missing).

    Unlike :func:`checkout_gates.gates.observations.segment_of`, no ``segment_by`` means one
    segment (:data:`SCALAR`) for all series, not one per label set: raw series carry ``pod`` and
    ``instance`` labels, and summing over them is the point.
    """
    if isinstance(segment_by, str):  # a str is a Sequence[str]: "provider" would be 8 labels
        raise TypeError(f"segment_by must be a sequence of label names, not the string {segment_by!r}")
    if not segment_by:
        return SCALAR
    found = dict(labels.items()) if isinstance(labels, Mapping) else dict(labels)
    return tuple((name, found.get(name, "")) for name in sorted(set(segment_by)))


def selector_range_seconds(start: float, end: float, *, lookback: float) -> int:
    """Whole seconds ``R`` for ``metric{...}[Rs]`` evaluated at ``end`` that reach ``lookback`` before ``start``.

    ``lookback`` should be at least ``max_gap`` (a few scrape intervals), so that every live
    series has its baseline sample in the answer.  Whether the range is closed (Prometheus 2) or
    left-open (Prometheus 3) does not matter: it starts ``lookback`` before ``start`` either way.
    """
    if not (math.isfinite(start) and math.isfinite(end) and end >= start):
        raise ValueError(f"need finite start <= end, got start={start}, end={end}")
    if not (math.isfinite(lookback) and lookback > 0.0):
        raise ValueError(f"lookback must be positive and finite, got {lookback}")
    return max(1, math.ceil(end - start + lookback))


# --------------------------------------------------------------------------- the data


@dataclass(frozen=True)
class CounterSeries:
    """One series of a range selector's answer, as Prometheus returned it.

    ``samples`` are ``(timestamp_seconds, value)`` pairs; the HTTP API sends
    ``{"metric": {...}, "values": [[1712345678.123, "42"], ...]}`` in time order, but nothing here
    relies on order.  The adapter converts the value strings with ``float()``.
    """

    labels: Mapping[str, str]
    samples: Sequence[tuple[float, float]]


@dataclass(frozen=True)
class LastSample:
    """The last sample of a series that has been accounted for."""

    timestamp: float
    value: float


@dataclass(frozen=True)
class CounterNote:
    """Something about one series worth knowing, aggregated over its occurrences.

    ``first_at`` is the timestamp of the first occurrence (``None`` when not tied to a sample),
    ``detail`` describes the first occurrence and how many more there were.
    """

    kind: CounterNoteKind
    series: SeriesLabels
    occurrences: int
    first_at: float | None
    detail: str

    def __str__(self) -> str:
        return f"{series_text(self.series)}: {self.detail}"


@dataclass(frozen=True)
class SeriesIncrease:
    """One series' increments, per interval.

    ``born_in_window``: the series had no baseline (no sample at or before the counting start)
    and its first sample was counted from 0, contributing ``counted_from_zero``.
    ``last_sample``: its last usable sample at or before the end (``None``: none usable).
    """

    series: SeriesLabels
    segment: Segment
    per_interval: tuple[float, ...]
    resets: int
    born_in_window: bool
    counted_from_zero: float
    last_sample: LastSample | None
    notes: tuple[CounterNote, ...]

    @property
    def increase(self) -> float:
        return math.fsum(self.per_interval)


@dataclass(frozen=True)
class SegmentIncrease:
    """The increments of one segment's series, summed, per interval.

    ``series_count``: series with a sample at or before the end (a stopped series still counts);
    ``born_in_window``: how many of them were counted from 0, contributing ``counted_from_zero``
    (an upper bound on the birth bias described in the module docstring); ``resets``: counter
    resets seen.  ``notes`` are the series' notes, in series order.
    """

    segment: Segment
    per_interval: tuple[float, ...]
    series_count: int
    resets: int
    born_in_window: int
    counted_from_zero: float
    notes: tuple[CounterNote, ...]

    @property
    def increase(self) -> float:
        return math.fsum(self.per_interval)

    @property
    def possible_undercount(self) -> bool:
        return any(note.kind in UNDERCOUNT_KINDS for note in self.notes)

    @property
    def possible_overcount(self) -> bool:
        return any(note.kind in OVERCOUNT_KINDS for note in self.notes)


@dataclass(frozen=True)
class CounterIncreases:
    """Increments per segment and per series over the intervals ``(b_i, b_{i+1}]`` of ``boundaries``.

    A window ``(start, end]`` is the one interval of ``boundaries == (start, end)``.  A segment
    with no series is absent: :meth:`increase` and :meth:`per_interval` read it as zeros.
    """

    boundaries: tuple[float, ...]
    segments: Mapping[Segment, SegmentIncrease]
    series: tuple[SeriesIncrease, ...]

    @property
    def intervals(self) -> int:
        return len(self.boundaries) - 1

    def increase(self, segment: Segment = SCALAR) -> float:
        found = self.segments.get(segment)
        return found.increase if found is not None else 0.0

    def per_interval(self, segment: Segment = SCALAR) -> tuple[float, ...]:
        found = self.segments.get(segment)
        return found.per_interval if found is not None else (0.0,) * self.intervals

    @property
    def total(self) -> float:
        """All segments together."""
        return math.fsum(one.increase for one in self.segments.values())

    @property
    def notes(self) -> tuple[CounterNote, ...]:
        return tuple(note for one in self.segments.values() for note in one.notes)


@dataclass(frozen=True)
class CounterCursor:
    """Where counting stands: everything in ``(start, as_of]`` has been accounted for.

    ``start`` is when counting began (the baseline rule uses it for series seen for the first
    time); ``last_seen`` holds each series' last accounted sample.  Series are never forgotten:
    one forgotten and seen again would look newborn and be counted from 0.
    """

    start: float
    as_of: float
    last_seen: Mapping[SeriesLabels, LastSample] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def begin(cls, start: float) -> CounterCursor:
        """A cursor at ``start`` that has seen nothing yet."""
        if not math.isfinite(start):
            raise ValueError(f"start must be finite, got {start}")
        return cls(start=start, as_of=start, last_seen=MappingProxyType({}))


@dataclass(frozen=True)
class CursorAdvance:
    """What :func:`advance` returns: the increments over the new intervals, and the moved cursor."""

    increases: CounterIncreases
    cursor: CounterCursor


# --------------------------------------------------------------------------- the API


def counter_increase(
    series: Iterable[CounterSeries],
    *,
    start: float,
    end: float,
    segment_by: Sequence[str] = (),
    max_gap: float | None = None,
) -> CounterIncreases:
    """Exact counter increments in ``(start, end]``, per series and per segment.

    ``series`` are one arm's raw series (a range selector's answer at ``end`` reaching before
    ``start``, see :func:`selector_range_seconds`); ``segment_by`` names the labels that make a
    segment (none: one segment, :data:`SCALAR`); ``max_gap`` (seconds, e.g. 2-3 scrape intervals)
    enables the gap notes.  Never raises on data; raises ValueError for non-finite or reversed
    ``start``/``end`` or a non-positive ``max_gap`` (programming errors).
    """
    return increments_between(series, boundaries=(start, end), segment_by=segment_by, max_gap=max_gap)


def increments_between(
    series: Iterable[CounterSeries],
    *,
    boundaries: Sequence[float],
    segment_by: Sequence[str] = (),
    max_gap: float | None = None,
) -> CounterIncreases:
    """Exact counter increments within each interval ``(b_i, b_{i+1}]`` of ``boundaries``.

    ``boundaries[0]`` is the counting start (the baseline rule), ``boundaries[-1]`` the end; the
    intervals add up exactly to :func:`counter_increase` over ``(b_0, b_n]``, and each equals
    :func:`counter_increase` over itself.  Boundaries must be finite and non-decreasing (equal
    ones make an empty interval).  An increment goes to the interval of the sample observing it.
    """
    bounds = _checked_boundaries(boundaries)
    return advance(
        CounterCursor.begin(bounds[0]), series, interval_ends=bounds[1:], segment_by=segment_by, max_gap=max_gap
    ).increases


def advance(
    cursor: CounterCursor,
    series: Iterable[CounterSeries],
    *,
    interval_ends: Sequence[float],
    segment_by: Sequence[str] = (),
    max_gap: float | None = None,
) -> CursorAdvance:
    """Count from ``cursor`` to ``interval_ends[-1]``, split at ``interval_ends``; return the moved cursor.

    The intervals are ``(cursor.as_of, e_0], (e_0, e_1], ...``.  ``series`` is a range selector's
    answer at the last end that reaches back at least ``max_gap`` before ``cursor.as_of`` (for a
    series' first sighting to find its baseline, back before ``cursor.start``).  For a series the
    cursor knows, samples after its last seen one are counted; a late one (at or before
    ``as_of``: ingested after the previous query) goes to the first interval, so nothing is
    counted twice or lost.  A series seen for the first time follows the window's baseline rule
    (baseline at or before ``cursor.start``, else born).  Successive advances add up exactly to
    :func:`counter_increase` over the whole span, given the same samples.
    """
    if not interval_ends:
        raise ValueError("interval_ends must name at least one interval end")
    bounds = _checked_boundaries((cursor.as_of, *interval_ends))
    if max_gap is not None and not (math.isfinite(max_gap) and max_gap > 0.0):
        raise ValueError(f"max_gap must be positive and finite (or None), got {max_gap}")
    if isinstance(segment_by, str):
        raise TypeError(f"segment_by must be a sequence of label names, not the string {segment_by!r}")

    by_series = _merged_input(series, bounds[-1])
    outcomes: list[SeriesIncrease] = []
    last_seen = dict(cursor.last_seen)
    for key in sorted(by_series):
        raw_samples, repeated = by_series[key]
        notes = _Notes(key)
        if repeated > 1:
            notes.add("repeated-series", None, f"its labels appear {repeated} times in the input: samples merged")
        usable = _usable_samples(raw_samples, notes)
        outcome = _walk(
            key,
            counter_segment(key, segment_by),
            usable,
            known=cursor.last_seen.get(key),
            counting_start=cursor.start,
            bounds=bounds,
            max_gap=max_gap,
            notes=notes,
        )
        outcomes.append(outcome)
        if outcome.last_sample is not None:
            last_seen[key] = outcome.last_sample

    increases = _assemble(bounds, outcomes)
    moved = CounterCursor(start=cursor.start, as_of=bounds[-1], last_seen=MappingProxyType(last_seen))
    return CursorAdvance(increases=increases, cursor=moved)


# --------------------------------------------------------------------------- internals


def _checked_boundaries(boundaries: Sequence[float]) -> tuple[float, ...]:
    bounds = tuple(boundaries)
    if len(bounds) < 2:
        raise ValueError(f"need at least two boundaries (one interval), got {len(bounds)}")
    for b in bounds:
        if not math.isfinite(b):
            raise ValueError(f"boundaries must be finite, got {b}")
    for left, right in pairwise(bounds):
        if right < left:
            raise ValueError(f"boundaries must not decrease, got {left} then {right}")
    return bounds


class _Notes:
    """One series' notes, aggregated per kind: the first occurrence described, the rest counted."""

    def __init__(self, series: SeriesLabels) -> None:
        self._series = series
        self._first: dict[CounterNoteKind, tuple[float | None, str]] = {}
        self._count: dict[CounterNoteKind, int] = {}

    def add(self, kind: CounterNoteKind, at: float | None, detail: str) -> None:
        self._count[kind] = self._count.get(kind, 0) + 1
        self._first.setdefault(kind, (at, detail))

    def notes(self) -> tuple[CounterNote, ...]:
        found: list[CounterNote] = []
        for kind, (at, detail) in self._first.items():
            count = self._count[kind]
            text = detail if count == 1 else f"{detail} (and {count - 1} more like it)"
            found.append(CounterNote(kind=kind, series=self._series, occurrences=count, first_at=at, detail=text))
        return tuple(found)


def _merged_input(
    series: Iterable[CounterSeries], end: float
) -> dict[SeriesLabels, tuple[list[tuple[float, float]], int]]:
    """Samples per series identity (repeated label sets merged, with their count).

    A series whose samples all lie after ``end`` is left out: it did not exist in the window.
    """
    merged: dict[SeriesLabels, tuple[list[tuple[float, float]], int]] = {}
    for one in series:
        # "not after end" rather than "<= end" keeps NaN timestamps in, to be noted as such.
        if not any(not (t > end) for t, _ in one.samples):
            continue
        key = series_labels(one.labels)
        samples, seen = merged.get(key, ([], 0))
        samples.extend(one.samples)
        merged[key] = (samples, seen + 1)
    return merged


def _usable_samples(raw: Sequence[tuple[float, float]], notes: _Notes) -> list[tuple[float, float]]:
    """The finite, non-negative samples in time order, one per timestamp (the largest value).

    The largest value at a shared timestamp, because the choice must not depend on input order,
    and for a counter the larger is the later state unless a reset fell exactly there.
    """
    kept: list[tuple[float, float]] = []
    last_time = -math.inf
    unordered = False
    for t, v in raw:
        if not math.isfinite(t):
            notes.add("bad-timestamp", None, f"a sample with timestamp {t} skipped")
            continue
        if t < last_time:
            unordered = True
        last_time = t
        if is_stale_marker(v):
            notes.add("stale-marker", t, f"a staleness marker at t={t:.3f} skipped")
        elif not math.isfinite(v):
            notes.add("non-finite-value", t, f"value {v} at t={t:.3f} skipped")
        elif v < 0.0:
            notes.add("negative-value", t, f"negative value {v:g} at t={t:.3f} skipped (a counter is never negative)")
        else:
            kept.append((t, v))
    if unordered:
        notes.add("unordered-samples", None, "samples were not in time order: sorted")
    kept.sort()
    one_per_time: list[tuple[float, float]] = []
    for t, v in kept:
        if one_per_time and one_per_time[-1][0] == t:
            if one_per_time[-1][1] != v:
                notes.add(
                    "conflicting-duplicate",
                    t,
                    f"values {one_per_time[-1][1]:g} and {v:g} at t={t:.3f}: kept the largest",
                )
            one_per_time[-1] = (t, v)  # sorted by (t, v): the later one is the larger
        else:
            one_per_time.append((t, v))
    return one_per_time


def _walk(
    key: SeriesLabels,
    segment: Segment,
    usable: list[tuple[float, float]],
    *,
    known: LastSample | None,
    counting_start: float,
    bounds: tuple[float, ...],
    max_gap: float | None,
    notes: _Notes,
) -> SeriesIncrease:
    """Apply the reset rule to one series from its baseline (or birth) to the end."""
    as_of, end = bounds[0], bounds[-1]
    # For a known series, what is left to account for are the samples after its last known one:
    # those at or before it were accounted for (a counter is cumulative, so the increments of a
    # sample skipped that way are in the next difference).
    history = [s for s in usable if s[0] <= end and (known is None or s[0] > known.timestamp)]
    # Samples at or before the counting start only set the baseline, even when they arrive late
    # (a known series' pre-start sample ingested after the previous query).
    before = [s for s in history if s[0] <= counting_start]
    pending = [s for s in history if s[0] > counting_start]
    previous: tuple[float, float] | None = None
    if before:
        previous = before[-1]
    elif known is not None:
        previous = (known.timestamp, known.value)

    increments: list[list[float]] = [[] for _ in range(len(bounds) - 1)]
    resets = 0
    born = previous is None and bool(pending)
    counted_from_zero = 0.0
    for t, v in pending:
        if previous is None:
            increment = v  # born after the counting start: from 0
            counted_from_zero = v
        else:
            previous_time, previous_value = previous
            gap = t - previous_time
            long_gap = max_gap is not None and gap > max_gap
            if v >= previous_value:
                increment = v - previous_value
            else:
                increment = v  # a reset: the process restarted from 0
                resets += 1
                if long_gap:
                    notes.add(
                        "possible-undercount",
                        t,
                        f"reset seen at t={t:.3f} after {gap:g} s without a sample: the events between "
                        f"t={previous_time:.3f} and the restart are lost",
                    )
            if long_gap:
                if previous_time <= counting_start:
                    notes.add(
                        "possible-overcount",
                        t,
                        f"no sample for {gap:g} s across the start (t={previous_time:.3f} to t={t:.3f}): "
                        f"the {increment:g} counted may include events from before the start",
                    )
                elif v >= previous_value:
                    notes.add(
                        "gap",
                        t,
                        f"no sample for {gap:g} s before t={t:.3f}: counted in full, though a reset inside "
                        "it would go unseen had the counter climbed back above its old value",
                    )
        # The first interval ends after b_0, so a late sample (t <= b_0) lands in it.
        increments[max(0, bisect_left(bounds, t) - 1)].append(increment)
        previous = (t, v)

    if previous is not None and max_gap is not None:
        silent_for = end - previous[0]
        # Noted once: when the silence passes max_gap within this count, not at every later advance.
        if silent_for > max_gap and as_of - previous[0] <= max_gap:
            notes.add(
                "went-silent",
                previous[0],
                f"no sample since t={previous[0]:.3f} ({silent_for:g} s before the end): the series stopped "
                "(a pod gone?) or its scrapes fail; events after its last sample are not counted",
            )

    return SeriesIncrease(
        series=key,
        segment=segment,
        per_interval=tuple(math.fsum(one) for one in increments),
        resets=resets,
        born_in_window=born,
        counted_from_zero=counted_from_zero,
        last_sample=LastSample(timestamp=previous[0], value=previous[1]) if previous is not None else None,
        notes=notes.notes(),
    )


def _assemble(bounds: tuple[float, ...], outcomes: list[SeriesIncrease]) -> CounterIncreases:
    grouped: dict[Segment, list[SeriesIncrease]] = {}
    for outcome in outcomes:
        grouped.setdefault(outcome.segment, []).append(outcome)
    segments: dict[Segment, SegmentIncrease] = {}
    for segment in sorted(grouped):
        members = grouped[segment]
        segments[segment] = SegmentIncrease(
            segment=segment,
            per_interval=tuple(math.fsum(member.per_interval[i] for member in members) for i in range(len(bounds) - 1)),
            series_count=len(members),
            resets=sum(member.resets for member in members),
            born_in_window=sum(1 for member in members if member.born_in_window),
            counted_from_zero=math.fsum(member.counted_from_zero for member in members),
            notes=tuple(note for member in members for note in member.notes),
        )
    ordered = tuple(sorted(outcomes, key=lambda one: (one.segment, one.series)))
    return CounterIncreases(boundaries=bounds, segments=MappingProxyType(segments), series=ordered)
