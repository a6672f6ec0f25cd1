"""`checkout-gates plan --prometheus` against servers that misbehave: one that never answers,
and one that answers more segments than a profile takes. Each is a clear exit 3, never a
traceback or an "internal error".

The servers are real sockets on loopback: one accepts and never answers; the other speaks
Prometheus' instant-query API (its documented JSON) with a fixed, huge vector.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from checkout_gates.cli.main import main

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gates" / "refund-flow.yaml"


def rollout(tmp_path: Path) -> Path:
    document = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    document["spec"]["prometheus"]["timeout"] = "1s"
    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


@pytest.fixture
def silent() -> Iterator[str]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


class _Many(BaseHTTPRequestHandler):
    """Every instant query answers a vector of 300 segments (vector(1), the probe, one series)."""

    def do_GET(self) -> None:
        probe = "vector%281%29" in self.path or "vector(1)" in self.path
        series: list[dict[str, Any]] = [
            {"metric": {} if probe else {"provider": f"p{i}", "kind": "full"}, "value": [0, "10"]}
            for i in range(1 if probe else 300)
        ]
        body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": series}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def many() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Many)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_prometheus_that_never_answers_is_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], silent: str
) -> None:
    code = main(["plan", str(rollout(tmp_path)), "--prometheus", silent, "--at", "now-1h"])
    err = capsys.readouterr().err
    assert code == 3
    assert "unreachable" in err and "Traceback" not in err and "internal error" not in err, err


def test_more_segments_than_a_profile_takes_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], many: str
) -> None:
    code = main(["plan", str(rollout(tmp_path)), "--prometheus", many, "--at", "now-1h"])
    err = capsys.readouterr().err
    assert code == 3
    assert "300 segments" in err and "--profile" in err and "internal error" not in err, err
