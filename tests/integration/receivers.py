"""A local HTTP receiver for pages and notices (nothing mocked): it speaks PagerDuty's Events API
v2 (refuses what PagerDuty refuses, with 400; accepts with 202), a Slack incoming webhook (200
"ok") and a generic JSON webhook, and can be scripted to answer a path with given statuses first.
The fixture ``receiver`` is registered in conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

SEVERITIES = ("critical", "error", "warning", "info")


@dataclass
class Received:
    path: str
    body: Any
    status: int


@dataclass
class Receiver:
    """What the HTTP server saw and how it should answer."""

    requests: list[Received] = field(default_factory=list)
    script: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # path -> answers to give first
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def accepted(self, path: str) -> list[Any]:
        with self.lock:
            return [r.body for r in self.requests if r.path == path and 200 <= r.status < 300]

    def seen(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def audit_records(self, path: str) -> list[dict[str, Any]]:
        """The audit records the sink took at ``path``, in the order they came, repeats included."""
        return [record for body in self.accepted(path) for record in body["records"]]


def pagerduty_answer(body: Any) -> tuple[int, dict[str, Any]]:
    """PagerDuty's validation of an Events v2 event, as its documentation states it."""
    errors = []
    if not isinstance(body, dict):
        return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": ["not an object"]}
    if not body.get("routing_key"):
        errors.append("'routing_key' is missing or blank")
    action = body.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        errors.append("'event_action' is invalid")
    key = body.get("dedup_key", "")
    if action != "trigger" and not key:
        errors.append("'dedup_key' is required for acknowledge and resolve")
    if len(key) > 255:
        errors.append("'dedup_key' is too long")
    if action == "trigger":
        payload = body.get("payload") or {}
        if not payload.get("summary") or len(payload["summary"]) > 1024:
            errors.append("'payload.summary' is missing, blank or too long")
        if not payload.get("source"):
            errors.append("'payload.source' is missing or blank")
        if payload.get("severity") not in SEVERITIES:
            errors.append("'payload.severity' is invalid")
    if errors:
        return 400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
    return 202, {"status": "success", "message": "Event processed", "dedup_key": key}


def make_handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = None
            with receiver.lock:
                scripted = receiver.script.get(self.path)
                answer = scripted.pop(0) if scripted else None
            if answer is not None:
                status, text = answer
            elif self.path.startswith("/pagerduty"):
                status, doc = pagerduty_answer(body)
                text = json.dumps(doc)
            elif self.path.startswith("/slack"):
                ok = isinstance(body, dict) and bool(body.get("text"))
                status, text = (200, "ok") if ok else (400, "invalid_payload")
            else:
                status, text = 200, "{}"
            with receiver.lock:
                receiver.requests.append(Received(self.path, body, status))
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 429:
                self.send_header("Retry-After", "0")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving() as state:
        yield state


@contextlib.contextmanager
def serving() -> Iterator[Receiver]:
    """A receiver on a free loopback port for the block's duration."""
    state = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="page-receiver", daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
