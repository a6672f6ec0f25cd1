"""--log-format json: every line on stderr is one JSON object, kopf's own records included."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from checkout_gates.controller.logs import configure


@pytest.fixture(autouse=True)
def _restore_logging() -> object:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield None
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def test_json_lines_for_structlog_and_stdlib_records(capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", json=True)
    structlog.get_logger().warning("gate rejected", rollout="payments/checkout-api")
    logging.getLogger("kopf.objects").warning("Handler 'reconcile' failed temporarily: %s", "409 Conflict")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("kopf.reactor").exception("unexpected")
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is JSON, or this raises
    assert records[0]["event"] == "gate rejected" and records[0]["rollout"] == "payments/checkout-api"
    assert records[1]["event"] == "Handler 'reconcile' failed temporarily: 409 Conflict"
    assert records[1]["logger"] == "kopf.objects" and records[1]["level"] == "warning"
    assert "RuntimeError: boom" in records[2]["exception"]


def test_console_format_is_not_json(capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", json=False)
    logging.getLogger("kopf.objects").warning("plain")
    assert "plain" in capsys.readouterr().err
