"""``checkout-gates evaluate --replay``: the example recordings through the real state machine."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from checkout_gates.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
RECORDINGS = ROOT / "examples" / "recordings"
ROLLOUT = RECORDINGS / "rollout.yaml"


def replay(
    capsys: pytest.CaptureFixture[str], recording: Path, *extra: str, rollout: Path = ROLLOUT
) -> tuple[int, str, str]:
    code = main(["evaluate", "--replay", str(recording), str(rollout), *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def make_recordings() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_recordings", ROOT / "hack" / "make_recordings.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_recordings", module)
    spec.loader.exec_module(module)
    return module


def test_the_example_rollout_lints_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", str(ROLLOUT)]) == 0
    assert not [s for s in yaml.safe_load(ROLLOUT.read_text())["spec"]["steps"] if "approval" in s]


def test_regression_halts(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = replay(capsys, RECORDINGS / "regression.jsonl")
    assert code == 1
    assert "Halted" in out
    # The final verdict names the time, the gate and the segment (one of adyen's, where the drop is).
    verdict = next(line for line in out.splitlines() if line.startswith("halted at "))
    assert "on gate auth-approval, segment method=" in verdict
    assert "provider=adyen" in verdict
    assert "(step 1, canary 1%)" in verdict


def test_healthy_promotes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = replay(capsys, RECORDINGS / "healthy.jsonl")
    assert code == 0
    actions = [line.split()[2] for line in out.splitlines() if line.startswith("2026-")]
    assert actions[0] == "Started" and actions[-1] == "Promoted"
    # Every setWeight step on the way: 1, 5, 25, 100 (WEIGHTS is stable/canary).
    weights = [line.split()[3] for line in out.splitlines() if line.startswith("2026-") and "canary weight" in line]
    assert weights == ["99/1", "95/5", "75/25", "0/100"]
    assert any(line.startswith("promoted at 2026-11-27T10:") for line in out.splitlines())


def test_low_traffic_stays_inconclusive(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = replay(capsys, RECORDINGS / "low-traffic.jsonl")
    assert code == 2
    assert "still in progress at 2026-11-27T10:15:00Z: phase Progressing, step 1" in out
    assert "samples < minSamples" in out
    assert "Halted" not in out


def test_json_report(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    report = tmp_path / "replay.json"
    code, out, _ = replay(capsys, RECORDINGS / "regression.jsonl", "--output", "json", "--output-file", str(report))
    assert code == 1
    document = json.loads(report.read_text())
    assert document["outcome"] == "halted" and document["exitCode"] == 1
    assert document["gate"] == "auth-approval"
    assert "provider=adyen" in document["segment"]
    assert document["decidedAt"].startswith("2026-11-27T10:")
    assert [t["action"] for t in document["transitions"]] == ["Started", "StepAdvanced", "Halted"]
    assert document["transitions"][-1]["weights"] == {"stable": 99, "canary": 1}
    assert "halted at" in out  # the table still goes to stdout


def test_bad_recording_names_the_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lines = (RECORDINGS / "healthy.jsonl").read_text().splitlines()[:4]
    lines[2] = (
        lines[2].replace('"variant": "stable"', '"variant": "blue"').replace('"variant": "canary"', '"variant": "blue"')
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    code, out, err = replay(capsys, bad)
    assert code == 3
    assert f"{bad}: 1 bad line" in err
    assert "line 3: field 'variant'" in err
    assert out == ""


def test_missing_recording_is_invalid_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = replay(capsys, tmp_path / "nowhere.jsonl")
    assert code == 3
    assert "cannot read the recording" in err


def test_rollout_with_lint_problems_is_printed_like_lint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    document = yaml.safe_load(ROLLOUT.read_text())
    document["spec"]["steps"][1]["gate"]["pass"].append("no-such-gate")
    document["spec"]["analysis"]["interval"] = "soon"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(document))
    code, _, err = replay(capsys, RECORDINGS / "healthy.jsonl", rollout=broken)
    assert code == 3
    assert main(["lint", str(broken)]) == 1
    lint_lines = capsys.readouterr().out.splitlines()
    assert lint_lines and err.splitlines() == lint_lines


def test_an_approval_step_waits_unless_approve_all(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    document = yaml.safe_load(ROLLOUT.read_text())
    steps = document["spec"]["steps"]
    document["spec"]["steps"] = [*steps[:4], {"approval": {"reason": "sign-off before 25%"}}, *steps[4:]]
    with_approval = tmp_path / "approval.yaml"
    with_approval.write_text(yaml.safe_dump(document))

    code, out, _ = replay(capsys, RECORDINGS / "healthy.jsonl", rollout=with_approval)
    assert code == 2
    assert "phase AwaitingApproval, step 4" in out

    code, out, _ = replay(capsys, RECORDINGS / "healthy.jsonl", "--approve-all", rollout=with_approval)
    assert code == 0
    approved = [line for line in out.splitlines() if " Approved " in line]
    assert len(approved) == 1 and "approve-all" in approved[0]


@pytest.mark.parametrize(
    "extra",
    [
        ["--step", "1"],
        ["--prometheus", "http://127.0.0.1:9090"],
        ["--output", "junit"],
        ["--no-such-option"],
    ],
)
def test_usage_errors_exit_3(capsys: pytest.CaptureFixture[str], extra: list[str]) -> None:
    with pytest.raises(SystemExit) as raised:  # argparse's own errors leave by SystemExit
        code, _, _ = replay(capsys, RECORDINGS / "healthy.jsonl", *extra)
        raise SystemExit(code)
    assert raised.value.code == 3


def test_approve_all_without_replay_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", str(ROLLOUT), "--approve-all"]) == 3
    assert "--approve-all only applies to --replay" in capsys.readouterr().err


def test_committed_recordings_are_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    assert make_recordings().main(["--check"]) == 0, capsys.readouterr().out
