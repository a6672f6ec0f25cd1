"""The crash hook of the reliability tests is inert in production and exact when asked for."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from checkout_gates.controller import crashpoints
from checkout_gates.controller.crashpoints import CRASH_POINTS, crash_point

RECONCILE = Path(crashpoints.__file__).with_name("reconcile.py")


def test_crash_point_does_nothing_without_the_variable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CHECKOUT_GATES_CRASH_AT", raising=False)
    monkeypatch.setenv("CHECKOUT_GATES_CRASH_MARKER", str(tmp_path / "marker"))
    for point in CRASH_POINTS:
        for _ in range(3):
            crash_point(point)  # still alive: SIGKILL cannot be caught, so a crash would end the test run
    assert not (tmp_path / "marker").exists()


def test_crash_point_ignores_other_points(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHECKOUT_GATES_CRASH_AT", "no-such-point")
    for point in CRASH_POINTS:
        crash_point(point)


def _run(point: str, *, skip: int, marker: Path, calls: int = 2) -> subprocess.CompletedProcess[str]:
    code = (
        "from checkout_gates.controller.crashpoints import crash_point\n"
        f"for i in range({calls}):\n"
        f"    print('reached', i, flush=True)\n"
        f"    crash_point({point!r})\n"
        "print('survived', flush=True)\n"
    )
    env = {
        **os.environ,
        "CHECKOUT_GATES_CRASH_AT": point,
        "CHECKOUT_GATES_CRASH_MARKER": str(marker),
        "CHECKOUT_GATES_CRASH_SKIP": str(skip),
    }
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_named_point_kills_the_process_and_leaves_the_marker(tmp_path: Path) -> None:
    marker = tmp_path / "crashed"
    result = _run("after-status-write", skip=0, marker=marker)
    assert result.returncode == -signal.SIGKILL
    assert result.stdout.split("\n")[:-1] == ["reached 0"]
    assert marker.read_text() == "after-status-write"


def test_skip_lets_the_point_pass_that_many_times(tmp_path: Path) -> None:
    marker = tmp_path / "crashed"
    result = _run("after-event", skip=2, marker=marker, calls=4)
    assert result.returncode == -signal.SIGKILL
    assert result.stdout.split() == ["reached", "0", "reached", "1", "reached", "2"]


def test_every_listed_point_is_placed_in_the_reconcile_pass() -> None:
    source = RECONCILE.read_text()
    placed = set(re.findall(r'crash_point\("([a-z-]+)"\)', source))
    placed |= set(re.findall(r'"(after-(?:halt|abort|promotion)-write)"', source))
    assert placed == set(CRASH_POINTS)
