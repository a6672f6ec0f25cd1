"""The live metrics source: a gate's PromQL queries against Prometheus' instant-query API.

One :class:`PrometheusSource` per Prometheus server (per ``spec.prometheus`` and credentials).
prometheus-api-client is synchronous, so each query runs on the source's own bounded thread
pool through ``loop.run_in_executor``: the event loop never waits on a socket, and the pool
bounds how many queries one source has in flight. A gate's queries for both variants run
concurrently.

Failures never escape :meth:`PrometheusSource.read_gate`: a refused connection, a timeout, a
query Prometheus rejects (its own error text is kept), a NaN or a value that is not a number
all come back as ``SignalReading(error=...)``, which the core judges Inconclusive.
Connection errors and 5xx answers are retried a bounded number of times with exponential
backoff; a 4xx answer (bad PromQL, bad auth) and a read timeout are not.

With ``dedupe_seconds`` > 0 (the operator's setting), identical queries within one bucket of
that many seconds are evaluated at the bucket's start and sent once, their answer shared
(:mod:`checkout_gates.metrics.singleflight`): many rollouts with the same rendered query cost
one query per bucket.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from checkout_gates.api.quantities import parse_duration
from checkout_gates.api.spec import CheckoutRolloutSpec, Gate
from checkout_gates.api.spec import PrometheusSource as PrometheusSpec
from checkout_gates.gates.observations import SCALAR, Sample, Segment, SignalReading, segment_name, segment_of
from checkout_gates.metrics.singleflight import SingleFlight, moment
from checkout_gates.metrics.templates import TemplateError, promql_duration, query_variables, render

Side = Literal["stable", "canary"]
SIDES: tuple[Side, Side] = ("stable", "canary")

# Roles of a gate's queries: the signal's own and the optional samples behind it.
Role = Literal["good", "total", "count", "quantile", "gauge", "samples", "exposure"]

SETTLE_SECONDS = 2.0  # how old the evaluation instant is: longer than a scrape takes to be stored
_QUERY_SHOWN = 240  # characters of a rejected query quoted in an error
_BODY_SHOWN = 300  # characters of a non-JSON error answer quoted in an error


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


class PrometheusSource:
    """Reads gates from one Prometheus server.

    ``bearer_token`` or ``basic_auth`` (username, password) are the values already read from the
    Secrets that ``spec.prometheus`` names; reading Secrets is the controller's job.
    ``retries`` extra attempts follow a connection error or a 5xx answer, after
    ``backoff_seconds``, then twice that, and so on. ``dedupe_seconds`` > 0 shares identical
    queries within buckets of that length (see the module's docstring); 0 sends every query.
    Close the source (or use it as an async context manager) to release its threads and connections.
    """

    def __init__(
        self,
        config: PrometheusSpec,
        *,
        bearer_token: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        max_workers: int = 8,
        retries: int = 2,
        backoff_seconds: float = 0.2,
        dedupe_seconds: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if bearer_token is not None and basic_auth is not None:
            raise ValueError("Prometheus takes a bearer token or basic auth, not both")
        self.address = config.address.rstrip("/")
        self.timeout_seconds = parse_duration(config.timeout)
        self.retries = max(0, retries)
        self.backoff_seconds = backoff_seconds
        self.dedupe_seconds = max(0.0, dedupe_seconds)
        self._clock = clock
        self._flights: SingleFlight[list[Series]] = SingleFlight(clock)
        self._sent = 0
        headers = {"Authorization": f"Bearer {bearer_token}"} if bearer_token is not None else None
        session = requests.Session()
        # No retries inside requests/urllib3: they would sleep on a pool thread and ignore the
        # difference between a refused connection and a rejected query. Retrying is done here.
        no_retry = Retry(total=0, raise_on_redirect=False, raise_on_status=False)
        self._client = PrometheusConnect(
            url=self.address,
            headers=headers,
            auth=basic_auth,
            retry=no_retry,
            session=session,
            timeout=self.timeout_seconds,
        )
        session.mount(self.address, HTTPAdapter(max_retries=no_retry, pool_maxsize=max_workers))
        self._session = session
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="prometheus")

    # --- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        self._flights.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._session.close()

    async def __aenter__(self) -> PrometheusSource:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

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
            (self.address, promql, when.timestamp()),
            lambda: self._query_retrying(promql, when),
            keep_until=keep_until,
        )

    async def _query_retrying(self, promql: str, at: datetime | None) -> list[Series]:
        attempt = 0
        while True:
            try:
                return await self._query_once(promql, at)
            except QueryError as error:
                if not error.retryable or attempt >= self.retries:
                    if error.retryable and attempt:
                        raise QueryError(
                            f"{error.message} (after {attempt + 1} attempts)", query=error.query
                        ) from error
                    raise
            await asyncio.sleep(self.backoff_seconds * 2**attempt)
            attempt += 1

    async def _query_once(self, promql: str, at: datetime | None) -> list[Series]:
        params = {"timeout": promql_duration(self.timeout_seconds)}  # Prometheus stops evaluating then too
        if at is not None:
            moment = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
            params["time"] = f"{moment.timestamp():.3f}"
        call = functools.partial(self._client.custom_query, query=promql, params=params, timeout=self.timeout_seconds)
        loop = asyncio.get_running_loop()
        try:
            # requests' timeout bounds each socket wait; the outer bound also covers a slow drip.
            result = await asyncio.wait_for(loop.run_in_executor(self._executor, call), self.timeout_seconds + 1.0)
        except requests.ConnectTimeout as error:
            raise QueryError(
                f"cannot connect to Prometheus at {self.address} within {self.timeout_seconds:g}s", retryable=True
            ) from error
        except requests.ConnectionError as error:
            if _read_timeout(error):
                raise self._timed_out() from error
            raise QueryError(
                f"cannot connect to Prometheus at {self.address}: {_connection_reason(error)}", retryable=True
            ) from error
        except (TimeoutError, requests.Timeout) as error:
            raise self._timed_out() from error
        except PrometheusApiClientException as error:
            raise _http_error(str(error), promql) from error
        except requests.RequestException as error:
            raise QueryError(f"request to Prometheus at {self.address} failed: {error}") from error
        except (ValueError, KeyError, TypeError) as error:
            raise QueryError(
                f"Prometheus at {self.address} gave an answer that is not a query result ({error}); "
                "is spec.prometheus.address the Prometheus HTTP API?"
            ) from error
        return parse_result(result)

    def _timed_out(self) -> QueryError:
        # Not retried: a server too slow to answer in time is not helped by asking again at once.
        return QueryError(
            f"Prometheus at {self.address} did not answer within {self.timeout_seconds:g}s (spec.prometheus.timeout)"
        )

    # --- gates -------------------------------------------------------------------------------

    async def read_gate(
        self,
        gate: Gate,
        *,
        spec: CheckoutRolloutSpec,
        namespace: str,
        name: str,
        window_seconds: float,
        at: datetime | None = None,
    ) -> SignalReading:
        """Both variants' readings of one gate over the last ``window_seconds`` (before ``at``)."""
        try:
            return await self._read_gate(
                gate, spec=spec, namespace=namespace, name=name, window_seconds=window_seconds, at=at
            )
        except Exception as error:  # the contract: a reading, never an exception
            return SignalReading(
                gate=gate.name, error=f"unexpected {type(error).__name__}: {error}", window_seconds=window_seconds
            )

    async def read_gates(
        self,
        gates: Sequence[Gate],
        *,
        spec: CheckoutRolloutSpec,
        namespace: str,
        name: str,
        window_seconds: float | Mapping[str, float],
        at: datetime | None = None,
    ) -> dict[str, SignalReading]:
        """Readings of several gates, concurrently; ``window_seconds`` may differ per gate name."""

        def window(gate: Gate) -> float:
            return window_seconds[gate.name] if isinstance(window_seconds, Mapping) else window_seconds

        readings = await asyncio.gather(
            *(
                self.read_gate(gate, spec=spec, namespace=namespace, name=name, window_seconds=window(gate), at=at)
                for gate in gates
            )
        )
        return {reading.gate: reading for reading in readings}

    async def _read_gate(
        self,
        gate: Gate,
        *,
        spec: CheckoutRolloutSpec,
        namespace: str,
        name: str,
        window_seconds: float,
        at: datetime | None,
    ) -> SignalReading:
        templates = gate_queries(gate)
        jobs: list[tuple[Side, Role, str]] = []
        try:
            for side in SIDES:
                variables = query_variables(spec, side, namespace=namespace, name=name, window_seconds=window_seconds)
                jobs += [(side, role, render(template, variables)) for role, template in templates.items()]
        except (TemplateError, ValueError) as error:
            return SignalReading(gate=gate.name, error=str(error), window_seconds=window_seconds)

        when, keep = (at, False) if at is not None else (self.evaluation_instant(), True)
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

        samples: dict[Side, dict[Segment, Sample]] = {}
        for side in SIDES:
            try:
                samples[side] = _samples(gate, {role: values[side, role] for role in templates})
            except QueryError as error:
                return SignalReading(gate=gate.name, error=f"{side}: {error.message}", window_seconds=window_seconds)
        return SignalReading(
            gate=gate.name, canary=samples["canary"], stable=samples["stable"], window_seconds=window_seconds
        )


# --- result parsing ---------------------------------------------------------------------------


def parse_result(result: Any) -> list[Series]:
    """The series of an instant query's ``data.result`` (a vector, or a scalar as one series)."""
    if (
        isinstance(result, list)
        and len(result) == 2
        and isinstance(result[0], int | float)
        and isinstance(result[1], str)
    ):
        return [Series(labels={}, value=_number(result[1], {}), scalar=True)]
    if not isinstance(result, list):
        raise QueryError(f"unexpected result {str(result)[:_BODY_SHOWN]!r}")
    series: list[Series] = []
    for item in result:
        if not isinstance(item, dict):
            raise QueryError(f"unexpected result item {str(item)[:_BODY_SHOWN]!r}")
        labels = {str(key): str(value) for key, value in (item.get("metric") or {}).items()}
        if "values" in item:
            raise QueryError(
                "the query returns a range vector; a gate query must return an instant vector or a scalar "
                "(wrap the range selector in a function such as increase(...) or rate(...))"
            )
        sample = item.get("value")
        if not isinstance(sample, list) or len(sample) != 2:
            raise QueryError(f"unexpected result item {str(item)[:_BODY_SHOWN]!r}")
        series.append(Series(labels=labels, value=_number(sample[1], labels)))
    return series


def by_segment(series: Sequence[Series], segment_by: Sequence[str]) -> dict[Segment, float]:
    """Values keyed by segment; two series in one segment are an error (aggregate by the segment labels)."""
    values: dict[Segment, float] = {}
    for one in series:
        segment = SCALAR if one.scalar else segment_of(one.labels, list(segment_by))
        if segment in values:
            labels = ", ".join(sorted(one.labels)) or "none"
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
        raise QueryError(f"returned {text!r}{where}, which is not a number") from None
    if math.isnan(value):
        raise QueryError(
            f"returned NaN{where} (no data in the window, e.g. histogram_quantile over zero rates, or 0/0)"
        )
    return value


def _labels_text(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{key}="{value}"' for key, value in sorted(labels.items())) + "}"


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
    # A segment only in the samples query has observations but no value: the core sees it as missing data.
    segments = list(signal) + [segment for segment in extra if segment not in signal]
    return {segment: Sample(value=signal.get(segment), samples=extra.get(segment)) for segment in segments}


# --- error text -------------------------------------------------------------------------------

_HTTP_ERROR = re.compile(r"^HTTP Status Code (\d+) \((.*)\)$", re.DOTALL)
_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\")\]]+")


def _http_error(text: str, promql: str) -> QueryError:
    """A QueryError from prometheus-api-client's "HTTP Status Code 400 (b'...')" with Prometheus' own text."""
    match = _HTTP_ERROR.match(text)
    if match is None:
        return QueryError(f"Prometheus answered: {text[:_BODY_SHOWN]}")
    status = int(match.group(1))
    body = match.group(2)
    try:
        raw = ast.literal_eval(body)
        body = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    except (ValueError, SyntaxError):
        pass
    retryable = status >= 500
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and answer.get("error"):
        kind = answer.get("errorType", "error")
        if retryable:
            return QueryError(f"Prometheus failed the query (HTTP {status}, {kind}): {answer['error']}", retryable=True)
        return QueryError(f"Prometheus rejected the query (HTTP {status}, {kind}): {answer['error']}", query=promql)
    return QueryError(f"Prometheus answered HTTP {status}: {body.strip()[:_BODY_SHOWN]}", retryable=retryable)


def _read_timeout(error: requests.ConnectionError) -> bool:
    """Whether urllib3 wrapped a read timeout (it does when it gives up retrying) as a connection error."""
    reason = getattr(error.args[0], "reason", None) if error.args else None
    return isinstance(reason, ReadTimeoutError)


def _connection_reason(error: requests.ConnectionError) -> str:
    text = str(error)
    match = _ERRNO.search(text)
    if match is not None:
        return match.group(0).strip()
    return text[:_BODY_SHOWN]


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
