"""Exact counter increments from raw Prometheus samples (checkout_gates.gates.counters).

Hand examples first (one per rule of the module docstring), then properties against a model of
counting processes: events observed by scrapes, resets right after a scrape (so that every reset
is observed), pods replaced by new series, late ingestion.
"""

from __future__ import annotations

import math
import random
import struct
from dataclasses import dataclass
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from checkout_gates.gates.counters import (
    CounterCursor,
    CounterIncreases,
    CounterSeries,
    LastSample,
    advance,
    counter_increase,
    counter_segment,
    increments_between,
    is_stale_marker,
    selector_range_seconds,
    series_labels,
    series_text,
)
from checkout_gates.gates.observations import SCALAR

T0 = 1_700_000_000.0  # the moment counting starts in the hand examples
STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


def counter(labels: dict[str, str], *samples: tuple[float, float]) -> CounterSeries:
    """A series with samples given relative to T0."""
    return CounterSeries(labels=labels, samples=[(T0 + t, v) for t, v in samples])


def kinds(result: CounterIncreases) -> list[str]:
    return [note.kind for note in result.notes]


# --------------------------------------------------------------------------- hand examples


def test_first_evaluation_counts_exactly_what_the_samples_prove() -> None:
    # increase(x[25s]) at T0+25 would see 12 -> 13 over 15 s and stretch it over the range (~1.7);
    # the increments since the baseline before start are 2 + 1.
    pod = counter({"pod": "canary-1"}, (-5, 10), (10, 12), (25, 13))
    result = counter_increase([pod], start=T0, end=T0 + 25)
    assert result.total == 3.0
    assert result.increase() == 3.0
    assert result.segments[SCALAR].series_count == 1
    assert result.notes == ()
    (only,) = result.series
    assert only.last_sample == LastSample(T0 + 25, 13)
    assert not only.born_in_window


def test_reset_mid_window_counts_the_restart_from_zero() -> None:
    pod = counter({"pod": "canary-1"}, (-15, 10), (0, 10), (15, 14), (30, 17), (45, 2), (60, 5))
    result = counter_increase([pod], start=T0, end=T0 + 60)
    assert result.total == 4 + 3 + 2 + 3
    assert result.segments[SCALAR].resets == 1
    assert result.notes == ()  # no gap: only the usual loss before the crash, not noted


def test_pod_replaced_by_a_new_series() -> None:
    old = counter({"pod": "canary-a"}, (-10, 100), (5, 103), (20, 106))  # then the pod is deleted
    new = counter({"pod": "canary-b"}, (35, 2), (50, 4), (65, 4))  # born after start, from 0
    result = counter_increase([old, new], start=T0, end=T0 + 80, max_gap=31)
    segment = result.segments[SCALAR]
    assert segment.increase == 6 + 4
    assert segment.series_count == 2
    assert segment.born_in_window == 1
    assert segment.counted_from_zero == 2
    assert [note.kind for note in segment.notes] == ["went-silent"]
    assert segment.notes[0].series == (("pod", "canary-a"),)
    assert 'pod="canary-a"' in str(segment.notes[0])
    assert not segment.possible_undercount and not segment.possible_overcount
    by_pod = {dict(one.series)["pod"]: one for one in result.series}
    assert by_pod["canary-a"].increase == 6 and not by_pod["canary-a"].born_in_window
    assert by_pod["canary-b"].increase == 4 and by_pod["canary-b"].born_in_window


def test_container_restart_in_the_same_pod_is_a_reset_of_the_same_series() -> None:
    pod = counter({"pod": "canary-a"}, (-10, 50), (5, 52), (20, 1), (35, 3))
    result = counter_increase([pod], start=T0, end=T0 + 40, max_gap=30)
    assert result.total == 2 + 1 + 2
    assert result.segments[SCALAR].resets == 1
    assert result.notes == ()


def test_labelled_child_created_at_its_first_event() -> None:
    adyen = counter({"provider": "adyen", "pod": "p"}, (-5, 40), (10, 41), (25, 41))
    klarna = counter({"provider": "klarna", "pod": "p"}, (25, 1))  # appears with its first event
    result = counter_increase([adyen, klarna], start=T0, end=T0 + 30, segment_by=["provider"])
    assert result.increase((("provider", "adyen"),)) == 1
    assert result.increase((("provider", "klarna"),)) == 1
    assert result.segments[(("provider", "klarna"),)].born_in_window == 1
    assert result.total == 2


def test_samples_exactly_at_start_are_the_baseline() -> None:
    before_and_at = counter({"pod": "a"}, (-15, 5), (0, 7), (15, 9))
    first_at_start = counter({"pod": "b"}, (0, 3), (15, 4))  # existed at start: its 3 are history
    result = counter_increase([before_and_at, first_at_start], start=T0, end=T0 + 15)
    assert result.total == 2 + 1
    assert result.segments[SCALAR].born_in_window == 0


def test_a_series_first_scraped_just_after_start_is_counted_from_zero() -> None:
    # The documented bias: created before start, first scraped after it, its 3 all counted.
    pod = counter({"pod": "a"}, (0.5, 3), (15.5, 4))
    result = counter_increase([pod], start=T0, end=T0 + 20)
    assert result.total == 4
    assert result.segments[SCALAR].counted_from_zero == 3


def test_samples_at_end_count_and_samples_after_end_are_ignored() -> None:
    pod = counter({"pod": "a"}, (-5, 0), (10, 2), (20, 5), (30, 9))
    assert counter_increase([pod], start=T0, end=T0 + 20).total == 5
    only_after_end = counter({"pod": "b"}, (25, 7))
    result = counter_increase([only_after_end], start=T0, end=T0 + 20)
    assert result.segments == {}  # did not exist in the window


def test_empty_input() -> None:
    result = counter_increase([], start=T0, end=T0 + 60)
    assert result.segments == {}
    assert result.series == ()
    assert result.total == 0.0
    assert result.increase() == 0.0
    assert result.increase((("provider", "adyen"),)) == 0.0
    assert result.per_interval() == (0.0,)
    assert result.notes == ()
    assert increments_between([], boundaries=(T0, T0 + 1, T0 + 2)).per_interval() == (0.0, 0.0)


def test_zero_length_window() -> None:
    pod = counter({"pod": "a"}, (-5, 1), (0, 2), (5, 3))
    assert counter_increase([pod], start=T0, end=T0).total == 0.0


def test_nan_inf_negative_and_stale_values_are_skipped_with_reasons() -> None:
    assert math.isnan(STALE) and is_stale_marker(STALE)
    assert not is_stale_marker(math.nan) and not is_stale_marker(0.0)
    pod = counter(
        {"pod": "a"},
        (-5, 10),
        (5, math.nan),
        (10, 12),
        (15, math.inf),
        (20, -3),
        (25, STALE),
        (30, 15),
        (35, math.nan),
    )
    result = counter_increase([pod], start=T0, end=T0 + 40)
    assert result.total == 5  # 10 -> 12 -> 15, each against the last usable sample
    notes = {note.kind: note for note in result.notes}
    assert set(notes) == {"non-finite-value", "negative-value", "stale-marker"}
    assert notes["non-finite-value"].occurrences == 3
    assert notes["non-finite-value"].first_at == T0 + 5
    assert "and 2 more" in notes["non-finite-value"].detail


def test_a_series_of_nothing_but_nan_is_a_series_with_no_count() -> None:
    pod = counter({"pod": "a"}, (5, math.nan), (10, math.nan))
    result = counter_increase([pod], start=T0, end=T0 + 20)
    segment = result.segments[SCALAR]
    assert segment.increase == 0 and segment.series_count == 1 and segment.born_in_window == 0
    assert result.series[0].last_sample is None
    assert kinds(result) == ["non-finite-value"]


def test_bad_timestamps_are_skipped() -> None:
    pod = CounterSeries(labels={"pod": "a"}, samples=[(T0 - 5, 1), (math.nan, 50), (T0 + 5, 3)])
    result = counter_increase([pod], start=T0, end=T0 + 10)
    assert result.total == 2
    assert kinds(result) == ["bad-timestamp"]


def test_unordered_samples_and_duplicates_are_handled_deterministically() -> None:
    pod = counter({"pod": "a"}, (15, 9), (-5, 5), (0, 6), (15, 9), (30, 11), (30, 12))
    result = counter_increase([pod], start=T0, end=T0 + 30)
    assert result.total == 6  # baseline 6 at T0, 9 at +15, the larger 12 at +30
    assert sorted(kinds(result)) == ["conflicting-duplicate", "unordered-samples"]


def test_a_label_set_repeated_in_the_input_is_merged() -> None:
    first = counter({"pod": "a"}, (-5, 1), (10, 4))
    second = counter({"pod": "a"}, (10, 4), (20, 6))
    result = counter_increase([first, second], start=T0, end=T0 + 20)
    assert result.total == 5
    assert result.segments[SCALAR].series_count == 1
    assert "repeated-series" in kinds(result)


def test_segments_use_the_named_labels_and_empty_for_missing_ones() -> None:
    card = counter({"method": "card", "pod": "a"}, (-5, 0), (10, 2))
    bare = counter({"pod": "b"}, (-5, 0), (10, 3))
    result = counter_increase([card, bare], start=T0, end=T0 + 10, segment_by=("method",))
    assert result.increase((("method", "card"),)) == 2
    assert result.increase((("method", ""),)) == 3
    assert list(result.segments) == [(("method", ""),), (("method", "card"),)]  # sorted
    assert counter_segment({"b": "2", "a": "1"}, ["b", "a", "b"]) == (("a", "1"), ("b", "2"))
    assert counter_segment({"a": "1"}, []) == SCALAR
    with pytest.raises(TypeError, match="string"):
        counter_segment({"a": "1"}, "a")
    with pytest.raises(TypeError, match="string"):
        counter_increase([card], start=T0, end=T0 + 1, segment_by="method")


def test_a_gap_without_reset_loses_nothing_but_is_noted() -> None:
    pod = counter({"pod": "a"}, (-5, 0), (10, 1), (100, 8), (115, 9))
    result = counter_increase([pod], start=T0, end=T0 + 115, max_gap=45)
    assert result.total == 9
    assert kinds(result) == ["gap"]
    segment = result.segments[SCALAR]
    assert not segment.possible_undercount and not segment.possible_overcount
    assert counter_increase([pod], start=T0, end=T0 + 115).notes == ()  # no max_gap, no gap notes


def test_a_reset_inside_a_gap_is_a_possible_undercount() -> None:
    pod = counter({"pod": "a"}, (-5, 0), (10, 5), (100, 2), (115, 3))
    result = counter_increase([pod], start=T0, end=T0 + 115, max_gap=45)
    assert result.total == 5 + 2 + 1
    assert kinds(result) == ["possible-undercount"]
    assert result.segments[SCALAR].possible_undercount
    assert "t=1700000010.000" in result.notes[0].detail  # where the lost events start


def test_a_gap_across_start_is_a_possible_overcount() -> None:
    pod = counter({"pod": "a"}, (-300, 0), (60, 40), (75, 41))
    result = counter_increase([pod], start=T0, end=T0 + 75, max_gap=45)
    assert result.total == 41
    assert kinds(result) == ["possible-overcount"]
    assert result.segments[SCALAR].possible_overcount


def test_non_integer_counters_are_summed_exactly() -> None:
    seconds = counter({"pod": "a"}, (-5, 0.1), (10, 0.3), (20, 0.35), (30, 0.05))
    result = counter_increase([seconds], start=T0, end=T0 + 30)
    assert result.total == pytest.approx(0.2 + 0.05 + 0.05)


def test_intervals_attribute_an_increment_to_the_sample_that_observes_it() -> None:
    pod = counter({"pod": "a"}, (-5, 0), (10, 2), (25, 5), (40, 6))
    result = increments_between([pod], boundaries=(T0, T0 + 20, T0 + 25, T0 + 30, T0 + 40))
    # 10 -> 25 straddles +20: its 3 go to (20, 25], the interval of the sample at +25.
    assert result.per_interval() == (2.0, 3.0, 0.0, 1.0)
    assert result.increase() == counter_increase([pod], start=T0, end=T0 + 40).total
    assert result.intervals == 4
    empty_interval = increments_between([pod], boundaries=(T0, T0 + 25, T0 + 25, T0 + 40))
    assert empty_interval.per_interval() == (5.0, 0.0, 1.0)


def test_cursor_advances_add_up_and_take_late_samples() -> None:
    start_cursor = CounterCursor.begin(T0)
    first_answer = [counter({"pod": "a"}, (-5, 10), (10, 12))]  # the +15 sample not ingested yet
    first = advance(start_cursor, first_answer, interval_ends=[T0 + 15])
    assert first.increases.per_interval() == (2.0,)
    assert first.cursor.as_of == T0 + 15
    assert first.cursor.last_seen[series_labels({"pod": "a"})] == LastSample(T0 + 10, 12)
    second_answer = [
        counter({"pod": "a"}, (10, 12), (15, 13), (25, 1)),  # late +15, then a reset
        counter({"pod": "b"}, (20, 4)),  # a new pod
    ]
    second = advance(first.cursor, second_answer, interval_ends=[T0 + 22, T0 + 30])
    assert second.increases.per_interval() == (1.0 + 4.0, 1.0)  # the late +15 lands in the first
    assert second.increases.segments[SCALAR].resets == 1
    assert second.increases.segments[SCALAR].born_in_window == 1
    everything = [counter({"pod": "a"}, (-5, 10), (10, 12), (15, 13), (25, 1)), counter({"pod": "b"}, (20, 4))]
    whole = counter_increase(everything, start=T0, end=T0 + 30).total
    assert first.increases.total + second.increases.total == whole == 2 + 1 + 1 + 4
    assert start_cursor.last_seen == {}  # cursors are values: advancing does not change the old one


def test_a_late_pre_start_sample_of_a_known_series_moves_the_baseline_only() -> None:
    seen = advance(CounterCursor.begin(T0), [counter({"pod": "a"}, (-20, 5))], interval_ends=[T0 + 2])
    late = advance(seen.cursor, [counter({"pod": "a"}, (-20, 5), (-5, 9), (10, 10))], interval_ends=[T0 + 15])
    assert seen.increases.total + late.increases.total == 1  # 5 -> 9 happened before start


def test_went_silent_is_noted_once_across_advances() -> None:
    pod = counter({"pod": "a"}, (-5, 0), (10, 1))
    cursor = CounterCursor.begin(T0)
    silent_notes = []
    for until in (20, 40, 60, 80):
        moved = advance(cursor, [pod], interval_ends=[T0 + until], max_gap=30)
        silent_notes += [note for note in moved.increases.notes if note.kind == "went-silent"]
        cursor = moved.cursor
    assert len(silent_notes) == 1


def test_programming_errors_raise() -> None:
    with pytest.raises(ValueError, match="decrease"):
        counter_increase([], start=T0 + 1, end=T0)
    with pytest.raises(ValueError, match="finite"):
        counter_increase([], start=math.nan, end=T0)
    with pytest.raises(ValueError, match="two boundaries"):
        increments_between([], boundaries=(T0,))
    with pytest.raises(ValueError, match="max_gap"):
        counter_increase([], start=T0, end=T0 + 1, max_gap=0)
    with pytest.raises(ValueError, match="at least one"):
        advance(CounterCursor.begin(T0), [], interval_ends=[])
    with pytest.raises(ValueError, match="decrease"):
        advance(CounterCursor.begin(T0), [], interval_ends=[T0 - 1])
    with pytest.raises(ValueError, match="finite"):
        CounterCursor.begin(math.inf)


def test_selector_range_reaches_before_start() -> None:
    assert selector_range_seconds(T0, T0 + 100.2, lookback=45) == 146
    assert selector_range_seconds(T0, T0, lookback=0.5) == 1
    with pytest.raises(ValueError):
        selector_range_seconds(T0, T0 - 1, lookback=45)
    with pytest.raises(ValueError):
        selector_range_seconds(T0, T0 + 1, lookback=0)


def test_series_text_is_bounded() -> None:
    assert series_text((("pod", "a"), ("provider", "adyen"))) == '{pod="a", provider="adyen"}'
    long = series_text(tuple((f"label{i}", "x" * 20) for i in range(30)))
    assert len(long) == 200 and long.endswith("...}")


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class ModelSeries:
    labels: dict[str, str]
    samples: list[tuple[float, float]]  # what Prometheus scraped
    observed_events: list[int]  # the events each sample is the first to see (just before it)


@dataclass(frozen=True)
class Model:
    series: list[ModelSeries]
    start: float
    end: float
    scrape_times: list[float]

    def counter_series(self) -> list[CounterSeries]:
        return [CounterSeries(labels=one.labels, samples=list(one.samples)) for one in self.series]

    def true_events(self, start: float, end: float, provider: str | None = None) -> int:
        return sum(
            events
            for one in self.series
            if provider is None or one.labels["provider"] == provider
            for (t, _), events in zip(one.samples, one.observed_events, strict=True)
            if start < t <= end
        )


@st.composite
def models(draw: st.DrawFn) -> Model:
    """Counting processes scraped at shared times (each series with its own phase).

    Every reset happens right after a scrape and the restarted counter is below the last value
    before the crash (or that value was 0), so every reset is observed and nothing is lost: the
    exact count must equal the true number of events.  Series may be born late (a new pod, a new
    labelled child: its first sample sees all its events) and may stop (a deleted pod).
    """
    intervals = draw(st.lists(st.floats(1.0, 60.0), min_size=1, max_size=30))
    scrape_times = [T0]
    for dt in intervals:
        scrape_times.append(round(scrape_times[-1] + dt, 3))  # Prometheus keeps milliseconds
    n = len(scrape_times)
    series: list[ModelSeries] = []
    for index in range(draw(st.integers(1, 4))):
        born = draw(st.integers(0, n - 1))
        dies = draw(st.integers(born, n - 1))
        phase = draw(st.sampled_from([0.0, 0.125, 0.25, 0.5]))
        history = draw(st.integers(0, 10_000)) if born == 0 else 0  # events long before start
        value = float(history)
        samples: list[tuple[float, float]] = []
        observed: list[int] = []
        for k in range(born, dies + 1):
            events = draw(st.integers(0, 20))
            if k > born and draw(st.integers(0, 4)) == 0:  # the process restarts right after a scrape
                if value > 0:
                    events %= int(value)  # observed: the restarted counter is below the old value
                value = float(events)
            else:
                value += events
            samples.append((scrape_times[k] + phase, value))
            observed.append(events + (history if k == born else 0))
        labels = {"pod": f"pod-{index}", "provider": draw(st.sampled_from(["adyen", "klarna"]))}
        series.append(ModelSeries(labels=labels, samples=samples, observed_events=observed))

    # Start after every pre-existing series' first sample (history is before start by definition).
    first_possible = T0 + 0.5
    last = scrape_times[-1] + 0.5
    sample_times = sorted({t for one in series for t, _ in one.samples if t >= first_possible})
    start = draw(st.floats(first_possible, max(first_possible, last)) | st.sampled_from(sample_times or [last]))
    later = [t for t in sample_times if t >= start]
    end = draw(st.floats(start, last + 30.0) | st.sampled_from(later or [start]))
    return Model(series=series, start=start, end=end, scrape_times=scrape_times)


# --------------------------------------------------------------------------- properties


@given(models())
@settings(max_examples=400, deadline=None)
def test_the_count_is_the_true_number_of_events_after_start(model: Model) -> None:
    result = counter_increase(model.counter_series(), start=model.start, end=model.end, segment_by=["provider"])
    assert result.total == model.true_events(model.start, model.end)
    for provider in ("adyen", "klarna"):
        segment = (("provider", provider),)
        assert result.increase(segment) == model.true_events(model.start, model.end, provider)
    for one in result.series:
        assert one.increase >= 0 and one.increase == int(one.increase)
    assert result.notes == ()  # no max_gap: nothing to note about clean scrapes


@given(models(), st.lists(st.floats(0.0, 1.0), max_size=6), st.booleans())
@settings(max_examples=300, deadline=None)
def test_interval_sums_equal_the_window_and_each_interval_its_own_window(
    model: Model, fractions: list[float], on_scrapes: bool
) -> None:
    inner = [model.start + f * (model.end - model.start) for f in fractions]
    if on_scrapes:  # boundaries exactly on scrape times, where attribution is exact
        inner = [t for t in model.scrape_times if model.start <= t <= model.end][: len(fractions)]
    boundaries = [model.start, *sorted(inner), model.end]
    series = model.counter_series()
    split = increments_between(series, boundaries=boundaries, segment_by=["provider"], max_gap=40.0)
    whole = counter_increase(series, start=model.start, end=model.end, segment_by=["provider"], max_gap=40.0)
    assert set(split.segments) == set(whole.segments)
    for segment, one in split.segments.items():
        assert len(one.per_interval) == len(boundaries) - 1
        assert math.fsum(one.per_interval) == whole.segments[segment].increase
    for i, (left, right) in enumerate(pairwise(boundaries)):
        alone = counter_increase(series, start=left, end=right, segment_by=["provider"])
        for segment in split.segments:
            assert split.per_interval(segment)[i] == alone.increase(segment)
        assert math.fsum(split.per_interval(s)[i] for s in split.segments) == model.true_events(left, right)


@given(models(), st.randoms(use_true_random=False))
@settings(max_examples=300, deadline=None)
def test_order_duplicates_splits_and_nan_do_not_change_the_count(model: Model, rng: random.Random) -> None:
    clean = counter_increase(model.counter_series(), start=model.start, end=model.end, segment_by=["provider"])
    messy: list[CounterSeries] = []
    for one in model.series:
        samples = list(one.samples)
        samples += rng.sample(samples, k=rng.randint(0, len(samples)))  # exact duplicates
        samples += [(rng.choice(samples)[0] + 0.001, math.nan) for _ in range(rng.randint(0, 2))]
        samples += [(rng.choice(samples)[0] + 0.002, STALE) for _ in range(rng.randint(0, 1))]
        rng.shuffle(samples)
        cut = rng.randint(0, len(samples))  # one label set split over two entries
        messy.append(CounterSeries(labels=dict(one.labels), samples=samples[:cut]))
        messy.append(CounterSeries(labels=dict(reversed(list(one.labels.items()))), samples=samples[cut:]))
    rng.shuffle(messy)
    result = counter_increase(messy, start=model.start, end=model.end, segment_by=["provider"])
    assert result.total == clean.total
    assert {s: one.increase for s, one in result.segments.items()} == {
        s: one.increase for s, one in clean.segments.items()
    }
    assert [(one.series, one.increase) for one in result.series] == [(one.series, one.increase) for one in clean.series]


@given(models(), st.lists(st.floats(0.0, 1.0), min_size=1, max_size=6), st.data())
@settings(max_examples=300, deadline=None)
def test_advancing_a_cursor_with_short_late_answers_adds_up_to_the_window(
    model: Model, fractions: list[float], data: st.DataObject
) -> None:
    """Each answer reaches back a lookback before the cursor and misses what is not yet ingested."""
    ends = sorted(model.start + f * (model.end - model.start) for f in fractions)
    ends[-1] = model.end
    lookback = 2 * 60.0 + 1.0  # two of the longest scrape intervals, plus the ingestion lag
    cursor = CounterCursor.begin(model.start)
    counted = 0.0
    for i, until in enumerate(ends):
        lag = 0.0 if i == len(ends) - 1 else data.draw(st.sampled_from([0.0, 0.3, 0.9]))
        answer = [
            CounterSeries(
                labels=one.labels,
                samples=[(t, v) for t, v in one.samples if cursor.as_of - lookback < t <= until - lag],
            )
            for one in model.series
        ]
        moved = advance(cursor, answer, interval_ends=[until], segment_by=["provider"])
        counted += moved.increases.total
        cursor = moved.cursor
    assert counted == model.true_events(model.start, model.end)
    assert counted == counter_increase(model.counter_series(), start=model.start, end=model.end).total
