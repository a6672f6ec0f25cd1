"""The replay source: recorded window values by time, validated line by line."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from checkout_gates.gates.observations import Sample
from checkout_gates.metrics.recording import RecordingError, RecordingSource

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
ADYEN_CARD = (("method", "card"), ("provider", "adyen"))


def line(**fields: Any) -> str:
    base: dict[str, Any] = {"t": "2026-11-27T10:00:00Z", "gate": "auth-approval", "variant": "canary"}
    base.update(fields)
    return json.dumps({key: value for key, value in base.items() if value is not None})


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "recording.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_load_and_read_back(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        line(labels={"provider": "adyen", "method": "card"}, value=0.97, samples=1200, good=1164, total=1200),
        line(variant="stable", labels={"provider": "adyen", "method": "card"}, good=9900, total=10000),
        line(t="2026-11-27T10:00:30Z", labels={"provider": "adyen", "method": "card"}, good=0, total=0),
        line(gate="p99-latency", labels={}, value=0.42, samples=1300, window="30s"),
        "",
    )
    source = RecordingSource.load(path)
    assert source.times() == [T0, T0 + timedelta(seconds=30)]
    assert source.gates == ("auth-approval", "p99-latency")

    readings = source.readings_at(T0)
    auth = readings["auth-approval"]
    assert auth.error is None
    assert auth.canary[ADYEN_CARD] == Sample(value=0.97, samples=1200, good=1164, total=1200)
    assert auth.stable[ADYEN_CARD] == Sample(value=0.99, samples=10000, good=9900, total=10000)
    p99 = readings["p99-latency"]
    assert p99.canary[()] == Sample(value=0.42, samples=1300)
    assert p99.stable == {}
    assert p99.window_seconds == 30.0

    later = source.readings_at(T0 + timedelta(seconds=30))
    assert later["auth-approval"].canary[ADYEN_CARD] == Sample(value=None, samples=0, good=0, total=0)
    # A gate with nothing at this time reads as no data, like an empty query result.
    assert later["p99-latency"].canary == {} and later["p99-latency"].error is None


def test_times_are_normalised_to_utc(tmp_path: Path) -> None:
    source = RecordingSource.load(write(tmp_path, line(t="2026-11-27T11:00:00+01:00", value=1.0)))
    assert source.times() == [T0]
    assert source.readings_at(T0.astimezone(timezone(timedelta(hours=-5))))["auth-approval"].canary
    assert source.readings_at(T0.replace(tzinfo=None))["auth-approval"].canary


def test_error_lines_become_reading_errors(tmp_path: Path) -> None:
    source = RecordingSource.load(
        write(tmp_path, json.dumps({"t": "2026-11-27T10:00:00Z", "gate": "auth-approval", "error": "timeout"}))
    )
    reading = source.readings_at(T0)["auth-approval"]
    assert reading.error == "timeout"
    assert reading.canary == {}


def test_unknown_time_reads_as_no_data(tmp_path: Path) -> None:
    source = RecordingSource.load(write(tmp_path, line(value=1.0)))
    readings = source.readings_at(T0 + timedelta(hours=1))
    assert readings["auth-approval"].canary == {}
    assert readings["auth-approval"].stable == {}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{not json", "line 1: not JSON"),
        ("[1, 2]", "line 1: expected a JSON object, found list"),
        (line(t="2026-11-27T10:00:00"), "line 1: field 't': Input should have timezone info"),
        (line(t="yesterday"), "line 1: field 't'"),
        (line(gate=""), "line 1: field 'gate'"),
        (line(variant="blue"), "line 1: field 'variant': Input should be 'canary' or 'stable'"),
        (line(variant=None, value=1.0), "variant is required"),
        (line(samples=-1), "line 1: field 'samples': Input should be greater than or equal to 0"),
        (line(good=5), "good and total go together"),
        (line(good=5, total=10, value=0.9), "value 0.9 disagrees with good/total = 0.5"),
        (line(good=0, total=0, value=0.9), "disagrees with good/total = null (total is 0)"),
        (line(labels={"provider": 3}), "line 1: field 'labels.provider': Input should be a valid string"),
        (line(colour="red"), "line 1: field 'colour': unknown field"),
        (line(window="often"), "line 1: field 'window'"),
        ('{"t": "2026-11-27T10:00:00Z", "gate": "g", "variant": "canary", "value": NaN}', "NaN is not a value"),
        ('{"t": "2026-11-27T10:00:00Z", "gate": "g", "error": "x", "value": 1}', "carries no value"),
    ],
)
def test_bad_lines_are_named(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(RecordingError) as error:
        RecordingSource.load(write(tmp_path, text))
    assert expected in str(error.value)
    assert str(tmp_path / "recording.jsonl") in str(error.value)


def test_every_bad_line_is_reported_with_its_number(tmp_path: Path) -> None:
    path = write(tmp_path, line(value=1.0), line(variant="blue"), "", line(samples="many"))
    with pytest.raises(RecordingError) as error:
        RecordingSource.load(path)
    message = str(error.value)
    assert "2 bad lines" in message
    assert "line 2: field 'variant'" in message
    assert "line 4: field 'samples'" in message


def test_contradictions_are_refused(tmp_path: Path) -> None:
    error_line = json.dumps({"t": "2026-11-27T10:00:00Z", "gate": "auth-approval", "error": "down"})
    cases = [
        ([line(value=1.0), line(value=0.5)], "line 2: duplicate of line 1"),
        ([line(value=1.0), error_line], "has samples (line 1) and an error"),
        ([error_line, line(value=1.0)], "has an error (line 1) and samples"),
        ([line(value=1.0, window="30s"), line(variant="stable", value=1.0, window="1m")], "differs from line 1"),
    ]
    for lines, expected in cases:
        with pytest.raises(RecordingError, match=re.escape(expected)):
            RecordingSource.load(write(tmp_path, *lines))


def test_missing_or_empty_file(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="cannot read the recording"):
        RecordingSource.load(tmp_path / "absent.jsonl")
    with pytest.raises(RecordingError, match="no lines"):
        RecordingSource.load(write(tmp_path, ""))
