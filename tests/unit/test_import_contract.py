"""The house rules of docs/architecture.md, as import-linter contracts (pyproject.toml).

`make lint` runs them on the tree; here they must also fail on a copy of it with one planted
violation each, so a contract that silently checks nothing (a renamed package, a typo in a layer)
cannot pass for a kept one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def run_contracts(tree: Path) -> subprocess.CompletedProcess[str]:
    # The copy's packages come first on the path, ahead of the editable installs of the real tree.
    environment = {**os.environ, "PYTHONPATH": f"{tree / 'operator'}{os.pathsep}{tree / 'lab'}"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    copy = tmp_path / "tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "operator", copy / "operator", ignore=ignore)
    shutil.copytree(ROOT / "lab" / "checkout_gates_lab", copy / "lab" / "checkout_gates_lab", ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def plant(tree: Path, module: str, line: str) -> None:
    path = tree / module
    text = path.read_text(encoding="utf-8")
    marker = "from __future__ import annotations\n"
    assert marker in text, f"{module} has no __future__ import to plant after"
    path.write_text(text.replace(marker, f"{marker}\n{line}  # planted\n", 1), encoding="utf-8")


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    result = run_contracts(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # The pure core importing an adapter, a shell, or an I/O library.
        ("operator/checkout_gates/gates/evaluate.py", "import checkout_gates.metrics.prometheus", "Layers"),
        ("operator/checkout_gates/rollout/machine.py", "import checkout_gates.controller.reconcile", "Layers"),
        ("operator/checkout_gates/api/spec.py", "import httpx", "The pure core does no I/O"),
        # An adapter importing a shell, and one adapter importing another.
        ("operator/checkout_gates/routing/base.py", "import checkout_gates.cli.main", "Layers"),
        ("operator/checkout_gates/paging/base.py", "import checkout_gates.routing.base", "Layers"),
        # The product importing the lab.
        ("operator/checkout_gates/cli/main.py", "import checkout_gates_lab.demo", "The product never imports the lab"),
    ],
)
def test_a_planted_violation_breaks_its_contract(tree: Path, module: str, line: str, contract: str) -> None:
    plant(tree, module, line)
    result = run_contracts(tree)
    assert result.returncode != 0, result.stdout
    broken = [text for text in result.stdout.splitlines() if text.endswith("BROKEN")]
    assert any(text.startswith(contract) for text in broken), result.stdout
