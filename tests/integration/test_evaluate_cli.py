"""``checkout-gates evaluate`` and ``backtest`` against a real Prometheus holding the example recordings.

hack/make_recordings.py writes each recording's underlying counters and latency histogram as
OpenMetrics too; the three scenarios (healthy, regression, low-traffic) are backfilled side by
side, six hours back, each under its own ``scenario`` label, and each gets a copy of
examples/recordings/rollout.yaml whose queries select that label. The same generator, at the
same start, gives the recording the backtest is compared with.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from checkout_gates.cli.main import main
from checkout_gates_lab.testbed import Prometheus

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ROLLOUT = ROOT / "examples" / "recordings" / "rollout.yaml"
INTERVAL = timedelta(seconds=30)


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_recordings", ROOT / "hack" / "make_recordings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_recordings", module)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Backfilled:
    url: str
    start: datetime
    rollouts: dict[str, Path]
    recordings: dict[str, Path]
    generated: dict[str, Any]

    def at(self, minutes: float) -> str:
        return (self.start + timedelta(minutes=minutes)).isoformat()


@pytest.fixture(scope="module")
def backfilled(prometheus: Prometheus, tmp_path_factory: pytest.TempPathFactory) -> Backfilled:
    generator = _generator()
    folder = tmp_path_factory.mktemp("evaluate-cli")
    run = uuid.uuid4().hex[:8]
    start = (datetime.now(UTC) - timedelta(hours=6)).replace(second=0, microsecond=0)
    generated = {name: generator.generate(name, start=start) for name in generator.SCENARIOS}
    prometheus.backfill_openmetrics(
        generator.openmetrics([(g, {"run": run, "scenario": name}) for name, g in generated.items()])
    )
    template = ROLLOUT.read_text()
    rollouts, recordings = {}, {}
    for name, g in generated.items():
        selector = f'run="{run}", scenario="{name}", variant="{{{{variant}}}}"'
        text = template.replace('variant="{{variant}}"', selector)
        assert text.count(selector) == template.count('variant="{{variant}}"') > 0
        rollouts[name] = folder / f"{name}.yaml"
        rollouts[name].write_text(text)
        recordings[name] = folder / f"{name}.jsonl"
        recordings[name].write_text(g.jsonl())
    return Backfilled(prometheus.url, start, rollouts, recordings, generated)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def evaluate_json(capsys: pytest.CaptureFixture[str], backfilled: Backfilled, *argv: str) -> tuple[int, Any]:
    code, out, err = cli(capsys, "evaluate", *argv, "--prometheus", backfilled.url, "--output", "json")
    assert code != 3, err
    return code, json.loads(out)


def test_healthy_canary_passes(capsys: pytest.CaptureFixture[str], backfilled: Backfilled) -> None:
    # 30 minutes in, the healthy rollout is at its 25 % gate step (step 5).
    code, report = evaluate_json(
        capsys, backfilled, str(backfilled.rollouts["healthy"]), "--at", backfilled.at(30), "--step", "5"
    )
    assert code == 0, report
    assert report["verdict"] == "Pass"
    assert report["summary"] == {"gates": 4, "segments": 8, "pass": 4, "fail": 0, "inconclusive": 0}
    auth = next(g for g in report["gates"] if g["name"] == "auth-approval")
    assert auth["windowSeconds"] == 15 * 60  # sequential: the whole 15m pass window of step 5
    assert auth["canaryShare"] == 0.25


def test_regressed_canary_fails_with_junit(
    capsys: pytest.CaptureFixture[str], backfilled: Backfilled, tmp_path: Path
) -> None:
    junit = tmp_path / "gates.xml"
    code, out, err = cli(
        capsys,
        "evaluate",
        str(backfilled.rollouts["regression"]),
        "--prometheus",
        backfilled.url,
        "--at",
        backfilled.at(30),
        "--step",
        "1",
        "--elapsed",
        "25m",
        "--output",
        "junit",
        "--output-file",
        str(junit),
    )
    assert code == 1, err
    summary = out.rstrip().splitlines()[-1]
    assert "-> Fail: auth-approval" in summary and "provider=adyen" in summary

    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    # One testcase per gate and segment: auth-approval 4 (provider x method), capture-success 2, the scalars 1 each.
    names = sorted(c.get("name") or "" for c in cases)
    assert names == sorted(
        [f"auth-approval [method={m},provider={p}]" for m in ("card", "wallet") for p in ("adyen", "stripe")]
        + ["capture-success [provider=adyen]", "capture-success [provider=stripe]"]
        + ["duplicate-charges [all]", "p99-latency [all]"]
    )
    failed = {c.get("name") for c in cases if c.find("failure") is not None}
    assert failed and all("provider=adyen" in (name or "") for name in failed)
    assert suite.get("failures") == str(len(failed)) and suite.get("tests") == "8"


def test_low_traffic_is_inconclusive(capsys: pytest.CaptureFixture[str], backfilled: Backfilled) -> None:
    code, report = evaluate_json(
        capsys, backfilled, str(backfilled.rollouts["low-traffic"]), "--at", backfilled.at(15), "--step", "1"
    )
    assert code == 2, report
    assert report["summary"]["fail"] == 0 and report["summary"]["inconclusive"] >= 1
    verdicts = {g["name"]: g["verdict"] for g in report["gates"]}
    assert verdicts["auth-approval"] == "Inconclusive"
    assert "minSamples" in next(g["reason"] for g in report["gates"] if g["name"] == "auth-approval")


def test_markdown_summary(capsys: pytest.CaptureFixture[str], backfilled: Backfilled) -> None:
    code, out, _ = cli(
        capsys,
        "evaluate",
        str(backfilled.rollouts["healthy"]),
        "--prometheus",
        backfilled.url,
        "--at",
        backfilled.at(30),
        "--step",
        "5",
        "--output",
        "markdown",
    )
    assert code == 0
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 8 and all("✅ Pass" in row for row in rows[1:])


@pytest.fixture
def closed_port() -> Iterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    yield port


def test_unreachable_prometheus_exits_3_with_the_reason(
    capsys: pytest.CaptureFixture[str], backfilled: Backfilled, closed_port: int
) -> None:
    address = f"http://127.0.0.1:{closed_port}"
    code, out, err = cli(capsys, "evaluate", str(backfilled.rollouts["healthy"]), "--prometheus", address)
    assert code == 3
    assert out == ""
    assert f"Prometheus at {address} is unreachable" in err
    assert "Connection refused" in err
    code, _, err = cli(
        capsys,
        "backtest",
        str(backfilled.rollouts["healthy"]),
        "--prometheus",
        address,
        "--from",
        "now-1h",
        "--to",
        "now",
    )
    assert code == 3 and "Connection refused" in err


def backtest(capsys: pytest.CaptureFixture[str], backfilled: Backfilled, name: str, minutes: int) -> Any:
    code, out, err = cli(
        capsys,
        "backtest",
        str(backfilled.rollouts[name]),
        "--prometheus",
        backfilled.url,
        "--from",
        backfilled.at(0),
        "--to",
        backfilled.at(minutes),
        "--output",
        "json",
    )
    report = json.loads(out)
    assert code == report["exitCode"], err
    return report


def replayed(capsys: pytest.CaptureFixture[str], backfilled: Backfilled, name: str) -> Any:
    code, out, _ = cli(
        capsys, "evaluate", "--replay", str(backfilled.recordings[name]), str(ROLLOUT), "--output", "json"
    )
    report = json.loads(out)
    assert code == report["exitCode"]
    return report


def test_backtest_halts_where_the_replay_does(capsys: pytest.CaptureFixture[str], backfilled: Backfilled) -> None:
    tested = backtest(capsys, backfilled, "regression", 30)
    assert tested["outcome"] == "halted"
    assert tested["gate"] == "auth-approval" and "provider=adyen" in tested["segment"]
    recorded = replayed(capsys, backfilled, "regression")
    assert recorded["outcome"] == "halted"
    halt = datetime.fromisoformat(tested["decidedAt"])
    assert abs(halt - datetime.fromisoformat(recorded["decidedAt"])) <= INTERVAL
    assert backfilled.start < halt < backfilled.start + timedelta(minutes=30)


def test_backtest_promotes_where_the_replay_does(capsys: pytest.CaptureFixture[str], backfilled: Backfilled) -> None:
    tested = backtest(capsys, backfilled, "healthy", 45)
    recorded = replayed(capsys, backfilled, "healthy")
    assert tested["outcome"] == recorded["outcome"] == "promoted"
    promoted = datetime.fromisoformat(tested["decidedAt"])
    assert abs(promoted - datetime.fromisoformat(recorded["decidedAt"])) <= INTERVAL
    assert [t["action"] for t in tested["transitions"]] == [t["action"] for t in recorded["transitions"]]
