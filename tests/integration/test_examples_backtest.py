"""Every example rollout (examples/gates/ and the README's) against realistic traffic in a real
Prometheus: a healthy canary is promoted, and each regression the example is written for is
halted by the gate written for it.

The traffic is the lab's simulated shop (lab/checkout_gates_lab/sim: per-segment base rates,
duplicate charges and orders that are rare but not zero on stable too, the mismatch queue, latency)
at 40 checkouts/s, with the faults of examples/scenarios/, the canary's weight following the
example's steps; it is backfilled into Prometheus (promtool) and the example is replayed over it
by ``checkout-gates backtest`` (the operator's state machine, its Prometheus adapter and its
windows). Each case has its own ``variant`` label values, so one backfill serves all of them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from checkout_gates.api.quantities import parse_duration
from checkout_gates.cli.main import main
from checkout_gates_lab.sim.history import Run, openmetrics, stepped_weight
from checkout_gates_lab.sim.scenario import load_scenario
from checkout_gates_lab.testbed import Prometheus

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "gates"
SCENARIOS = ROOT / "examples" / "scenarios"
RATE = 40.0  # checkouts per second, over both arms
MARGIN = 600.0  # seconds: how long the traffic holds a gate step's weight beyond its window
# Stable alone before the rollout, as in production: a tail gate chooses its bound from this hour.
BEFORE = 3600.0


@dataclass(frozen=True)
class Case:
    example: str  # a file in examples/gates/, or README.md
    scenario: str  # a file in examples/scenarios/ (aa: no fault)
    halted_by: tuple[str, ...] = ()  # the gates written for this regression; empty: promoted

    @property
    def tag(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", f"{self.example.removesuffix('.yaml')}-{self.scenario}".lower())


CASES = (
    Case("card-payments.yaml", "aa"),
    Case("card-payments.yaml", "duplicate-charges", ("duplicate-charges",)),
    Case("card-payments.yaml", "silent-declines", ("capture-success",)),
    Case("card-payments.yaml", "latency-regression", ("slow-checkouts", "p99-latency")),
    Case("refund-flow.yaml", "aa"),
    Case("refund-flow.yaml", "refund-regression", ("refund-success",)),
    Case("refund-flow.yaml", "webhook-out-of-order", ("mismatch-queue", "duplicate-orders")),
    Case("refund-flow.yaml", "payment-state-mismatch", ("mismatch-queue",)),
    Case("pricing-tax.yaml", "aa"),
    Case("pricing-tax.yaml", "edge-path-completion", ("completion-by-path",)),
    Case("pricing-tax.yaml", "latency-regression", ("slow-checkouts", "p99-latency")),
    Case("README.md", "aa"),
    Case("README.md", "duplicate-charges", ("duplicate-charges",)),
)


def readme_rollout() -> dict[str, Any]:
    """The rollout of the README's "A rollout" section."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split("## A rollout", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    document: dict[str, Any] = yaml.safe_load(block)
    return document


def example(name: str) -> dict[str, Any]:
    if name == "README.md":
        return readme_rollout()
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text(encoding="utf-8"))
    return document


def schedule(document: dict[str, Any]) -> tuple[list[tuple[float, float]], float]:
    """The canary's weight over time, after an hour of stable alone (BEFORE), if every gate step
    passes about when its window allows (the
    traffic holds each gate step's weight a while longer: a real rollout passes later, not
    earlier), approvals given at once; and how long the backtest may run from the rollout's start."""
    pieces: list[tuple[float, float]] = [(BEFORE, 0.0)]
    weight = 0.0
    for step in document["spec"]["steps"]:
        if "setWeight" in step:
            weight = float(step["setWeight"])
        elif "gate" in step:
            pieces.append((parse_duration(step["gate"]["window"]) + MARGIN, weight))
        elif "pause" in step:
            pieces.append((parse_duration(step["pause"]["duration"]), weight))
    pieces.append((1800.0, weight))  # the last weight (promotion) held
    return pieces, sum(seconds for seconds, _ in pieces) - BEFORE


@dataclass(frozen=True)
class Backfilled:
    url: str
    start: datetime
    files: dict[str, Path]
    lengths: dict[str, float]


@pytest.fixture(scope="module")
def backfilled(prometheus: Prometheus, tmp_path_factory: pytest.TempPathFactory) -> Backfilled:
    folder = tmp_path_factory.mktemp("examples")
    runs, files, lengths = [], {}, {}
    longest = max(schedule(example(case.example))[1] for case in CASES)
    start = (datetime.now(UTC) - timedelta(seconds=longest + BEFORE + 3600)).replace(second=0, microsecond=0)
    for index, case in enumerate(CASES):
        document = example(case.example)
        pieces, seconds = schedule(document)
        scenario = load_scenario(SCENARIOS / f"{case.scenario}.yaml")
        runs.append(Run(case.tag, scenario, stepped_weight(pieces), BEFORE + seconds, rate=RATE, seed=20261201 + index))
        spec = document["spec"]
        spec["stable"]["variant"] = f"{case.tag}-stable"
        spec["canary"]["variant"] = f"{case.tag}-canary"
        files[case.tag] = folder / f"{case.tag}.yaml"
        files[case.tag].write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
        lengths[case.tag] = seconds
    prometheus.backfill_openmetrics(openmetrics(runs, start=start.timestamp()))
    # The rollouts begin after the hour of stable alone.
    return Backfilled(prometheus.url, start + timedelta(seconds=BEFORE), files, lengths)


def backtest(capsys: pytest.CaptureFixture[str], backfilled: Backfilled, case: Case) -> Any:
    end = backfilled.start + timedelta(seconds=backfilled.lengths[case.tag])
    code = main(
        [
            "backtest",
            str(backfilled.files[case.tag]),
            "--prometheus",
            backfilled.url,
            "--from",
            backfilled.start.isoformat(),
            "--to",
            end.isoformat(),
            "--approve-all",
            "--output",
            "json",
        ]
    )
    out, err = capsys.readouterr()
    assert code != 3, err
    report = json.loads(out)
    assert code == report["exitCode"], err
    return report


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.tag)
def test_the_example_promotes_a_healthy_canary_and_halts_its_regression(
    capsys: pytest.CaptureFixture[str], backfilled: Backfilled, case: Case
) -> None:
    report = backtest(capsys, backfilled, case)
    summary = {key: report.get(key) for key in ("outcome", "gate", "segment", "reason", "decidedAt")}
    if not case.halted_by:
        assert report["outcome"] == "promoted", summary
    else:
        assert report["outcome"] in ("halted", "aborted"), summary
        assert report["gate"] in case.halted_by, summary


def test_the_dry_run_judges_carried_gates_under_the_rollout_budget(
    capsys: pytest.CaptureFixture[str], backfilled: Backfilled
) -> None:
    """`evaluate` (CI's dry run) judges sequential gates on exact counts as the operator does: the
    canary charging customers twice fails duplicate-charges, under the rollout's one alpha."""
    regressed = next(case for case in CASES if case.example == "README.md" and case.halted_by)
    healthy = next(case for case in CASES if case.example == "README.md" and not case.halted_by)
    at = (backfilled.start + timedelta(minutes=40)).isoformat()
    outcomes = {}
    for case in (regressed, healthy):
        code = main(
            [
                "evaluate",
                str(backfilled.files[case.tag]),
                "--prometheus",
                backfilled.url,
                "--at",
                at,
                "--step",
                "3",
                "--output",
                "json",
            ]
        )
        out, err = capsys.readouterr()
        assert code != 3, err
        outcomes[case.tag] = (code, json.loads(out))
    code, report = outcomes[regressed.tag]
    assert code == 1, report
    failing = {gate["name"]: gate for gate in report["gates"] if gate["verdict"] == "Fail"}
    assert "duplicate-charges" in failing, report
    assert "false halts ≤ 0.01 for this rollout" in failing["duplicate-charges"]["reason"]
    code, report = outcomes[healthy.tag]
    assert code == 0, report


def test_the_planner_reads_stable_traffic_from_prometheus(
    capsys: pytest.CaptureFixture[str], backfilled: Backfilled
) -> None:
    """`plan --prometheus` profiles the hour of stable alone before the rollout: each budgeted gate's
    rate and bad rate per segment as the gate counts them, then plans on it."""
    healthy = next(case for case in CASES if case.example == "card-payments.yaml" and not case.halted_by)
    code = main(
        [
            "plan",
            str(backfilled.files[healthy.tag]),
            "--prometheus",
            backfilled.url,
            "--at",
            backfilled.start.isoformat(),
            "--output",
            "json",
        ]
    )
    out, err = capsys.readouterr()
    assert code in (0, 1), err
    gates = {gate["name"]: gate for gate in json.loads(out)["gates"]}
    assert set(gates) == {"auth-approval", "capture-success", "duplicate-charges", "slow-checkouts"}
    auth = gates["auth-approval"]["segments"]
    assert len(auth) >= 6 and auth[-1]["segment"] == "all (pooled)"
    assert all(0.0 < one["stable_bad"] < 0.2 for one in auth)
    slow = gates["slow-checkouts"]["segments"][0]
    assert 0.001 < slow["stable_bad"] <= 0.01, slow  # over stable's p99 bucket: at most 1%
    assert gates["duplicate-charges"]["segments"][0]["stable_bad"] < 0.01
