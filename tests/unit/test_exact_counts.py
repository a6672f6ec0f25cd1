"""`counts: exact` (issue 13): a sequential gate's counters read as raw samples and counted
client-side, every increment, a reset as a restart from 0, nothing extrapolated; the spec refuses
it where it cannot mean anything."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from checkout_gates.api.resource import CheckoutRollout, parse_rollout
from checkout_gates.api.spec import PrometheusSpec
from checkout_gates.metrics import prometheus
from checkout_gates.metrics.prometheus import PrometheusSource

from .rollouts import rollout_doc

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
END = AT.timestamp()
WINDOW = 120.0
SELECTOR = 'payment_authorizations_total{variant="{{variant}}"%s}'
GATE = {
    "name": "auth-approval",
    "ratio": {"good": SELECTOR % ', outcome="approved"', "total": SELECTOR % ""},
    "segmentBy": ["provider"],
    "compare": {"maxDrop": "1pp"},
    "method": "sequential",
    "counts": "exact",
}


def rollout(**gate: Any) -> CheckoutRollout | list[Any]:
    document = rollout_doc([{"setWeight": 5}, {"gate": {"pass": ["auth-approval"], "window": "1m"}}])
    document["spec"]["gates"] = [{**GATE, **gate}]
    return parse_rollout(document)


def matrix(*series: tuple[dict[str, str], list[tuple[float, float]]]) -> bytes:
    result = [{"metric": labels, "values": [[t, str(v)] for t, v in samples]} for labels, samples in series]
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}}).encode()


def scrapes(values: list[float], *, first: float = END - WINDOW - 30) -> list[tuple[float, float]]:
    """One sample every 15 s from ``first`` (30 s before the window: the baseline is in the answer)."""
    return [(first + 15 * i, v) for i, v in enumerate(values)]


async def read(monkeypatch: pytest.MonkeyPatch, answers: dict[tuple[str, bool], bytes]) -> Any:
    cro = rollout()
    assert isinstance(cro, CheckoutRollout)
    asked: list[str] = []

    async def get(url: str) -> prometheus._Answer:
        asked.append(parse_qs(urlsplit(url).query)["query"][0])
        canary = "canary" in url
        approved = "approved" in url
        return prometheus._Answer(200, "application/json", answers[("canary" if canary else "stable", approved)])

    source = PrometheusSource(PrometheusSpec(address="http://127.0.0.1:1"), dedupe_seconds=0)
    monkeypatch.setattr(source, "_get", get)
    try:
        gate = cro.spec.gates[0]
        reading = await source.read_gate(
            gate, spec=cro.spec, namespace="payments", name="checkout", window_seconds=WINDOW, at=AT
        )
    finally:
        await source.aclose()
    return reading, asked


async def test_counts_every_increment_since_the_window_began_across_a_reset_and_a_pod_restart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    adyen = {"provider": "adyen", "pod": "canary-1"}
    # pod canary-1: 100 before the window, +10, +10, restart (drop to 4: 4 events since), +6, +10 ...
    canary_total = matrix(
        (adyen, scrapes([90, 100, 110, 120, 4, 10, 20, 30, 40, 50, 60])),
        # a second pod born inside the window: its first value counts from 0
        ({"provider": "adyen", "pod": "canary-2"}, scrapes([3, 8, 13], first=END - 40)),
    )
    canary_good = matrix(
        (adyen, scrapes([89, 99, 109, 119, 4, 10, 20, 30, 40, 50, 59])),
    )
    stable = matrix(({"provider": "adyen", "pod": "stable-1"}, scrapes([1000 + 100 * i for i in range(11)])))
    reading, asked = await read(
        monkeypatch,
        {
            ("canary", False): canary_total,
            ("canary", True): canary_good,
            ("stable", False): stable,
            ("stable", True): stable,
        },
    )
    assert reading.error is None, reading.error
    (segment,) = reading.canary
    sample = reading.canary[segment]
    # canary-1 from its last sample at or before the window's start (110 at END-120): +10, then the
    # restart (4 events since 0), +6 and five +10; canary-2, born in the window, from 0: 13.
    assert sample.total == 10 + 4 + 6 + 5 * 10 + 13
    assert sample.good == 10 + 4 + 6 + 4 * 10 + 9
    assert reading.stable[segment].total == 8 * 100
    # The range reaches 5 minutes before the window, so every live series has its baseline.
    assert set(asked) == {
        f'payment_authorizations_total{{variant="{variant}"{outcome}}}[420s]'
        for variant in ("canary", "stable")
        for outcome in ("", ', outcome="approved"')
    }


def test_exact_counts_are_for_sequential_gates_on_bare_selectors() -> None:
    threshold = rollout(method="threshold")
    assert isinstance(threshold, list) and "counts exact is for method sequential" in str(threshold[0])
    promql = rollout(ratio={"good": "sum(increase(x_total[5m]))", "total": "x_total"})
    assert isinstance(promql, list) and "bare selector" in str(promql[0])
    binary = rollout(ratio={"good": 'x_total{a="b"} or on() y_total{c="d"}', "total": "x_total"})
    assert isinstance(binary, list)
    assert isinstance(rollout(), CheckoutRollout)


async def test_a_long_window_is_read_in_chunks_that_add_up_to_the_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 25-minute window: three queries per counter (each answer bounded), each counted from its
    own baseline; the sum is every increment of the window, across a restart at a chunk's edge."""
    window = 1500.0
    first = END - window - 300
    values = [3 * i for i in range(int((window + 300) / 15) + 1)]
    restart = len(values) // 2
    values = values[:restart] + [3 * (i - restart) + 2 for i in range(restart, len(values))]
    samples = [(first + 15 * i, float(v)) for i, v in enumerate(values)]
    truth = 0.0
    previous = next(v for t, v in reversed(samples) if t <= END - window)
    for t, v in samples:
        if END - window < t <= END:
            truth += v - previous if v >= previous else v
            previous = v
    cro = rollout()
    assert isinstance(cro, CheckoutRollout)
    asked: list[tuple[str, str]] = []

    async def get(url: str) -> prometheus._Answer:
        query = parse_qs(urlsplit(url).query)
        asked.append((query["query"][0], query["time"][0]))
        at, reach = float(query["time"][0]), int(query["query"][0].rsplit("[", 1)[1].removesuffix("s]"))
        inside = [(t, v) for t, v in samples if at - reach < t <= at]
        return prometheus._Answer(200, "application/json", matrix(({"provider": "adyen", "pod": "p"}, inside)))

    source = PrometheusSource(PrometheusSpec(address="http://127.0.0.1:1"), dedupe_seconds=0)
    monkeypatch.setattr(source, "_get", get)
    try:
        reading = await source.read_gate(
            cro.spec.gates[0], spec=cro.spec, namespace="payments", name="checkout", window_seconds=window, at=AT
        )
    finally:
        await source.aclose()
    assert reading.error is None, reading.error
    (segment,) = reading.canary
    assert reading.canary[segment].total == truth
    assert len({time for _, time in asked}) == 3, "three chunks of at most 10 minutes"
    assert all(query.endswith(("[900s]", "[600s]")) for query, _ in asked), "each reaches 5 minutes back, in minutes"


async def test_a_pod_that_ended_before_the_window_is_no_segment_of_zero_traffic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its samples are in the answer (the range reaches back); it counted nothing in the window, so
    its segment is absent, not a segment with no traffic that would be Inconclusive all step."""
    live = {"provider": "adyen", "pod": "canary-2"}
    dead = {"provider": "klarna", "pod": "canary-1"}
    answer = matrix((live, scrapes([0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100])), (dead, [(END - 250, 7.0)]))
    stable = matrix(({"provider": "adyen", "pod": "stable-1"}, scrapes([100 * i for i in range(11)])))
    reading, _ = await read(
        monkeypatch,
        {("canary", False): answer, ("canary", True): answer, ("stable", False): stable, ("stable", True): stable},
    )
    assert reading.error is None, reading.error
    assert list(reading.canary) == [(("provider", "adyen"),)]


def test_a_samples_query_is_refused_with_exact_counts_exposure_is_the_counter() -> None:
    problems = rollout(
        count='dup_total{variant="{{variant}}"}', ratio=None, samples="sum(increase(x_total[{{window}}]))"
    )
    assert isinstance(problems, list) and "give the requests served as a counter selector in exposure" in str(problems)


async def test_a_users_instant_query_ending_in_a_range_is_still_an_error_not_raw_samples(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Raw samples are parsed only for `counts: exact`, never by the look of a query."""
    body = matrix(({"pod": "p"}, [(END - 10, 3.0), (END, 4.0)]))
    source = PrometheusSource(PrometheusSpec(address="http://127.0.0.1:1"), dedupe_seconds=0)

    async def get(url: str) -> prometheus._Answer:
        return prometheus._Answer(200, "application/json", body)

    monkeypatch.setattr(source, "_get", get)
    try:
        with pytest.raises(prometheus.QueryError, match="range vector"):
            await source.query("process_resident_memory_bytes[300s]", at=AT)
    finally:
        await source.aclose()


async def test_complete_chunks_are_counted_once_and_later_reads_ask_only_for_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Evidence carried since the rollout began is read in chunks; chunks well in the past do not
    change, so their counts are kept: an evaluation asks only for the time since the last one."""
    since = datetime.fromtimestamp(END - 1500.0, tz=UTC)
    first = END - 1800.0
    samples = [(first + 15 * i, float(3 * i)) for i in range(int(1900 / 15))]
    cro = rollout()
    assert isinstance(cro, CheckoutRollout)
    asked: list[str] = []

    async def get(url: str) -> prometheus._Answer:
        query = parse_qs(urlsplit(url).query)
        asked.append(query["time"][0])
        at, reach = float(query["time"][0]), int(query["query"][0].rsplit("[", 1)[1].removesuffix("s]"))
        inside = [(t, v) for t, v in samples if at - reach < t <= at]
        return prometheus._Answer(200, "application/json", matrix(({"provider": "adyen", "pod": "p"}, inside)))

    now = [END + 30.0]
    source = PrometheusSource(PrometheusSpec(address="http://127.0.0.1:1"), dedupe_seconds=0, clock=lambda: now[0])
    monkeypatch.setattr(source, "_get", get)

    async def at(seconds: float) -> Any:
        when = datetime.fromtimestamp(END + seconds, tz=UTC)
        return await source.read_gate(
            cro.spec.gates[0],
            spec=cro.spec,
            namespace="payments",
            name="checkout",
            window_seconds=(when - since).total_seconds(),
            at=when,
            since=since,
        )

    try:
        whole = await at(0.0)
        assert len(set(asked)) == 3
        asked.clear()
        now[0] = END + 90.0
        later = await at(60.0)
    finally:
        await source.aclose()
    assert whole.error is None and later.error is None
    assert [float(t) for t in asked] == [END + 60.0] * 4, "only the chunk that was not complete, once per counter"
    (segment,) = later.canary
    steps = later.canary[segment].steps
    assert steps is not None
    assert later.canary[segment].total == sum(steps.exposure) == 3 * (60 + 1500) / 15


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        (datetime(1970, 1, 1, tzinfo=UTC), "more than 20,000: retry the rollout to start a new test"),
        (datetime(2100, 1, 1, tzinfo=UTC), None),
    ],
    ids=["forged-far-past", "future"],
)
async def test_an_evidence_start_from_a_forged_or_odd_status_is_bounded(
    monkeypatch: pytest.MonkeyPatch, since: datetime, expected: str | None
) -> None:
    """status.evidenceSince is the operator's, but a status can be edited: decades of evidence are
    an Inconclusive reading that says what to do (no millions of bounds, no query sent); a start in
    the future reads one interval before the instant, not a negative window."""
    cro = rollout()
    assert isinstance(cro, CheckoutRollout)
    asked: list[str] = []

    async def get(url: str) -> prometheus._Answer:
        asked.append(url)
        return prometheus._Answer(200, "application/json", matrix())

    source = PrometheusSource(PrometheusSpec(address="http://127.0.0.1:1"), dedupe_seconds=0)
    monkeypatch.setattr(source, "_get", get)
    try:
        reading = await source.read_gate(
            cro.spec.gates[0],
            spec=cro.spec,
            namespace="payments",
            name="checkout",
            window_seconds=60,
            at=AT,
            since=since,
        )
    finally:
        await source.aclose()
    if expected is not None:
        assert reading.error is not None and expected in reading.error
        assert asked == []
    else:
        assert reading.error is None, reading.error
        assert reading.window_seconds == 1.0
