"""`checkout-gates lint`: one `file:path: message` line per problem; exit 0 clean, 1 problems, 2 unreadable."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from checkout_gates.cli.lint import EXIT_CLEAN, EXIT_PROBLEMS, EXIT_UNREADABLE, lint_text
from checkout_gates.cli.main import main
from tests.unit.bad_specs import BAD_SPECS, EXAMPLE_FILES, EXAMPLES, REPO, BadSpec, load_example

PROBLEM_LINE = re.compile(r"^(?P<file>[^:]+):(?P<path>[A-Za-z][\w.\[\]]*): (?P<message>.+)$")


def _dump(*documents: Any) -> str:
    return yaml.safe_dump_all(documents, sort_keys=False)


def _lint(capsys: pytest.CaptureFixture[str], *paths: Path | str) -> tuple[int, list[str], str]:
    code = main(["lint", *(str(path) for path in paths)])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


def test_examples_are_clean(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _lint(capsys, *EXAMPLE_FILES)
    assert code == EXIT_CLEAN
    assert out == []
    for path in EXAMPLE_FILES:
        assert f"{path}: ok" in err


def test_a_folder_is_linted_file_by_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _lint(capsys, EXAMPLES)
    assert code == EXIT_CLEAN
    assert out == []
    assert err.count(": ok") == len(EXAMPLE_FILES)


def test_examples_are_clean_through_the_installed_command() -> None:
    command = Path(sys.executable).with_name("checkout-gates")
    result = subprocess.run(
        [str(command), "lint", *(str(path.relative_to(REPO)) for path in EXAMPLE_FILES)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.count(": ok") == len(EXAMPLE_FILES)


@pytest.mark.parametrize("bad", BAD_SPECS, ids=lambda bad: bad.id)
def test_bad_spec_prints_file_path_message(bad: BadSpec, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / f"{bad.id}.yaml"
    path.write_text(_dump(bad.document()), encoding="utf-8")
    code, out, _ = _lint(capsys, path)
    assert code == EXIT_PROBLEMS
    assert out
    lines = [PROBLEM_LINE.match(line) for line in out]
    assert all(lines), out
    assert {line["file"] for line in lines if line} == {str(path)}
    assert any(line and bad.path in line["path"] and bad.message in line["message"] for line in lines), out


def test_problem_line_is_exact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = load_example("card-payments.yaml")
    document["spec"]["steps"][7]["setWeight"] = 101
    path = tmp_path / "rollout.yaml"
    path.write_text(_dump(document), encoding="utf-8")
    code, out, err = _lint(capsys, path)
    assert code == EXIT_PROBLEMS
    assert out == [f"{path}:spec.steps[7].setWeight: Input should be less than or equal to 100"]
    assert ": ok" not in err


def test_clean_and_bad_files_together_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(_dump(BAD_SPECS[0].document()), encoding="utf-8")
    code, out, err = _lint(capsys, EXAMPLE_FILES[0], bad)
    assert code == EXIT_PROBLEMS
    assert all(line.startswith(f"{bad}:") for line in out)
    assert f"{EXAMPLE_FILES[0]}: ok" in err


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.yaml"
    code, out, err = _lint(capsys, missing)
    assert code == EXIT_UNREADABLE
    assert out == []
    assert f"{missing}: cannot read" in err


def test_invalid_yaml_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("spec:\n  steps: [\n    - setWeight: 1\n", encoding="utf-8")
    code, out, err = _lint(capsys, path)
    assert code == EXIT_UNREADABLE
    assert out == []
    assert f"{path}: not valid YAML" in err
    assert len(err.strip().splitlines()) == 1  # the parser's message on one line


def test_binary_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage\x80")
    code, _, err = _lint(capsys, path)
    assert code == EXIT_UNREADABLE
    assert f"{path}: cannot read" in err


def test_unreadable_wins_over_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(_dump(BAD_SPECS[0].document()), encoding="utf-8")
    code, out, _ = _lint(capsys, bad, tmp_path / "missing.yaml", EXAMPLE_FILES[0])
    assert code == EXIT_UNREADABLE
    assert out and all(line.startswith(f"{bad}:") for line in out)


def test_empty_file_is_a_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("# nothing here\n", encoding="utf-8")
    code, out, _ = _lint(capsys, path)
    assert code == EXIT_PROBLEMS
    assert out == [f"{path}: holds no YAML document"]


def test_other_kinds_are_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "configmap.yaml"
    path.write_text(_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}), encoding="utf-8")
    code, out, _ = _lint(capsys, path)
    assert code == EXIT_PROBLEMS
    assert f"{path}:apiVersion: is 'v1' (expected 'gates.checkout.dev/v1alpha1')" in out
    assert f"{path}:kind: is 'ConfigMap' (expected 'CheckoutRollout')" in out


# --- several documents in one file --------------------------------------------------------------


def test_multi_document_good_then_bad_names_the_bad_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(_dump(load_example("pricing-tax.yaml"), BAD_SPECS[1].document()), encoding="utf-8")
    code, out, _ = _lint(capsys, path)
    assert code == EXIT_PROBLEMS
    assert out == [f"{path}#2:spec.steps[7].setWeight: Input should be less than or equal to 100"]


def test_multi_document_bad_then_good_names_the_first_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "two.yaml"
    path.write_text(_dump(BAD_SPECS[1].document(), load_example("pricing-tax.yaml")), encoding="utf-8")
    code, out, _ = _lint(capsys, path)
    assert code == EXIT_PROBLEMS
    assert out == [f"{path}#1:spec.steps[7].setWeight: Input should be less than or equal to 100"]


def test_multi_document_numbers_count_empty_documents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The number is the document's position in the stream, as a person counts the `---` separators."""
    path = tmp_path / "three.yaml"
    good = yaml.safe_dump(load_example("pricing-tax.yaml"))
    bad = yaml.safe_dump(BAD_SPECS[1].document())
    path.write_text(f"{good}---\n# an empty document\n---\n{bad}", encoding="utf-8")
    code, out, _ = _lint(capsys, path)
    assert code == EXIT_PROBLEMS
    assert [line.split(":", 1)[0] for line in out] == [f"{path}#3"]


def test_multi_document_all_good(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "all.yaml"
    path.write_text(_dump(*(load_example(p.name) for p in EXAMPLE_FILES)), encoding="utf-8")
    code, out, err = _lint(capsys, path)
    assert code == EXIT_CLEAN
    assert out == []
    assert f"{path}: ok" in err


def test_lint_text_numbers_documents() -> None:
    text = _dump(load_example("refund-flow.yaml"), BAD_SPECS[0].document(), BAD_SPECS[1].document())
    found = lint_text(text)
    assert [number for number, _ in found] == [2, 3]
    assert lint_text("") == lint_text("---\n")
    assert lint_text(_dump(load_example("refund-flow.yaml"))) == []


def test_lint_needs_a_path(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["lint"])
    assert exit_info.value.code == 2
    assert "PATH" in capsys.readouterr().err
