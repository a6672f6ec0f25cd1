"""The detection benchmark (bench/detection.py) on a tiny grid: the ratios it exists to show.

Everything asserted is measured in the one seeded run of the fixture (ratios and rates, never
wall-clock times), so the test says something about the engines, not about the machine.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.detection import (
    ALPHA,
    END_MARKER,
    FLAGGER,
    SCRAPE_S,
    SEQUENTIAL,
    STAGE_S,
    Cell,
    Row,
    Tally,
    parse_cells,
    run_benchmark,
    summarize,
    write_section,
)

AA = Cell(0.0, 10.0, 50.0)
TWO_PP = Cell(2.0, 10.0, 50.0)
FIVE_PP = Cell(5.0, 10.0, 50.0)
AA_RUNS = 500
RUNS = 60


@pytest.fixture(scope="module")
def tallies() -> dict[Cell, dict[str, Tally]]:
    return run_benchmark([AA, TWO_PP, FIVE_PP], runs=RUNS, aa_runs=AA_RUNS, seed=20240601)


def _row(tallies: dict[Cell, dict[str, Tally]], cell: Cell, engine: str) -> Row:
    return summarize(tallies[cell][engine])


@pytest.mark.slow
def test_ours_sequential_halts_every_5pp_regression_within_the_stage(tallies: dict[Cell, dict[str, Tally]]) -> None:
    row = _row(tallies, FIVE_PP, SEQUENTIAL)
    assert row.runs == RUNS
    assert row.halted == RUNS
    assert row.p90_s <= STAGE_S
    # Halts happen at evaluations: whole multiples of the 30 s analysis interval.
    assert all(t % (2 * SCRAPE_S) == 0 for t in tallies[FIVE_PP][SEQUENTIAL].halt_seconds)


@pytest.mark.slow
def test_ours_sequential_false_halt_rate_on_aa_runs_is_within_alpha(tallies: dict[Cell, dict[str, Tally]]) -> None:
    row = _row(tallies, AA, SEQUENTIAL)
    assert row.runs >= 500
    standard_error = math.sqrt(ALPHA * (1.0 - ALPHA) / row.runs)
    assert row.power <= ALPHA + 3.0 * standard_error


@pytest.mark.slow
def test_ours_sequential_halts_a_2pp_regression_sooner_than_flagger_style(
    tallies: dict[Cell, dict[str, Tally]],
) -> None:
    ours, flagger = _row(tallies, TWO_PP, SEQUENTIAL), _row(tallies, TWO_PP, FLAGGER)
    assert ours.power >= 0.95
    # Unhalted runs count as the whole stage, so a censored mean is a lower bound: the comparison
    # holds a fortiori for the true means when ours is (almost) never censored.
    assert ours.mean_s < flagger.mean_s
    assert ours.extra < flagger.extra


def test_write_section_replaces_only_its_own_section(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    path.write_text(
        "# Benchmark results\n\n<!-- scale:start -->\nscale figures\n<!-- scale:end -->\n\n"
        "<!-- detection:start -->\nold\n<!-- detection:end -->\n\n## Dry run\nkept\n"
    )
    write_section(path, f"<!-- detection:start -->\nnew\n{END_MARKER}")
    text = path.read_text()
    assert "old" not in text and "new" in text
    assert "scale figures" in text and "## Dry run\nkept" in text
    write_section(tmp_path / "fresh.md", f"<!-- detection:start -->\nfirst\n{END_MARKER}")
    assert "first" in (tmp_path / "fresh.md").read_text()


def test_parse_cells_selects_a_subset_of_the_grid() -> None:
    deltas, weights, rates = parse_cells("delta=0,2 w=10;rate=50,500")
    assert (deltas, weights, rates) == ([0.0, 2.0], [10.0], [50.0, 500.0])
    _, weights, _ = parse_cells("delta=5")
    assert weights == [1.0, 5.0, 10.0, 25.0]
