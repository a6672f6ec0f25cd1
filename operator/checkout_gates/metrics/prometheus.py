"""The live metrics source: a gate's PromQL queries against Prometheus' instant-query API.

One :class:`PrometheusSource` per Prometheus server (per ``spec.prometheus`` and credentials),
implementing the metrics port (:mod:`checkout_gates.metrics.port`). Queries go out on one
``httpx.AsyncClient``; at most ``max_in_flight`` of them are on the wire at once, and a gate's
queries for both variants run concurrently.

Failures never escape :meth:`PrometheusSource.read_gate`: a refused connection, a timeout, a
query Prometheus rejects (its own ``error`` text is kept, bounded), an answer that is not
Prometheus', a NaN or a value that is not a number all come back as ``SignalReading(error=...)``,
which the core judges Inconclusive. Error texts are made of the HTTP status, the content type and
Prometheus' own error fields, never of a foreign response body. Redirects are not followed: a
redirected query would carry the credentials to wherever the redirect points.
Connection errors and 5xx answers are retried a bounded number of times with exponential
backoff; a 4xx answer (bad PromQL, bad auth) and a read timeout are not.

With ``dedupe_seconds`` > 0 (the operator's setting), identical queries within one bucket of
that many seconds are evaluated at the bucket's start and sent once, their answer shared
(:mod:`checkout_gates.metrics.singleflight`): many rollouts with the same rendered query cost
one query per bucket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import os
import ssl
import time
from array import array
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlencode

import httpx

from checkout_gates.api.spec import CheckoutRolloutSpec, Gate, PrometheusSpec, TailSignal
from checkout_gates.gates.counters import CounterSeries, increments_between, selector_range_seconds
from checkout_gates.gates.observations import (
    SCALAR,
    ArmSteps,
    Sample,
    Segment,
    SignalReading,
    segment_name,
    segment_of,
)
from checkout_gates.metrics.fairness import Caller, FairLimiter
from checkout_gates.metrics.port import MetricsSource
from checkout_gates.metrics.singleflight import SingleFlight, moment
from checkout_gates.metrics.tail import BOUND_LOOKBACK, NoBoundError, bound_query, choose_bound, counter_templates
from checkout_gates.metrics.templates import TemplateError, promql_duration, query_variables, render

Side = Literal["stable", "canary"]
SIDES: tuple[Side, Side] = ("stable", "canary")

# Roles of a gate's queries: the signal's own and the optional samples behind it.
# Which rollout the queries of the running task are for: the in-flight limiter shares by it.
_ASKING: ContextVar[Caller] = ContextVar("checkout_gates_prometheus_asking", default=("", ""))
Role = Literal["good", "total", "count", "quantile", "gauge", "samples", "exposure"]

# A chunk of raw samples ending this long ago is complete (no scrape of it is still being stored):
# its counts are kept (ChunkCache) and not asked again, so that an evaluation asks only for the
# time since the last complete chunk, however long the rollout has run.
CACHE_AFTER_SECONDS = 60.0
CHUNK_CACHE_CELLS = 4_000_000  # numbers kept (8 bytes each in arrays): 32 MB per Prometheus source
EXACT_BATCH = 16  # chunk queries in flight per gate read, counted before the next are asked
TAIL_BOUNDS_KEPT = 4096  # tail bounds chosen, per (query, evidence start): a few hundred bytes each
MAX_EVIDENCE_INTERVALS = 20_000  # ~7 days at 30 s: beyond, a carried gate is Inconclusive and says why
SETTLE_SECONDS = 2.0  # how old the evaluation instant is: longer than a scrape takes to be stored
QUERY_PATH = "/api/v1/query"
USER_AGENT = "checkout-gates"
# httpx bounds each connect and each read by the timeout; this much more bounds the whole answer,
# so that a server dripping a byte now and then cannot hold a query for ever.
DRIP_GRACE_SECONDS = 1.0
# A larger query result is refused: 5,000 segments are well under 1 MB, and 16 MiB of JSON already
# parse into ~150 MB of objects (the chart's memory limit is 512 MiB, for every rollout at once).
MAX_ANSWER_BYTES = 16 * 2**20
# Series in one answer: a gate judges segments (at most a few thousand); more is a query that forgot
# to aggregate, refused before a Series is built for any of them.
MAX_SERIES = 10_000
# How far before a window `counts: exact` asks for samples, so that every live series has its
# last sample before the window as the baseline (Prometheus' own default lookback is 5 minutes).
LOOKBACK_SECONDS = 300.0
# The largest piece of a window one `counts: exact` query asks raw samples of.
EXACT_CHUNK_SECONDS = 600.0
# Raw samples beyond which they are counted on a worker thread (~1 s of CPU per 15 MiB answer).
COUNT_OFF_LOOP_SAMPLES = 50_000
# Set while `counts: exact` asks: its answers are matrices of raw samples, parsed as such (any other
# query's range vector is an error, RANGE_VECTOR); part of the flight key, so never shared with one.
_RAW_SAMPLES: ContextVar[bool] = ContextVar("checkout_gates_prometheus_raw_samples", default=False)
RANGE_VECTOR = (
    "the query returns a range vector; a gate query must return an instant vector or a scalar "
    "(wrap the range selector in a function such as increase(...) or rate(...))"
)
# Answers larger than this are parsed on a worker thread, so no other rollout waits on the event
# loop while one large answer is decoded.
PARSE_OFF_LOOP_BYTES = 256 * 2**10
MAX_ERROR_ANSWER_BYTES = 64 * 2**10  # Prometheus' error answers are a few hundred bytes
_QUERY_SHOWN = 240  # characters of a rejected query quoted in an error
_ERROR_SHOWN = 300  # characters of Prometheus' own error text quoted in an error
_ERROR_TYPE_SHOWN = 40  # characters of Prometheus' errorType
_CONTENT_TYPE_SHOWN = 60  # characters of a response's content type quoted in an error
_VALUE_SHOWN = 40  # characters of a sample value that is not a number
_LABELS_SHOWN = 200  # characters of a series' labels quoted in an error
_UNEXPECTED_SHOWN = 300  # characters of an unexpected exception's text


class QueryError(Exception):
    """One query failed; ``retryable`` for connection errors and 5xx answers."""

    def __init__(self, message: str, *, retryable: bool = False, query: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.query = query  # the rendered query, worth showing when Prometheus rejected it


@dataclass(frozen=True)
class Series:
    """One series of an instant query's result: its labels and its value (a scalar has no labels)."""

    labels: Mapping[str, str]
    value: float
    scalar: bool = False
    samples: tuple[tuple[float, float], ...] = ()  # a range selector's raw (time, value) pairs


@dataclass(frozen=True)
class _Answer:
    """What came back for one query: the status, the media type and the body (bounded in size)."""

    status: int
    media_type: str
    body: bytes


def gate_queries(gate: Gate) -> dict[Role, str]:
    """The query templates a gate needs, by role (the same for both variants).

    A count gate's samples are its ``exposure`` when given, else its ``samples`` query; a ratio's
    samples are its total, so a ratio gate's ``samples`` query is not run.
    """
    queries: dict[Role, str] = {}
    if gate.ratio is not None:
        queries["good"] = gate.ratio.good
        queries["total"] = gate.ratio.total
        return queries
    if gate.count is not None:
        queries["count"] = gate.count
        if gate.exposure is not None:
            queries["exposure"] = gate.exposure
    elif gate.quantile is not None:
        queries["quantile"] = gate.quantile
    elif gate.gauge is not None:
        queries["gauge"] = gate.gauge
    if gate.samples is not None and "exposure" not in queries:
        queries["samples"] = gate.samples
    return queries


class ChunkCache:
    """Counts of complete chunks by (query with its range, chunk bounds, segment labels), least
    recently used dropped first, bounded by the numbers it holds (each segment's counts in a
    chunk are an array of doubles)."""

    def __init__(self, cells: int) -> None:
        self._cells = max(1, cells)
        self._held = 0
        self._kept: OrderedDict[tuple[str, tuple[float, ...], tuple[str, ...]], ChunkCounts] = OrderedDict()

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def cells(self) -> int:
        return self._held

    def get(self, key: tuple[str, tuple[float, ...], tuple[str, ...]]) -> ChunkCounts | None:
        found = self._kept.get(key)
        if found is not None:
            self._kept.move_to_end(key)
        return found

    def put(self, key: tuple[str, tuple[float, ...], tuple[str, ...]], counts: ChunkCounts) -> None:
        size = _cells(counts)
        if size > self._cells:
            return
        old = self._kept.pop(key, None)
        if old is not None:
            self._held -= _cells(old)
        self._kept[key] = counts
        self._held += size
        while self._held > self._cells:
            _, dropped = self._kept.popitem(last=False)
            self._held -= _cells(dropped)


def _cells(counts: ChunkCounts) -> int:
    return max(1, counts[0] * len(counts[1]))


class PrometheusSource(MetricsSource):
    """Reads gates from one Prometheus server.

    ``bearer_token`` or ``basic_auth`` (username, password) are the values already read from the
    Secrets that ``spec.prometheus`` names; reading Secrets is the controller's job.
    ``retries`` extra attempts follow a connection error or a 5xx answer, after
    ``backoff_seconds``, then twice that, and so on. ``dedupe_seconds`` > 0 shares identical
    queries within buckets of that length (see the module's docstring); 0 sends every query.
    ``transport`` replaces the network (tests). Close the source (:meth:`aclose`, or use it as an
    async context manager) to release its connections.
    """

    def __init__(
        self,
        config: PrometheusSpec,
        *,
        bearer_token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        max_in_flight: int = 8,
        retries: int = 2,
        backoff_seconds: float = 0.2,
        dedupe_seconds: float = 0.0,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if bearer_token is not None and basic_auth is not None:
            raise ValueError("Prometheus takes a bearer token or basic auth, not both")
        self.address = config.address.rstrip("/")
        self.timeout_seconds = config.timeout_seconds
        self.retries = max(0, retries)
        self.backoff_seconds = backoff_seconds
        self.dedupe_seconds = max(0.0, dedupe_seconds)
        self._clock = clock
        self._flights: SingleFlight[list[Series]] = SingleFlight(clock)
        self._chunk_counts = ChunkCache(CHUNK_CACHE_CELLS)
        self._tail_bounds: OrderedDict[tuple[str, float, float], tuple[str, tuple[str, ...]]] = OrderedDict()
        self._sent = 0
        # Uncompressed: gate answers are a few kilobytes, mostly on the cluster's own network, and gzip
        # (which Prometheus applies whenever it may) cost both ends more CPU per query than it saved.
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json", "Accept-Encoding": "identity"}
        if bearer_token is not None:
            headers["Authorization"] = f"Bearer {bearer_token}"
        # The semaphore, not the pool, makes queries wait for their turn: waiting for one of our own
        # connections is not Prometheus being slow, so it must not count against the timeout.
        in_flight = max(1, max_in_flight)
        # Shared fairly between the namespaces and rollouts asking (metrics/fairness.py).
        self._in_flight = FairLimiter(in_flight)
        # An http:// address never does TLS through this client (it asks that one address and follows
        # no redirect), so it is spared loading the CA bundle (~50 ms per source, most of a dry run's
        # set-up); should TLS ever happen on it, it fails closed: verification on, nothing trusted.
        verify: ssl.SSLContext | bool = (
            True if httpx.URL(self.address).scheme == "https" else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        )
        self._client = httpx.AsyncClient(
            verify=verify,
            headers=headers,
            auth=httpx.BasicAuth(*basic_auth) if basic_auth is not None else None,
            timeout=httpx.Timeout(self.timeout_seconds, pool=None),
            limits=httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight),
            follow_redirects=False,
            transport=transport,
        )

    # --- the port ----------------------------------------------------------------------------

    @property
    def description(self) -> str:
        return f"Prometheus at {self.address}"

    async def check(self, at: datetime | None = None) -> str | None:
        try:
            await self.query("vector(1)", at=at)
        except QueryError as error:
            return error.message
        except Exception as error:  # the contract: a reason, never an exception
            return _unexpected(error)
        return None

    async def aclose(self) -> None:
        self._flights.close()
        await self._client.aclose()

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
        try:
            return await self._read_gate(
                gate, spec=spec, namespace=namespace, name=name, window_seconds=window_seconds, at=at, since=since
            )
        except Exception as error:  # the contract: a reading, never an exception
            return SignalReading(gate=gate.name, error=_unexpected(error), window_seconds=window_seconds)

    # --- queries -----------------------------------------------------------------------------

    @property
    def flight_stats(self) -> tuple[int, int]:
        """(queries asked, queries sent) since the source was made; equal when dedupe is off."""
        if self.dedupe_seconds <= 0:
            return self._sent, self._sent
        return self._flights.stats.calls, self._flights.stats.flights

    async def query(self, promql: str, *, at: datetime | None = None) -> list[Series]:
        """One instant query, retried on connection errors and 5xx; QueryError when it fails.

        With dedupe on, the same query for the same moment is sent once and its outcome shared.
        """
        if at is not None:
            return await self._query(promql, at, keep=False)
        return await self._query(promql, self.evaluation_instant(), keep=True)

    def evaluation_instant(self) -> datetime:
        """The one moment every query of an evaluation is asked for.

        A gate's queries (a ratio's good and total, both variants) go out one by one; asked for
        "now", a scrape stored between two of them would make good and total count different
        requests. So they all name one instant, and an instant ``SETTLE_SECONDS`` old, by which a
        scrape started before it has been stored. With dedupe on, it is the start of that bucket.
        """
        settled = self._clock() - SETTLE_SECONDS
        return moment(None, self.dedupe_seconds, lambda: settled)

    async def _query(self, promql: str, when: datetime, *, keep: bool) -> list[Series]:
        if self.dedupe_seconds <= 0:
            self._sent += 1
            return await self._query_retrying(promql, when)
        when = moment(when, self.dedupe_seconds, self._clock)
        # An explicit time is shared only while in flight; an evaluation instant's answer is kept
        # until its bucket ends, for the other rollouts asking the same.
        keep_until = when.timestamp() + SETTLE_SECONDS + self.dedupe_seconds if keep else None
        return await self._flights.do(
            (self.address, promql, when.timestamp(), _RAW_SAMPLES.get()),
            lambda: self._query_retrying(promql, when),
            keep_until=keep_until,
        )

    async def _query_retrying(self, promql: str, at: datetime | None) -> list[Series]:
        attempt = 0
        while True:
            try:
                return await self._query_once(promql, at)
            except QueryError as error:
                _drop_frames(error)
                if not error.retryable or attempt >= self.retries:
                    if error.retryable and attempt:
                        raise QueryError(
                            f"{error.message} (after {attempt + 1} attempts)", query=error.query
                        ) from error
                    raise
            await asyncio.sleep(self.backoff_seconds * 2**attempt)
            attempt += 1

    async def _query_once(self, promql: str, at: datetime | None) -> list[Series]:
        params = {
            "query": promql,
            "timeout": promql_duration(self.timeout_seconds),  # Prometheus stops evaluating then too
        }
        if at is not None:
            instant = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
            params["time"] = f"{instant.timestamp():.3f}"
        # Encoded here with the standard library's urlencode: handing httpx the params costs about three
        # times the CPU per query (it quotes them character by character), and a dry run is mostly queries.
        url = f"{self.address}{QUERY_PATH}?{urlencode(params)}"
        async with self._in_flight.place(_ASKING.get()):
            answer = await self._get(url)
        if len(answer.body) > PARSE_OFF_LOOP_BYTES:
            return await asyncio.to_thread(self._result, answer, promql)
        return self._result(answer, promql)

    async def _get(self, url: str) -> _Answer:
        """One GET of the query API; QueryError for anything but an answer, read within its bounds."""
        try:
            async with asyncio.timeout(self.timeout_seconds + DRIP_GRACE_SECONDS):
                return await self._send(url)
        except TimeoutError as error:
            raise self._timed_out() from error
        except httpx.ConnectTimeout as error:
            raise QueryError(
                f"cannot connect to Prometheus at {self.address} within {self.timeout_seconds:g}s", retryable=True
            ) from error
        except httpx.TimeoutException as error:  # read, write (pool waits are the semaphore's)
            raise self._timed_out() from error
        except httpx.ConnectError as error:
            raise QueryError(
                f"cannot connect to Prometheus at {self.address}: {_connection_reason(error)}", retryable=True
            ) from error
        except (httpx.NetworkError, httpx.RemoteProtocolError) as error:
            # The connection broke after it was made (reset, closed without an answer): worth another try.
            raise QueryError(
                f"the connection to Prometheus at {self.address} broke: {_connection_reason(error)}", retryable=True
            ) from error
        except (httpx.HTTPError, httpx.InvalidURL) as error:
            raise QueryError(f"request to Prometheus at {self.address} failed ({type(error).__name__})") from error

    async def _send(self, url: str) -> _Answer:
        async with self._client.stream("GET", url) as response:
            media_type = _media_type(response.headers.get("content-type", ""))
            if response.is_redirect:
                return _Answer(response.status_code, media_type, b"")  # never read: it is not ours to show
            limit = MAX_ANSWER_BYTES if response.status_code == httpx.codes.OK else MAX_ERROR_ANSWER_BYTES
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > limit:
                    if response.status_code == httpx.codes.OK:
                        raise QueryError(
                            f"Prometheus at {self.address} answered with more than {limit // 2**20} MiB; "
                            "aggregate the query (sum by the segmentBy labels)"
                        )
                    break  # far larger than any Prometheus error: judged by its status alone
            return _Answer(response.status_code, media_type, bytes(body))

    def _result(self, answer: _Answer, promql: str) -> list[Series]:
        """The series of a successful answer; QueryError (retryable for 5xx) for any other."""
        status = answer.status
        raw_samples = _RAW_SAMPLES.get()
        if status == httpx.codes.OK:
            _refuse_too_many_series(answer.body, range_vector_ok=raw_samples)
        document = _prometheus_document(answer.body)
        if document is not None and document.get("status") == "error":
            kind = _bounded_text(document.get("errorType"), _ERROR_TYPE_SHOWN) or "error"
            text = _bounded_text(document.get("error"), _ERROR_SHOWN) or "no error text"
            if status >= httpx.codes.INTERNAL_SERVER_ERROR:
                raise QueryError(f"Prometheus failed the query (HTTP {status}, {kind}): {text}", retryable=True)
            raise QueryError(f"Prometheus rejected the query (HTTP {status}, {kind}): {text}", query=promql)
        if document is not None and status == httpx.codes.OK:
            data = document.get("data")
            if isinstance(data, dict) and "result" in data:
                return parse_result(data["result"], samples=raw_samples)
        if 300 <= status < 400:
            raise QueryError(
                f"Prometheus at {self.address} answered with a redirect (HTTP {status}), which is not followed; "
                "set spec.prometheus.address to the address of the Prometheus HTTP API itself"
            )
        if status in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
            raise QueryError(
                f"Prometheus at {self.address} refused the credentials (HTTP {status}, {answer.media_type}); "
                "check spec.prometheus.bearerTokenSecret or basicAuth"
            )
        raise QueryError(
            f"Prometheus at {self.address} gave an answer that is not a query result (HTTP {status}, "
            f"{answer.media_type}); is spec.prometheus.address the Prometheus HTTP API?",
            retryable=status >= httpx.codes.INTERNAL_SERVER_ERROR,
        )

    def _timed_out(self) -> QueryError:
        # Not retried: a server too slow to answer in time is not helped by asking again at once.
        return QueryError(
            f"Prometheus at {self.address} did not answer within {self.timeout_seconds:g}s (spec.prometheus.timeout)"
        )

    # --- gates -------------------------------------------------------------------------------

    async def _read_gate(
        self,
        gate: Gate,
        *,
        spec: CheckoutRolloutSpec,
        namespace: str,
        name: str,
        window_seconds: float,
        at: datetime | None,
        since: datetime | None = None,
    ) -> SignalReading:
        when, keep = (at, False) if at is not None else (self.evaluation_instant(), True)
        _ASKING.set((namespace, name))  # this task's queries, and the flights they start, are this rollout's
        exact = gate.counts == "exact"
        end = when.timestamp()
        start = end - window_seconds if since is None else min(since.timestamp(), end - 1.0)
        if exact:
            intervals = (end - start) / max(spec.interval_seconds(), 1e-3)
            if not math.isfinite(intervals) or intervals > MAX_EVIDENCE_INTERVALS:
                return SignalReading(
                    gate=gate.name,
                    error=f"the evidence since {_instant(start).isoformat()} spans {intervals:,.0f} analysis intervals, "
                    f"more than {MAX_EVIDENCE_INTERVALS:,}: retry the rollout to start a new test, or use a longer "
                    "analysis.interval",
                    window_seconds=end - start,
                )
        subject = None
        if gate.tail is not None:
            # The bound is chosen at the evidence's start exactly, never at a later instant.
            bound_at = end - window_seconds if since is None else since.timestamp()
            chosen = await self._tail_templates(
                gate.tail, spec, namespace=namespace, name=name, bound_at=bound_at, now=end
            )
            if isinstance(chosen, str):
                return SignalReading(gate=gate.name, error=chosen, window_seconds=end - start)
            templates, subject = chosen
        else:
            templates = gate_queries(gate)
        jobs: list[tuple[Side, Role, str]] = []
        try:
            for side in SIDES:
                variables = query_variables(spec, side, namespace=namespace, name=name, window_seconds=window_seconds)
                jobs += [(side, role, render(template, variables)) for role, template in templates.items()]
        except (TemplateError, ValueError) as error:
            return SignalReading(gate=gate.name, error=str(error), window_seconds=window_seconds)

        if exact:
            bounds = interval_bounds(start, end, spec.interval_seconds())
            reading = await self._read_exact(gate, templates, jobs, bounds)
            return reading if subject is None else dataclasses.replace(reading, subject=subject)
        results = await asyncio.gather(
            *(self._query(query, when, keep=keep) for _, _, query in jobs), return_exceptions=True
        )
        errors: list[tuple[str, QueryError]] = []
        values: dict[tuple[Side, Role], dict[Segment, float]] = {}
        for (side, role, _), result in zip(jobs, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, QueryError):
                    raise result
                errors.append((f"{side} {role}", result))
                continue
            try:
                values[side, role] = by_segment(result, gate.segment_by)
            except QueryError as error:
                errors.append((f"{side} {role}", error))
        if errors:
            return SignalReading(gate=gate.name, error=_summarise(errors), window_seconds=window_seconds)

        return _reading(gate, templates, values, window_seconds)

    async def _tail_templates(
        self, tail: TailSignal, spec: CheckoutRolloutSpec, *, namespace: str, name: str, bound_at: float, now: float
    ) -> tuple[dict[Role, str], str] | str:
        """A tail gate's counters ({good: at most the bound, total}) and what the bound is, in words;
        or why there is none (the reading's error).

        The bound is chosen from the hour before ``bound_at`` (the evidence's start) once that hour
        has settled (a minute after it: late samples are in), and kept per query and instant (a
        settled hour does not change, so a restart chooses the same)."""
        seen: tuple[str, ...]
        try:
            if tail.le is not None:
                bound, seen, subject = tail.le, (tail.le,), f"slower than le={tail.le}"
            else:
                if now < bound_at + CACHE_AFTER_SECONDS:
                    return (
                        f"choosing the tail's bound: stable's hour before {_instant(bound_at).isoformat()} settles "
                        f"a minute after it (evaluations until then are Inconclusive)"
                    )
                variables = query_variables(spec, "stable", namespace=namespace, name=name, window_seconds=3600.0)
                query = render(bound_query(tail), variables)
                key = (query, bound_at, tail.stable_quantile)
                known = self._tail_bounds.get(key)
                if known is None:
                    series = await self._query(query, _instant(bound_at), keep=False)
                    buckets = [(one.labels.get("le", ""), one.value) for one in series]
                    known = (choose_bound(buckets, tail.stable_quantile), tuple(label for label, _ in buckets))
                    self._tail_bounds[key] = known
                    while len(self._tail_bounds) > TAIL_BOUNDS_KEPT:
                        self._tail_bounds.popitem(last=False)
                self._tail_bounds.move_to_end(key)
                bound, seen = known
                subject = (
                    f"slower than le={bound} (stable's {tail.stable_quantile:g} quantile bucket in the "
                    f"{BOUND_LOOKBACK} before the evidence began)"
                )
            good, total = counter_templates(tail, bound, seen)
        except QueryError as error:
            return f"choosing the tail's bound from stable: {error.message}"
        except (NoBoundError, TemplateError, ValueError) as error:
            return str(error)
        return {"good": good, "total": total}, subject

    async def _read_exact(
        self,
        gate: Gate,
        templates: Mapping[Role, str],
        jobs: Sequence[tuple[Side, Role, str]],
        bounds: tuple[float, ...],
    ) -> SignalReading:
        """``counts: exact``: each counter's raw samples, in chunks of at most EXACT_CHUNK_SECONDS
        (an answer's size grows with the samples in it, and a rollout may be long), each chunk's
        increments counted from its own baseline and split at the interval ``bounds``
        (gates/counters.py): every increment, in the interval of the sample that observed it,
        nothing extrapolated."""
        window_seconds = bounds[-1] - bounds[0]
        chunks = exact_chunks(bounds)
        segment_by = tuple(gate.segment_by)
        counted: dict[tuple[int, tuple[float, ...]], ChunkCounts] = {}
        asked: list[tuple[int, tuple[float, ...], str]] = []
        for index in range(len(jobs)):
            for chunk in chunks:
                promql = f"{jobs[index][2]}[{chunk_reach((chunk[0], chunk[-1]))}s]"
                known = self._chunk_counts.get((promql, chunk, segment_by))
                if known is not None:
                    counted[index, chunk] = known
                else:
                    asked.append((index, chunk, promql))
        errors: list[tuple[str, QueryError]] = []
        # In batches, each counted as it arrives and its raw answers let go: after a restart a long
        # rollout's every chunk is asked at once, and holding all of them would cost memory.
        for first in range(0, len(asked), EXACT_BATCH):
            batch = asked[first : first + EXACT_BATCH]
            token = _RAW_SAMPLES.set(True)
            try:
                results = await asyncio.gather(
                    *(self._query(promql, _instant(chunk[-1]), keep=False) for _, chunk, promql in batch),
                    return_exceptions=True,
                )
            finally:
                _RAW_SAMPLES.reset(token)
            answered: list[tuple[int, tuple[float, ...], str, list[Series]]] = []
            for (index, chunk, promql), result in zip(batch, results, strict=True):
                side, role, _ = jobs[index]
                if isinstance(result, BaseException):
                    if not isinstance(result, QueryError):
                        raise result
                    errors.append((f"{side} {role}", result))
                    continue
                answered.append((index, chunk, promql, result))
            del results
            if sum(len(one.samples) for *_, series in answered for one in series) > COUNT_OFF_LOOP_SAMPLES:
                fresh = await asyncio.to_thread(_count_chunks, answered, segment_by)
            else:
                fresh = _count_chunks(answered, segment_by)
            settled = self._clock() - CACHE_AFTER_SECONDS
            for (index, chunk, promql, _), counts in zip(answered, fresh, strict=True):
                counted[index, chunk] = counts
                # Kept even when another chunk failed: the next evaluation asks only for that one.
                if chunk[-1] <= settled:  # a chunk well in the past: its raw samples will not change
                    self._chunk_counts.put((promql, chunk, segment_by), counts)
        if errors:
            return SignalReading(gate=gate.name, error=_summarise(errors), window_seconds=window_seconds)
        values = {
            (side, role): joined_counts([counted[index, chunk] for chunk in chunks])
            for index, (side, role, _) in enumerate(jobs)
        }
        try:
            samples = {
                side: exact_samples(gate, {role: values[side, role] for role in templates}, len(bounds) - 1)
                for side in SIDES
            }
        except QueryError as error:
            return SignalReading(gate=gate.name, error=error.message, window_seconds=window_seconds)
        return SignalReading(
            gate=gate.name, canary=samples["canary"], stable=samples["stable"], window_seconds=window_seconds
        )


def _reading(
    gate: Gate,
    templates: Mapping[Role, str],
    values: Mapping[tuple[Side, Role], Mapping[Segment, float]],
    window_seconds: float,
) -> SignalReading:
    samples: dict[Side, dict[Segment, Sample]] = {}
    for side in SIDES:
        try:
            samples[side] = _samples(gate, {role: values[side, role] for role in templates})
        except QueryError as error:
            return SignalReading(gate=gate.name, error=f"{side}: {error.message}", window_seconds=window_seconds)
    return SignalReading(
        gate=gate.name, canary=samples["canary"], stable=samples["stable"], window_seconds=window_seconds
    )


def interval_bounds(start: float, end: float, interval: float) -> tuple[float, ...]:
    """``start``, every whole multiple of ``interval`` (on the clock, not from ``start``) after it
    and before ``end``, and ``end``: the intervals a carried e-process is folded over.  On the
    clock's grid, every evaluation of a rollout cuts the same intervals (only the last one grows),
    and rollouts evaluated together share their chunks' queries."""
    bounds = [start]
    if interval > 0.0 and math.isfinite(interval):
        point = (math.floor(start / interval) + 1) * interval
        while point < end:
            bounds.append(point)
            point += interval
    if end > start:
        bounds.append(end)
    else:
        bounds.append(start)
    return tuple(bounds)


def exact_chunks(bounds: tuple[float, ...]) -> list[tuple[float, ...]]:
    """``bounds`` cut into consecutive runs spanning at most EXACT_CHUNK_SECONDS (one interval more
    when a single interval is longer), each run's last bound the next one's first."""
    chunks: list[tuple[float, ...]] = []
    run = [bounds[0]]
    for bound in bounds[1:]:
        if len(run) > 1 and bound - run[0] > EXACT_CHUNK_SECONDS:
            chunks.append(tuple(run))
            run = [run[-1]]
        run.append(bound)
    chunks.append(tuple(run))
    return chunks


def chunk_reach(chunk: tuple[float, float]) -> int:
    """The range of a chunk's selector: back to LOOKBACK_SECONDS before it, rounded up to a minute
    so that rollouts whose chunks end together share one query (each counts from its own start)."""
    seconds = selector_range_seconds(chunk[0], chunk[1], lookback=LOOKBACK_SECONDS)
    return -(-seconds // 60) * 60


def _instant(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


ChunkCounts = tuple[int, Mapping[Segment, Sequence[float]]]
"""One chunk's counts: its number of intervals, and each segment's increments per interval."""


def chunk_counts(chunk: tuple[float, ...], series: Sequence[Series], segment_by: Sequence[str]) -> ChunkCounts:
    """Events per segment and interval of one chunk, counted from raw samples (gates/counters.py):
    every increment, a drop read as a restart from 0, nothing extrapolated. A series with no sample
    in the chunk (a pod that ended before it) adds nothing there, not a segment of zero traffic."""
    start = chunk[0]
    live = [CounterSeries(labels=one.labels, samples=one.samples) for one in series if _sampled_after(one, start)]
    increases = increments_between(live, boundaries=chunk, segment_by=segment_by)
    return len(chunk) - 1, MappingProxyType(
        {segment: array("d", increases.per_interval(segment)) for segment in increases.segments}
    )


def joined_counts(parts: Sequence[ChunkCounts]) -> dict[Segment, tuple[float, ...]]:
    """Consecutive chunks' counts as one run of intervals (zeros where a segment had no series)."""
    segments = {segment for _, counts in parts for segment in counts}
    return {
        segment: tuple(value for width, counts in parts for value in counts.get(segment, (0.0,) * width))
        for segment in segments
    }


def exact_counts(
    parts: Sequence[tuple[tuple[float, ...], Sequence[Series]]], segment_by: Sequence[str]
) -> dict[Segment, tuple[float, ...]]:
    """Events per segment and interval over consecutive chunks (``(bounds, answer)`` pairs)."""
    ordered = sorted(parts, key=lambda part: part[0][0])
    return joined_counts([chunk_counts(chunk, series, segment_by) for chunk, series in ordered])


def _count_chunks(
    answered: Sequence[tuple[int, tuple[float, ...], str, Sequence[Series]]], segment_by: Sequence[str]
) -> list[ChunkCounts]:
    return [chunk_counts(chunk, series, segment_by) for _, chunk, _, series in answered]


def _sampled_after(series: Series, start: float) -> bool:
    return any(t > start for t, _ in series.samples)


# --- answers ----------------------------------------------------------------------------------


def _prometheus_document(body: bytes) -> dict[str, Any] | None:
    """The answer's JSON object when it is one of Prometheus' API answers (a ``status`` field), else None."""
    try:
        document = json.loads(body)
    except ValueError:  # not JSON, or not UTF-8
        return None
    if isinstance(document, dict) and document.get("status") in ("success", "error"):
        return document
    return None


def _media_type(content_type: str) -> str:
    """The media type of a Content-Type header, printable and short, for an error text."""
    media = "".join(ch for ch in content_type.split(";", 1)[0].strip().lower() if ch.isprintable())
    return media[:_CONTENT_TYPE_SHOWN] or "no content type"


def _bounded_text(value: Any, limit: int) -> str:
    """Prometheus' own error text, on one line and at most ``limit`` characters."""
    if not isinstance(value, str):
        return ""
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _connection_reason(error: BaseException) -> str:
    """Why a connection failed, from the operating system's error under httpx's (not from its text)."""
    cause: BaseException | None = error
    for _ in range(8):  # httpx -> httpcore -> OSError, sometimes one more level
        if cause is None:
            break
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS certificate not trusted ({cause.verify_message})"
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed ({cause.reason})"
        if isinstance(cause, OSError) and cause.errno is not None:
            # asyncio's own text names the address ("Connect call failed (...)"); the code's is the reason.
            return os.strerror(cause.errno) if cause.errno > 0 else str(cause.strerror)
        cause = cause.__cause__ or cause.__context__
    if isinstance(error, httpx.RemoteProtocolError):
        return "the server closed the connection or broke the HTTP protocol"
    return type(error).__name__


def _drop_frames(error: QueryError) -> None:
    """Forget where ``error`` was raised. Its traceback's frames hold the answer (16 MiB of bytes, or
    the objects parsed from them), and an error is kept, shared by a bucket's callers, in reference
    cycles with the task that raised it: only a garbage collection would free them, which allocating
    bytes does not bring about. Six such answers an evaluation took the operator past 1 GB. The
    message says all that is shown of a failed query; the frames and chained errors are not."""
    error.__cause__ = error.__context__ = None
    error.with_traceback(None)


def _unexpected(error: Exception) -> str:
    return f"unexpected {type(error).__name__}: {_bounded_text(str(error), _UNEXPECTED_SHOWN)}"


# --- result parsing ---------------------------------------------------------------------------


def parse_result(result: Any, *, samples: bool = False) -> list[Series]:
    """The series of an instant query's ``data.result`` (a vector, or a scalar as one series);
    with ``samples``, of a range selector's (a matrix: each series with its raw samples)."""
    if samples:
        return _parse_matrix(result)
    if (
        isinstance(result, list)
        and len(result) == 2
        and isinstance(result[0], int | float)
        and isinstance(result[1], str)
    ):
        return [Series(labels={}, value=_number(result[1], {}), scalar=True)]
    if not isinstance(result, list):
        raise QueryError(f"unexpected result: a JSON {_json_kind(result)}, not a vector or a scalar")
    if result and isinstance(result[0], dict) and "values" in result[0]:
        raise QueryError(RANGE_VECTOR)  # the likelier mistake, whatever the count
    if len(result) > MAX_SERIES:
        raise _too_many_series(len(result))
    series: list[Series] = []
    for item in result:
        if not isinstance(item, dict):
            raise QueryError(f"unexpected result item: a JSON {_json_kind(item)}, not a series")
        labels = {str(key): str(value) for key, value in (item.get("metric") or {}).items()}
        if "values" in item:
            raise QueryError(RANGE_VECTOR)
        sample = item.get("value")
        if not isinstance(sample, list) or len(sample) != 2:
            raise QueryError("unexpected result item: a series without a [time, value] pair")
        series.append(Series(labels=labels, value=_number(sample[1], labels)))
    return series


def _parse_matrix(result: Any) -> list[Series]:
    if not isinstance(result, list):
        raise QueryError(f"unexpected result: a JSON {_json_kind(result)}, not a matrix of raw samples")
    if len(result) > MAX_SERIES:
        raise _too_many_series(len(result))
    series: list[Series] = []
    for item in result:
        values = item.get("values") if isinstance(item, dict) else None
        if not isinstance(values, list):
            raise QueryError("unexpected result item: a series without its raw samples")
        labels = {str(key): str(value) for key, value in (item.get("metric") or {}).items()}
        try:
            raw = tuple((float(t), float(v)) for t, v in values)  # NaN and Inf are the counter reader's to skip
        except (TypeError, ValueError):
            raise QueryError(f"a sample of {_labels_text(labels)} is not a [time, number] pair") from None
        series.append(Series(labels=labels, value=raw[-1][1] if raw else math.nan, samples=raw))
    return series


def _refuse_too_many_series(body: bytes, *, range_vector_ok: bool = False) -> None:
    """QueryError for an answer of more than MAX_SERIES series, counted in its bytes before it is
    parsed: decoding 100,000 series builds ~150 MB of objects and holds the interpreter for most of
    a second, six queries an evaluation (end to end: past the chart's 512Mi, and other rollouts
    waited). Each series opens with its ``"metric"`` object (Prometheus writes no space, Python's
    json one); a label named ``metric`` is followed by a string, and within a label value the quotes
    are escaped, so neither is counted. An answer spelled otherwise is still counted once parsed."""
    count = body.count(b'"metric":{') + body.count(b'"metric": {')
    if count > MAX_SERIES:
        range_vector = not range_vector_ok and (b'"values":[' in body or b'"values": [' in body)
        raise QueryError(RANGE_VECTOR) if range_vector else _too_many_series(count)


def _too_many_series(count: int) -> QueryError:
    return QueryError(
        f"{count} series in one answer (at most {MAX_SERIES:,}): aggregate the query by the "
        "gate's segmentBy labels (sum by (...))"
    )


def _json_kind(value: Any) -> str:
    """The JSON type of a value, to name what was found without quoting it."""
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def by_segment(series: Sequence[Series], segment_by: Sequence[str]) -> dict[Segment, float]:
    """Values keyed by segment; two series in one segment are an error (aggregate by the segment labels)."""
    values: dict[Segment, float] = {}
    for one in series:
        segment = SCALAR if one.scalar else segment_of(one.labels, list(segment_by))
        if segment in values:
            labels = _bounded_text(", ".join(sorted(one.labels)), _LABELS_SHOWN) or "none"
            raise QueryError(
                f"more than one series falls into segment {segment_name(segment)} (series labels: {labels}); "
                f"aggregate the query by the segmentBy labels, e.g. sum by ({', '.join(segment_by) or '...'}) (...)"
            )
        values[segment] = one.value
    return values


def _number(text: Any, labels: Mapping[str, str]) -> float:
    where = f" for {_labels_text(labels)}" if labels else ""
    try:
        value = float(text)
    except (TypeError, ValueError):
        shown = repr(text) if len(repr(text)) <= _VALUE_SHOWN else repr(text)[: _VALUE_SHOWN - 3] + "..."
        raise QueryError(f"returned {shown}{where}, which is not a number") from None
    if math.isnan(value):
        raise QueryError(
            f"returned NaN{where} (no data in the window, e.g. histogram_quantile over zero rates, or 0/0)"
        )
    return value


def _labels_text(labels: Mapping[str, str]) -> str:
    text = "{" + ", ".join(f'{key}="{value}"' for key, value in sorted(labels.items())) + "}"
    return _bounded_text(text, _LABELS_SHOWN)


def _samples(gate: Gate, values: Mapping[Role, Mapping[Segment, float]]) -> dict[Segment, Sample]:
    """One variant's samples per segment from its query results by role."""
    if gate.ratio is not None:
        good, total = values["good"], values["total"]
        orphans = [segment_name(segment) for segment in good if segment not in total]
        if orphans:
            raise QueryError(
                f"the good query has segments the total query lacks ({', '.join(orphans)}); "
                "both must aggregate by the same labels"
            )
        # A segment with no good events at all may be absent from the good query: 0 good.
        return {
            segment: Sample(
                value=(good.get(segment, 0.0) / count) if count > 0 else None,
                samples=count,
                good=good.get(segment, 0.0),
                total=count,
            )
            for segment, count in total.items()
        }
    role: Role = "count" if "count" in values else "quantile" if "quantile" in values else "gauge"
    signal = values[role]
    extra = values.get("exposure", values.get("samples"))
    if extra is None:
        return {segment: Sample(value=value) for segment, value in signal.items()}
    segments = list(signal) + [segment for segment in extra if segment not in signal]
    if role == "count":
        # A counter that has no series yet in a segment with known exposure has counted nothing
        # there: a canary at 5% that charged no duplicate yet has 0 duplicates, not missing data.
        return {segment: Sample(value=signal.get(segment, 0.0), samples=extra.get(segment)) for segment in segments}
    # A segment only in the samples query has observations but no value: the core sees it as missing data.
    return {segment: Sample(value=signal.get(segment), samples=extra.get(segment)) for segment in segments}


def exact_samples(
    gate: Gate, values: Mapping[Role, Mapping[Segment, tuple[float, ...]]], intervals: int
) -> dict[Segment, Sample]:
    """One variant's samples per segment from exact per-interval counts by role, with the intervals
    kept (``Sample.steps``): a ratio's bad events are total - good, a count's exposure its own
    counter. A segment missing from a role's answer counted nothing there."""
    zeros = (0.0,) * intervals

    def steps_of(role: Role, segment: Segment) -> tuple[float, ...]:
        return tuple(values[role].get(segment, zeros))

    if gate.ratio is not None or gate.tail is not None:
        orphans = [segment_name(segment) for segment in values["good"] if segment not in values["total"]]
        if orphans:
            raise QueryError(
                f"the good query has segments the total query lacks ({', '.join(orphans)}); "
                "both must select the same labels"
            )
        samples: dict[Segment, Sample] = {}
        for segment in values["total"]:
            good, total = steps_of("good", segment), steps_of("total", segment)
            bad = _bad_per_interval(good, total)
            good_sum, total_sum = math.fsum(good), math.fsum(total)
            if gate.tail is not None:  # judged as a count: slow requests per request
                if segment not in values["good"] and total_sum > 0:
                    raise QueryError(
                        f"{segment_name(segment)} served requests (_count) but has no _bucket series at the "
                        "bound: its le label spells it otherwise, or the histogram has no such bucket"
                    )
                samples[segment] = Sample(
                    value=math.fsum(bad), samples=total_sum, steps=ArmSteps(bad=bad, exposure=total)
                )
                continue
            samples[segment] = Sample(
                value=good_sum / total_sum if total_sum > 0 else None,
                samples=total_sum,
                good=min(good_sum, total_sum),
                total=total_sum,
                steps=ArmSteps(bad=bad, exposure=total),
            )
        return samples
    segments = list(values["count"]) + [s for s in values["exposure"] if s not in values["count"]]
    return {
        segment: Sample(
            value=math.fsum(steps_of("count", segment)),
            samples=math.fsum(steps_of("exposure", segment)),
            steps=ArmSteps(bad=steps_of("count", segment), exposure=steps_of("exposure", segment)),
        )
        for segment in segments
    }


def _bad_per_interval(good: Sequence[float], total: Sequence[float]) -> tuple[float, ...]:
    """``total - good`` interval by interval. Where good and total come from series scraped at
    different moments, an interval may see good ahead of total: the shortfall is carried into the
    next intervals instead of clamped to 0, so that no bad event is invented (the sum stays
    ``max(total - good, 0)``)."""
    bad: list[float] = []
    owed = 0.0
    for g, t in zip(good, total, strict=True):
        difference = t - g - owed
        owed = max(-difference, 0.0)
        bad.append(max(difference, 0.0))
    return tuple(bad)


# --- error text -------------------------------------------------------------------------------


def _summarise(errors: Sequence[tuple[str, QueryError]]) -> str:
    """Distinct failures once each (an unreachable server fails every query the same way),
    with the first rejected query of each, so that a person sees the PromQL Prometheus refused."""
    by_cause: dict[str, list[tuple[str, QueryError]]] = {}
    for where, error in errors:
        by_cause.setdefault(error.message, []).append((where, error))
    parts: list[str] = []
    for cause, group in by_cause.items():
        wheres = ", ".join(where for where, _ in group)
        text = f"{wheres} {'query' if len(group) == 1 else 'queries'}: {cause}"
        query = group[0][1].query
        if query is not None:
            shown = query if len(query) <= _QUERY_SHOWN else query[:_QUERY_SHOWN] + "..."
            text += f" (query: {shown})"
        parts.append(text)
    return "; ".join(parts)
