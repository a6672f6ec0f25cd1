"""``checkout-gates evaluate`` without Prometheus: which gates and windows, and the report formats."""

from __future__ import annotations

import contextlib
import json
import socket
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from checkout_gates.api.resource import CheckoutRollout
from checkout_gates.cli.common import parse_time
from checkout_gates.cli.main import main
from checkout_gates.cli.output import Style, table
from checkout_gates.cli.reports import (
    Evaluation,
    GateEvaluation,
    evaluation_json,
    evaluation_junit,
    evaluation_markdown,
    evaluation_table,
)
from checkout_gates.gates.evaluate import evaluate_gate
from checkout_gates.gates.observations import Sample, SignalReading
from checkout_gates.rollout.plan import plan

from .rollouts import T0, make_rollout

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "gates" / "card-payments.yaml"


def sequential_rollout() -> CheckoutRollout:
    rollout = make_rollout()
    auth = rollout.spec.gates[0].model_copy(update={"method": "sequential"})
    spec = rollout.spec.model_copy(update={"gates": [auth, rollout.spec.gates[1]]})
    return rollout.model_copy(update={"spec": spec})


def test_plan_every_gate_with_its_first_gate_step() -> None:
    contexts = {c.gate.name: c for c in plan(sequential_rollout().spec, step=None, elapsed_seconds=None)}
    # steps: setWeight 5, gate (1m), approval, setWeight 25, gate (1m), setWeight 100
    auth = contexts["auth-approval"]
    assert auth.step == 1 and auth.canary_share == 0.05
    assert auth.window_seconds == 60.0  # sequential: the gate step's whole window
    assert contexts["duplicate-charges"].window_seconds == 30.0  # threshold: the analysis interval


def test_plan_at_a_step_with_elapsed() -> None:
    contexts = plan(sequential_rollout().spec, step=4, elapsed_seconds=45.0)
    assert [c.gate.name for c in contexts] == ["auth-approval", "duplicate-charges"]
    assert {c.canary_share for c in contexts} == {0.25}
    assert {c.step for c in contexts} == {4}
    assert contexts[0].window_seconds == 45.0
    # Before any gate step only critical gates are watched.
    assert [c.gate.name for c in plan(sequential_rollout().spec, step=0, elapsed_seconds=None)] == ["duplicate-charges"]


def evaluation() -> Evaluation:
    rollout = make_rollout()
    auth, dups = rollout.spec.gates
    adyen, stripe = (("provider", "adyen"),), (("provider", "stripe"),)
    reading = SignalReading(
        gate="auth-approval",
        canary={
            adyen: Sample(value=0.90, samples=1000, good=900, total=1000),
            stripe: Sample(value=0.97, samples=50, good=48.5, total=50),
        },
        stable={
            adyen: Sample(value=0.97, samples=9000, good=8730, total=9000),
            stripe: Sample(value=0.97, samples=9000, good=8730, total=9000),
        },
        window_seconds=30,
    )
    clean = SignalReading(gate="duplicate-charges", canary={(): Sample(value=0)}, stable={(): Sample(value=0)})
    judged = (
        GateEvaluation(auth, evaluate_gate(auth, reading, canary_share=0.05), 30.0, 0.05, 1),
        GateEvaluation(dups, evaluate_gate(dups, clean, canary_share=0.05), 30.0, 0.05, 1),
    )
    return Evaluation(rollout=rollout, at=T0, source="http://127.0.0.1:9090", step=1, gates=judged)


def test_junit_has_one_testcase_per_gate_and_segment() -> None:
    root = ET.fromstring(evaluation_junit(evaluation()))
    cases = root.findall("./testsuite/testcase")
    assert [c.get("name") for c in cases] == [
        "auth-approval [provider=adyen]",
        "auth-approval [provider=stripe]",
        "duplicate-charges [all]",
    ]
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    failure = cases[0].find("failure")
    assert failure is not None and "is below stable" in (failure.get("message") or "")
    skipped = cases[1].find("skipped")
    assert skipped is not None and "minSamples" in (skipped.get("message") or "")
    assert cases[2].find("failure") is None and cases[2].find("skipped") is None


def test_table_json_and_markdown() -> None:
    result = evaluation()
    assert result.exit_code == 1 and result.verdict == "Fail"
    text = evaluation_table(result, Style(False))
    assert text.splitlines()[0].split() == [
        "GATE",
        "SEGMENT",
        "CANARY",
        "STABLE",
        "SAMPLES",
        "RULE",
        "VERDICT",
        "REASON",
    ]
    assert "\x1b[" not in text
    assert text.rstrip().splitlines()[-1] == (
        "payments/checkout-api at 2026-11-27T10:00:00Z: 2 gates, 3 segments: 1 pass, 1 fail, 0 inconclusive "
        "-> Fail: auth-approval provider=adyen"
    )
    document = json.loads(evaluation_json(result))
    assert document["exitCode"] == 1
    assert document["summary"] == {"gates": 2, "segments": 3, "pass": 1, "fail": 1, "inconclusive": 0}
    assert document["gates"][0]["segments"][0]["value"] == pytest.approx(0.9)
    markdown = evaluation_markdown(result)
    rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 3  # header + one per gate and segment
    assert "❌ Fail" in rows[1] and "90.00%" in rows[1]


def test_colour_only_when_asked() -> None:
    coloured = table(("A", "VERDICT"), [("x", "Fail")], style=Style(True), colour_column=1)
    assert "\x1b[31mFail\x1b[0m" in coloured


def test_parse_time_forms() -> None:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert parse_time("now", now=now) == now
    assert parse_time("now-90m", now=now) == now - timedelta(minutes=90)
    assert parse_time("2026-11-27T10:00:00Z", now=now) == T0
    assert parse_time("2026-11-27T11:00:00+01:00", now=now) == T0
    assert parse_time("2026-11-27T10:00:00", now=now) == T0
    assert parse_time(str(int(T0.timestamp())), now=now) == T0
    with pytest.raises(ValueError, match="is not a time"):
        parse_time("yesterday", now=now)


def test_invalid_live_inputs_exit_3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["evaluate", str(EXAMPLE), "--prometheus", "http://127.0.0.1:1", "--step", "99"]) == 3
    assert "the rollout has steps 0 to 7" in capsys.readouterr().err
    assert main(["evaluate", str(EXAMPLE), "--prometheus", "localhost:9090"]) == 3
    assert "is not an http:// or https:// URL" in capsys.readouterr().err
    assert main(["evaluate", str(EXAMPLE), "--at", "soonish"]) == 3
    assert "--at: 'soonish' is not a time" in capsys.readouterr().err
    two = tmp_path / "two.yaml"
    two.write_text(EXAMPLE.read_text() + "\n---\n" + EXAMPLE.read_text())
    assert main(["evaluate", str(two)]) == 3
    assert "holds 2 documents" in capsys.readouterr().err


def test_a_dry_run_never_asks_the_address_a_file_names_unless_told(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In CI the file may come from a pull request: its spec.prometheus.address is the author's
    choice, and asking it would make the runner fetch any internal URL (hardening, finding 3)."""
    asked: list[bytes] = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    text = EXAMPLE.read_text(encoding="utf-8")
    document = yaml.safe_load(text)
    document["spec"]["prometheus"]["address"] = f"http://127.0.0.1:{port}/internal#"
    rollout = tmp_path / "from-a-pull-request.yaml"
    rollout.write_text(yaml.safe_dump(document), encoding="utf-8")
    monkeypatch.delenv("CHECKOUT_GATES_PROMETHEUS", raising=False)
    try:
        for command in (["evaluate", str(rollout)], ["backtest", str(rollout), "--from", "now-1h", "--to", "now"]):
            assert main(command) == 3
            err = capsys.readouterr().err
            assert "asks only the Prometheus given with --prometheus URL" in err and "--use-file-address" in err
        with contextlib.suppress(TimeoutError):
            connection, _ = listener.accept()
            asked.append(connection.recv(100))
            connection.close()
    finally:
        listener.close()
    assert asked == [], "no request went to the file's address"


def test_the_prometheus_of_the_environment_is_the_dry_runs_and_replays_ignore_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHECKOUT_GATES_PROMETHEUS", "http://127.0.0.1:1")
    assert main(["evaluate", str(EXAMPLE)]) == 3
    assert "cannot connect to Prometheus at http://127.0.0.1:1" in capsys.readouterr().err
