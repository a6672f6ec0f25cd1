"""The Prometheus source's HTTP against a scripted server on 127.0.0.1 (real sockets, no Prometheus).

Each test scripts the answers: Prometheus' own error JSON (400, 422, 503), a bare 500, a redirect,
an HTML page from something that is not Prometheus, invalid JSON, an answer that never comes or
drips, a connection closed without an answer. What comes back is always a reading (never an
exception) whose error says what happened, bounded, without the foreign body; what is retried is
retried, what is not is asked once.
"""

from __future__ import annotations

import gc
import json
import socket
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from checkout_gates.api.spec import CheckoutRolloutSpec, Gate, PrometheusSpec
from checkout_gates.gates.observations import SignalReading
from checkout_gates.metrics import prometheus
from checkout_gates.metrics.prometheus import PrometheusSource

AT = datetime(2026, 11, 27, 10, 0, 0, 250000, tzinfo=UTC)
SECRET = "s3cret-in-the-page"  # planted in foreign bodies: it must never reach an error text
GAUGE = Gate.model_validate({"name": "queue", "gauge": 'max(queue{variant="{{variant}}"})', "max": 10})
SPEC = CheckoutRolloutSpec.model_validate(
    {
        "stable": {"service": "checkout-stable"},
        "canary": {"service": "checkout-canary"},
        "routing": {"gatewayAPI": {"httpRoute": "checkout"}},
        "prometheus": {"address": "http://127.0.0.1:1"},
        "owner": {"name": "oncall", "page": [{"webhook": {"url": "http://127.0.0.1:9/"}}]},
        "gates": [GAUGE.to_wire()],
        "steps": [{"setWeight": 5}],
    }
)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def prometheus_json(status: int, document: dict[str, Any]) -> Reply:
    return Reply(status, json.dumps(document).encode())


def vector(value: str = "3") -> Reply:
    result = [{"metric": {}, "value": [AT.timestamp(), value]}]
    return prometheus_json(200, {"status": "success", "data": {"resultType": "vector", "result": result}})


@dataclass
class Asked:
    path: str
    params: dict[str, str]
    headers: dict[str, str]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a handler that hangs up on purpose fails to flush: not worth a traceback


class Server:
    """HTTP on 127.0.0.1 answering with ``reply`` (a Reply, or a callable doing its own thing)."""

    def __init__(self) -> None:
        self.reply: Reply | Callable[[BaseHTTPRequestHandler], None] = vector()
        self.asked: list[Asked] = []
        self.release = threading.Event()  # ends the handlers that wait (timeouts, drips)
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Prometheus

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                params = {key: values[0] for key, values in parse_qs(url.query).items()}
                owner.asked.append(Asked(url.path, params, dict(self.headers)))
                reply = owner.reply
                if callable(reply):
                    reply(self)
                    return
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.http = _QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self.http.shutdown()
        self.http.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    running = Server()
    yield running
    running.close()


def source(server: Server, timeout: str = "5s", **options: Any) -> PrometheusSource:
    return PrometheusSource(PrometheusSpec(address=server.url, timeout=timeout), backoff_seconds=0.01, **options)


async def read(source: PrometheusSource) -> SignalReading:
    async with source:
        return await source.read_gate(GAUGE, spec=SPEC, namespace="payments", name="checkout", window_seconds=30, at=AT)


# --- answers ---------------------------------------------------------------------------------------


async def test_a_query_result_and_the_request_that_asked_for_it(server: Server) -> None:
    reading = await read(source(server, timeout="1500ms", bearer_token="t0ken"))
    assert reading.error is None, reading.error
    assert reading.canary[()].value == 3.0 and reading.stable[()].value == 3.0
    assert len(server.asked) == 2
    asked = server.asked[0]
    assert asked.path == "/api/v1/query"
    assert asked.params["query"] in ('max(queue{variant="stable"})', 'max(queue{variant="canary"})')
    assert asked.params["time"] == f"{AT.timestamp():.3f}"
    assert asked.params["timeout"] == "1500ms"  # Prometheus takes no fractions: not 1.5s
    assert asked.headers["Authorization"] == "Bearer t0ken"
    assert asked.headers["Accept-Encoding"] == "identity"  # small answers: gzip costs more than it saves


async def test_basic_auth_is_sent(server: Server) -> None:
    await read(source(server, basic_auth=("alice", "pw")))
    assert server.asked[0].headers["Authorization"] == "Basic YWxpY2U6cHc="


async def test_400_with_prometheus_error_is_rejected_with_its_text_and_the_query(server: Server) -> None:
    server.reply = prometheus_json(
        400, {"status": "error", "errorType": "bad_data", "error": "1:5: parse error: unclosed left parenthesis"}
    )
    reading = await read(source(server, retries=2))
    assert reading.error is not None
    assert "Prometheus rejected the query (HTTP 400, bad_data): 1:5: parse error: unclosed left parenthesis" in (
        reading.error
    )
    assert "stable gauge, canary gauge queries" in reading.error
    assert '(query: max(queue{variant="stable"}))' in reading.error
    assert len(server.asked) == 2  # not retried


async def test_422_execution_error_is_not_retried(server: Server) -> None:
    server.reply = prometheus_json(
        422, {"status": "error", "errorType": "execution", "error": "query processing would load too many samples"}
    )
    reading = await read(source(server, retries=2))
    assert reading.error is not None
    assert "Prometheus rejected the query (HTTP 422, execution): query processing would load too many samples" in (
        reading.error
    )
    assert len(server.asked) == 2


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (
            prometheus_json(503, {"status": "error", "errorType": "unavailable", "error": "too many queries"}),
            "Prometheus failed the query (HTTP 503, unavailable): too many queries",
        ),
        (
            prometheus_json(500, {"status": "error", "errorType": "internal", "error": "overloaded"}),
            "Prometheus failed the query (HTTP 500, internal): overloaded",
        ),
        (
            Reply(500, f"<html>{SECRET}</html>".encode(), "text/html; charset=utf-8"),
            "gave an answer that is not a query result (HTTP 500, text/html)",
        ),
    ],
    ids=["503-prometheus", "500-prometheus", "500-html"],
)
async def test_5xx_is_retried_with_backoff(server: Server, reply: Reply, words: str) -> None:
    server.reply = reply
    reading = await read(source(server, retries=2))
    assert reading.error is not None
    assert words in reading.error and "after 3 attempts" in reading.error
    assert SECRET not in reading.error
    assert len(server.asked) == 2 * 3


async def test_a_retry_that_succeeds_gives_the_reading(server: Server) -> None:
    answers = iter([prometheus_json(503, {"status": "error", "errorType": "unavailable", "error": "busy"})] * 2)

    def flaky(handler: BaseHTTPRequestHandler) -> None:
        reply = next(answers, vector("4"))
        handler.send_response(reply.status)
        handler.send_header("Content-Type", reply.content_type)
        handler.send_header("Content-Length", str(len(reply.body)))
        handler.end_headers()
        handler.wfile.write(reply.body)

    server.reply = flaky
    reading = await read(source(server, retries=2))
    assert reading.error is None, reading.error
    assert reading.canary[()].value == 4.0


async def test_a_redirect_is_not_followed(server: Server) -> None:
    elsewhere = Server()
    try:
        server.reply = Reply(302, b"", "text/html", {"Location": f"{elsewhere.url}/api/v1/query?token={SECRET}"})
        reading = await read(source(server, bearer_token="t0ken", retries=2))
    finally:
        elsewhere.close()
    assert reading.error is not None
    assert "answered with a redirect (HTTP 302), which is not followed" in reading.error
    assert SECRET not in reading.error and elsewhere.url not in reading.error
    assert elsewhere.asked == []  # the credentials went nowhere else
    assert len(server.asked) == 2  # and asking again would not help


@pytest.mark.parametrize("status", [200, 502])
async def test_an_html_page_is_not_reflected(server: Server, status: int) -> None:
    server.reply = Reply(status, f"<html><body>login required {SECRET}</body></html>".encode(), "text/html")
    reading = await read(source(server, retries=0))
    assert reading.error is not None
    assert f"gave an answer that is not a query result (HTTP {status}, text/html)" in reading.error
    assert "is spec.prometheus.address the Prometheus HTTP API?" in reading.error
    assert SECRET not in reading.error and "login" not in reading.error


async def test_json_that_is_not_prometheus_is_not_reflected(server: Server) -> None:
    server.reply = prometheus_json(200, {"hello": SECRET})
    reading = await read(source(server))
    assert reading.error is not None
    assert "not a query result (HTTP 200, application/json)" in reading.error
    assert SECRET not in reading.error


async def test_invalid_json(server: Server) -> None:
    server.reply = Reply(200, b'{"status": "success", "data": {"resultType": "vector", "resu')
    reading = await read(source(server))
    assert reading.error is not None
    assert "not a query result (HTTP 200, application/json)" in reading.error


async def test_refused_credentials(server: Server) -> None:
    server.reply = Reply(401, f"Unauthorized {SECRET}".encode(), "text/plain")
    reading = await read(source(server, bearer_token="wrong"))
    assert reading.error is not None
    assert "refused the credentials (HTTP 401, text/plain)" in reading.error
    assert SECRET not in reading.error


async def test_prometheus_error_text_is_bounded_and_on_one_line(server: Server) -> None:
    server.reply = prometheus_json(400, {"status": "error", "errorType": "bad_data\n" * 50, "error": "x\n" * 10_000})
    reading = await read(source(server))
    assert reading.error is not None
    assert "\n" not in reading.error
    assert len(reading.error) < 1200  # both variants' errors, each bounded, plus the query


async def test_a_value_that_is_not_a_number_is_quoted_briefly(server: Server) -> None:
    server.reply = vector("lots" * 1000)
    reading = await read(source(server))
    assert reading.error is not None and "which is not a number" in reading.error
    assert len(reading.error) < 300


async def test_an_answer_larger_than_the_bound_is_refused(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prometheus, "MAX_ANSWER_BYTES", 2**20)
    series = [{"metric": {"provider": f"p{i:06d}"}, "value": [AT.timestamp(), "1"]} for i in range(30_000)]
    server.reply = prometheus_json(200, {"status": "success", "data": {"resultType": "vector", "result": series}})
    reading = await read(source(server))
    assert reading.error is not None and "answered with more than 1 MiB" in reading.error


def many_series(count: int, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return [
        {"metric": {"provider": f"p{i:06d}", **(labels or {})}, "value": [AT.timestamp(), "1"]} for i in range(count)
    ]


@pytest.mark.parametrize("separators", [(",", ":"), (", ", ": ")], ids=["prometheus", "python"])
async def test_too_many_series_are_refused_before_any_is_built(
    server: Server, monkeypatch: pytest.MonkeyPatch, separators: tuple[str, str]
) -> None:
    """100k series once took the operator to 608 MB (its limit is 512Mi), and, refused only once
    parsed, past 900 MB and stalling other rollouts end to end (six such answers an evaluation,
    tests/integration/test_oversized_answers.py): a query that forgot to aggregate is Inconclusive
    with what to do, counted in the answer's bytes (as Prometheus or Python's json spell it)."""
    parsed: list[int] = []
    document = prometheus._prometheus_document
    monkeypatch.setattr(prometheus, "_prometheus_document", lambda body: parsed.append(len(body)) or document(body))
    answer = {"status": "success", "data": {"resultType": "vector", "result": many_series(prometheus.MAX_SERIES + 1)}}
    server.reply = Reply(200, json.dumps(answer, separators=separators).encode())
    reading = await read(source(server))
    assert reading.error is not None
    assert f"{prometheus.MAX_SERIES + 1} series in one answer" in reading.error and "sum by" in reading.error
    assert parsed == [], "the answer was parsed before its series were counted"


async def test_series_counted_in_the_bytes_are_series_not_labels_named_metric(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prometheus, "MAX_SERIES", 10)
    labels = {"metric": "checkout", "note": 'a "metric":{ in a value'}
    series = many_series(8, labels)
    server.reply = prometheus_json(200, {"status": "success", "data": {"resultType": "vector", "result": series}})
    reading = await read(source(server))
    assert reading.error is None, reading.error  # 8 series, not 16 or 24
    assert len(reading.canary) == 8
    matrix = [{"metric": one["metric"], "values": [one["value"]]} for one in many_series(11)]
    server.reply = prometheus_json(200, {"status": "success", "data": {"resultType": "matrix", "result": matrix}})
    reading = await read(source(server))
    assert reading.error is not None and "range vector" in reading.error  # the likelier mistake, whatever the count


@pytest.mark.parametrize("kind", ["larger-than-the-bound", "too-many-series"])
async def test_a_refused_answer_is_freed_at_once_not_by_a_garbage_collection(
    server: Server, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """A failed query's error is kept (shared for its bucket), in reference cycles with the task
    that raised it. Its traceback's frames held the answer's bytes until a garbage collection, which
    allocating bytes does not bring about: six 16 MiB answers an evaluation took the operator past
    1 GB end to end. The error keeps its message, not the frames."""
    monkeypatch.setattr(prometheus, "MAX_ANSWER_BYTES", 2**20)
    monkeypatch.setattr(prometheus, "MAX_SERIES", 1000)
    series = many_series(30_000) if kind == "larger-than-the-bound" else many_series(6000, {"pod": "x" * 80})
    server.reply = prometheus_json(200, {"status": "success", "data": {"resultType": "vector", "result": series}})
    assert (len(server.reply.body) > 2**20) == (kind == "larger-than-the-bound")
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(4):
            reading = await read(source(server, dedupe_seconds=60.0))
            assert reading.error is not None and ("MiB" in reading.error or "series in one answer" in reading.error)
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        gc.enable()
    # Kept before: all 8 answers (8-12 MiB). Now: each cut answer's last chunk, held by the stream
    # left unfinished, and the closed sources' own cycles (~2 MiB together).
    assert kept < 4 * 2**20, f"{kept / 2**20:.1f} MiB kept after 8 refused answers of about 1 MiB"


async def test_a_large_answer_is_parsed_off_the_event_loop(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[str] = []
    result = prometheus.PrometheusSource._result

    def recording_result(self: PrometheusSource, answer: Any, promql: str) -> Any:
        threads.append(threading.current_thread().name)
        return result(self, answer, promql)

    monkeypatch.setattr(prometheus.PrometheusSource, "_result", recording_result)
    monkeypatch.setattr(prometheus, "PARSE_OFF_LOOP_BYTES", 1024)
    series = [{"metric": {"provider": f"p{i:04d}"}, "value": [AT.timestamp(), "1"]} for i in range(200)]
    server.reply = prometheus_json(200, {"status": "success", "data": {"resultType": "vector", "result": series}})
    await read(source(server))
    assert threads and all(name != threading.main_thread().name for name in threads)


# --- no answer -------------------------------------------------------------------------------------


async def test_a_timeout_is_not_retried(server: Server) -> None:
    def never(handler: BaseHTTPRequestHandler) -> None:
        server.release.wait()  # until the test ends: the client must give up first

    server.reply = never
    reading = await read(source(server, timeout="200ms", retries=2))
    assert reading.error is not None
    assert "did not answer within 0.2s (spec.prometheus.timeout)" in reading.error
    assert len(server.asked) == 2  # stable and canary, once each


async def test_a_slow_drip_is_cut_off(server: Server) -> None:
    """Each byte comes within the read timeout, the whole answer never does."""

    def drip(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", "100000")
        handler.end_headers()
        while not server.release.wait(0.05):
            try:
                handler.wfile.write(b" ")
                handler.wfile.flush()
            except OSError:
                return

    server.reply = drip
    reading = await read(source(server, timeout="300ms", retries=2))
    assert reading.error is not None
    assert "did not answer within 0.3s" in reading.error


async def test_a_connection_closed_without_an_answer_is_retried(server: Server) -> None:
    def hang_up(handler: BaseHTTPRequestHandler) -> None:
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)

    server.reply = hang_up
    reading = await read(source(server, retries=2))
    assert reading.error is not None
    assert f"the connection to Prometheus at {server.url} broke" in reading.error
    assert "after 3 attempts" in reading.error
    assert len(server.asked) == 2 * 3


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_refused_connection_is_retried_and_says_so() -> None:
    address = f"http://127.0.0.1:{closed_port()}"
    dead = PrometheusSource(PrometheusSpec(address=address), retries=2, backoff_seconds=0.01)
    reading = await read(dead)
    assert reading.error is not None
    assert f"cannot connect to Prometheus at {address}: Connection refused (after 3 attempts)" in reading.error


async def test_check_gives_the_reason_instead_of_raising(server: Server) -> None:
    async with source(server) as live:
        assert await live.check(AT) is None
        assert live.description == f"Prometheus at {server.url}"
    address = f"http://127.0.0.1:{closed_port()}"
    async with PrometheusSource(PrometheusSpec(address=address), retries=0) as dead:
        problem = await dead.check(AT)
    assert problem is not None and "Connection refused" in problem
