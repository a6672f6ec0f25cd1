"""Single flight: identical queries at the same evaluation moment are sent once, answers and errors shared."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from checkout_gates.api.spec import CheckoutRolloutSpec, Gate, PrometheusSpec
from checkout_gates.metrics.prometheus import SETTLE_SECONDS, PrometheusSource, QueryError, Series
from checkout_gates.metrics.singleflight import SingleFlight, moment
from tests.unit.rollouts import rollout_doc


class Clock:
    def __init__(self, now: float = 1_700_000_000.25) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_concurrent_callers_share_one_run() -> None:
    flights: SingleFlight[int] = SingleFlight()
    runs = 0
    release = asyncio.Event()

    async def call() -> int:
        nonlocal runs
        runs += 1
        await release.wait()
        return 42

    waiting = [asyncio.create_task(flights.do("q", call)) for _ in range(50)]
    await asyncio.sleep(0)
    release.set()
    assert await asyncio.gather(*waiting) == [42] * 50
    assert runs == 1
    assert (flights.stats.calls, flights.stats.flights, flights.stats.shared) == (50, 1, 49)
    assert len(flights) == 0  # in flight only: nothing kept


async def test_different_keys_do_not_share() -> None:
    flights: SingleFlight[str] = SingleFlight()

    async def echo(text: str) -> str:
        await asyncio.sleep(0.01)
        return text

    results = await asyncio.gather(*(flights.do(k, lambda k=k: echo(k)) for k in ("a", "b", "a", "c", "b")))  # type: ignore[misc]
    assert results == ["a", "b", "a", "c", "b"]
    assert flights.stats.flights == 3


async def test_an_error_is_shared_by_every_caller_of_the_flight() -> None:
    flights: SingleFlight[int] = SingleFlight()
    runs = 0

    async def failing() -> int:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.01)
        raise QueryError("Prometheus rejected the query (HTTP 400, bad_data): parse error")

    results = await asyncio.gather(*(flights.do("q", failing) for _ in range(5)), return_exceptions=True)
    assert runs == 1
    assert all(isinstance(r, QueryError) and "parse error" in str(r) for r in results)


async def test_a_cancelled_caller_does_not_cancel_the_others() -> None:
    flights: SingleFlight[int] = SingleFlight()
    release = asyncio.Event()

    async def call() -> int:
        await release.wait()
        return 7

    first = asyncio.create_task(flights.do("q", call))
    second = asyncio.create_task(flights.do("q", call))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    release.set()
    assert await second == 7
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_finished_flight_is_kept_until_its_moment_ends() -> None:
    clock = Clock(100.0)
    flights: SingleFlight[int] = SingleFlight(clock)
    runs = 0

    async def call() -> int:
        nonlocal runs
        runs += 1
        return runs

    assert await flights.do("q", call, keep_until=101.0) == 1
    clock.now = 100.9
    assert await flights.do("q", call, keep_until=101.0) == 1  # same moment: the kept answer
    clock.now = 101.0
    assert await flights.do("q", call, keep_until=102.0) == 2  # the moment ended: asked again
    assert await flights.do("q", call) == 2  # still within the second flight's keep
    clock.now = 103.0
    assert await flights.do("other", call) == 3
    assert len(flights) == 0  # pruned: neither kept past its moment


def test_moment_is_the_bucket_start_or_the_given_time() -> None:
    clock = Clock(1_700_000_007.9)
    assert moment(None, 1.0, clock) == datetime.fromtimestamp(1_700_000_007, tz=UTC)
    assert moment(None, 5.0, clock) == datetime.fromtimestamp(1_700_000_005, tz=UTC)
    at = datetime(2024, 6, 1, 12, 0, 0, 500000)
    assert moment(at, 1.0, clock) == at.replace(tzinfo=UTC)


class FakeServer:
    """Stands in for the HTTP round trip of PrometheusSource: counts what reaches it."""

    def __init__(self, fail: bool = False) -> None:
        self.asked: list[tuple[str, datetime | None]] = []
        self.fail = fail

    async def __call__(self, promql: str, at: datetime | None) -> list[Series]:
        self.asked.append((promql, at))
        await asyncio.sleep(0.005)
        if self.fail:
            raise QueryError("Prometheus rejected the query (HTTP 400, bad_data): 1:5: parse error", query=promql)
        return [Series(labels={"provider": "adyen"}, value=float(len(self.asked)))]


def _source(monkeypatch: pytest.MonkeyPatch, server: FakeServer, clock: Clock, dedupe: float) -> PrometheusSource:
    source = PrometheusSource(PrometheusSpec(address="http://127.0.0.1:1"), dedupe_seconds=dedupe, clock=clock)
    monkeypatch.setattr(source, "_query_once", server)
    return source


async def test_source_sends_identical_queries_once_per_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, server = Clock(1_700_000_000.2), FakeServer()
    async with _source(monkeypatch, server, clock, 1.0) as source:
        answers = await asyncio.gather(*(source.query("sum(up)") for _ in range(100)), source.query("sum(down)"))
        assert [a[0].value for a in answers[:100]] == [answers[0][0].value] * 100
        clock.now += 0.7  # same bucket, after the flight landed: the kept answer
        assert (await source.query("sum(up)"))[0].value == answers[0][0].value
        clock.now += 0.2  # the next bucket: asked again, evaluated at that bucket's start
        await source.query("sum(up)")
        # Every instant is SETTLE_SECONDS old: scrapes before it are stored by then.
        assert server.asked == [
            ("sum(up)", datetime.fromtimestamp(1_700_000_000 - SETTLE_SECONDS, tz=UTC)),
            ("sum(down)", datetime.fromtimestamp(1_700_000_000 - SETTLE_SECONDS, tz=UTC)),
            ("sum(up)", datetime.fromtimestamp(1_700_000_001 - SETTLE_SECONDS, tz=UTC)),
        ]
        assert source.flight_stats == (103, 3)


async def test_source_shares_errors_within_the_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, server = Clock(), FakeServer(fail=True)
    async with _source(monkeypatch, server, clock, 1.0) as source:
        results: list[Any] = await asyncio.gather(*(source.query("sum(up") for _ in range(10)), return_exceptions=True)
        assert len(server.asked) == 1
        assert all(isinstance(r, QueryError) and "parse error" in r.message for r in results)


async def test_source_with_explicit_time_shares_only_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, server = Clock(), FakeServer()
    at = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    async with _source(monkeypatch, server, clock, 1.0) as source:
        await asyncio.gather(source.query("q", at=at), source.query("q", at=at))
        await source.query("q", at=at)
        assert server.asked == [("q", at), ("q", at)]


async def test_source_without_dedupe_sends_every_query_at_a_settled_instant(monkeypatch: pytest.MonkeyPatch) -> None:
    clock, server = Clock(), FakeServer()
    async with _source(monkeypatch, server, clock, 0.0) as source:
        await asyncio.gather(*(source.query("sum(up)") for _ in range(3)))
        assert server.asked == [("sum(up)", datetime.fromtimestamp(clock.now - SETTLE_SECONDS, tz=UTC))] * 3
        assert source.flight_stats == (3, 3)


async def test_a_flight_whose_callers_all_left_is_cancelled() -> None:
    flights: SingleFlight[int] = SingleFlight()
    started = asyncio.Event()
    finished = False

    async def call() -> int:
        nonlocal finished
        started.set()
        await asyncio.sleep(10)
        finished = True
        return 1

    callers = [asyncio.create_task(flights.do("q", call)) for _ in range(3)]
    await started.wait()
    for caller in callers:
        caller.cancel()
    await asyncio.gather(*callers, return_exceptions=True)
    await asyncio.sleep(0)
    assert len(flights) == 0 and not finished  # nothing left running (e.g. at operator shutdown)


async def test_close_cancels_flights_in_the_air() -> None:
    flights: SingleFlight[int] = SingleFlight()

    async def call() -> int:
        await asyncio.sleep(10)
        return 1

    caller = asyncio.create_task(flights.do("q", call, keep_until=1e12))
    await asyncio.sleep(0)
    flights.close()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert len(flights) == 0


class TickingServer(FakeServer):
    """Every query takes the clock past a bucket boundary, as a slow Prometheus would."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    async def __call__(self, promql: str, at: datetime | None) -> list[Series]:
        self.clock.now += 0.6
        return await super().__call__(promql, at)


@pytest.mark.parametrize("dedupe", [0.0, 1.0])
async def test_all_queries_of_a_gate_name_one_instant(monkeypatch: pytest.MonkeyPatch, dedupe: float) -> None:
    """A ratio's good and total (and both variants) must count the same requests."""
    clock = Clock(1_700_000_000.9)
    server = TickingServer(clock)
    gate = Gate.model_validate(
        {"name": "auth", "ratio": {"good": 'good{v="{{variant}}"}', "total": 'total{v="{{variant}}"}'}, "max": 1}
    )
    spec = CheckoutRolloutSpec.model_validate(rollout_doc()["spec"])
    async with _source(monkeypatch, server, clock, dedupe) as source:
        await source.read_gate(gate, spec=spec, namespace="payments", name="checkout", window_seconds=30)
    assert len(server.asked) == 4
    instants = {at for _, at in server.asked}
    assert len(instants) == 1 and None not in instants, "one explicit instant, not each query's own 'now'"
