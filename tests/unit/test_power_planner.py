"""The power planner (rollout/power.py, ``checkout-gates plan``): its power is a lower bound of
what the production fold finds, and the command says where a plan is too short."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import yaml

from bench.detection import poisson_sampler
from checkout_gates.api.spec import Gate
from checkout_gates.cli.main import main
from checkout_gates.gates.evaluate import carried_gate_evidence_path
from checkout_gates.gates.observations import SCALAR, ArmSteps, Sample, SignalReading
from checkout_gates.rollout.power import Phase, Traffic, regressed_rate, segment_power

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "gates"
PLAN = (Phase(1, 0.05, 1200.0, True), Phase(3, 0.25, 1200.0, True), Phase(5, 0.5, 1200.0, True))
INTERVAL = 30.0


def ratio_gate(tolerance: str) -> Gate:
    return Gate.model_validate(
        {
            "name": "auth-approval",
            "ratio": {"good": 'a_total{outcome="ok"}', "total": "a_total"},
            "compare": {"maxDrop": tolerance},
            "method": "sequential",
            "counts": "exact",
        }
    )


def count_gate(max_rise: str) -> Gate:
    return Gate.model_validate(
        {
            "name": "dup",
            "count": "d_total",
            "exposure": "e_total",
            "compare": {"maxRise": max_rise},
            "method": "sequential",
            "counts": "exact",
        }
    )


def simulated_power(gate: Gate, traffic: Traffic, canary_bad: float, log_bar: float, runs: int, seed: int) -> float:
    """The share of simulated rollouts whose carried e-value (the production fold) crosses the bar."""
    rng = random.Random(seed)
    found = 0
    for _ in range(runs):
        arms: dict[str, tuple[list[float], list[float]]] = {"canary": ([], []), "stable": ([], [])}
        for phase in PLAN:
            for _ in range(round(phase.seconds / INTERVAL)):
                for arm, share, q in (("canary", phase.weight, canary_bad), ("stable", 1 - phase.weight, traffic.bad)):
                    served = float(poisson_sampler(rng, traffic.rate * share * INTERVAL)())
                    arms[arm][0].append(float(poisson_sampler(rng, served * q)()))
                    arms[arm][1].append(served)
        samples = {
            arm: Sample(value=None, steps=ArmSteps(tuple(bad), tuple(served))) for arm, (bad, served) in arms.items()
        }
        reading = SignalReading(gate.name, canary={SCALAR: samples["canary"]}, stable={SCALAR: samples["stable"]})
        folded = carried_gate_evidence_path(gate, reading)
        assert folded is not None
        found += max(folded[1]) >= log_bar
    return found / runs


@pytest.mark.parametrize(
    ("tolerance", "traffic", "canary_bad", "bar"),
    [
        ("0pp", Traffic("small", 1.6, 0.04), 0.07, 5400.0),  # bench/rollouts.py's small segment: 3pp in 4%
        ("0.5pp", Traffic("all", 10.0, 0.03), 0.045, 300.0),
    ],
)
def test_planned_power_is_a_lower_bound_of_the_production_fold(
    tolerance: str, traffic: Traffic, canary_bad: float, bar: float
) -> None:
    gate = ratio_gate(tolerance)
    planned = segment_power(gate, traffic, PLAN, interval=INTERVAL, log_bar=math.log(bar), canary_bad=canary_bad)
    measured = simulated_power(gate, traffic, canary_bad, math.log(bar), runs=120, seed=11)
    # A lower bound (the mixture's other terms, crossings that fall back), up to the simulation's
    # sampling error, and not a uselessly loose one.
    assert planned.power <= measured + 0.1, (planned.power, measured)
    assert planned.power >= measured - 0.25, (planned.power, measured)


def test_default_regression_is_the_tolerated_excess_once_more() -> None:
    assert regressed_rate(ratio_gate("0.5pp"), 0.03, None) == pytest.approx(0.04)
    assert regressed_rate(ratio_gate("0pp"), 0.03, None) == pytest.approx(0.04)
    assert regressed_rate(ratio_gate("0pp"), 0.03, "3pp") == pytest.approx(0.06)
    assert regressed_rate(ratio_gate("0pp"), 0.03, "2x") == pytest.approx(0.06)


def write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def test_plan_warns_where_the_plan_is_too_short(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = write(
        tmp_path,
        {
            "gates": {
                "refund-success": {
                    "rate": 2.0,
                    "segments": [
                        {"segment": "kind=full,provider=adyen", "share": 0.3, "bad": 0.01},
                        {"segment": "kind=full,provider=stripe", "share": 0.7, "bad": 0.01},
                    ],
                },
                "duplicate-orders": {"rate": 40.0, "bad": 0.0002, "regression": "50x"},
            }
        },
    )
    code = main(["plan", str(EXAMPLES / "refund-flow.yaml"), "--profile", str(profile), "--output", "json"])
    out = capsys.readouterr().out
    report = json.loads(out)
    assert code == 1
    gates = {gate["name"]: gate for gate in report["gates"]}
    assert [s["segment"] for s in gates["refund-success"]["segments"]] == [
        "kind=full,provider=adyen",
        "kind=full,provider=stripe",
        "all (pooled)",
    ]
    assert gates["refund-success"]["warnings"], "a 0.5pp margin on 1% of 0.6 refunds/s is not found in the plan"
    # Each warning says what would do: hold a step longer, or that even a day more would not.
    assert all("held" in w or "a day past it" in w for w in gates["refund-success"]["warnings"])
    assert any("held" in w for w in gates["refund-success"]["warnings"])
    assert not gates["duplicate-orders"]["warnings"], gates["duplicate-orders"]  # 50x is found at once
    assert gates["duplicate-orders"]["segments"][0]["power"] >= 0.95


def test_plan_with_enough_traffic_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    profile = write(
        tmp_path,
        {
            "gates": {
                "refund-success": {"rate": 400.0, "bad": 0.01, "segments": [{"segment": "all", "share": 1.0}]},
                "duplicate-orders": {"rate": 400.0, "bad": 0.01},
            }
        },
    )
    code = main(["plan", str(EXAMPLES / "refund-flow.yaml"), "--profile", str(profile)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "every segment is found with 95% power within the plan" in out


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ({"gates": {"no-such-gate": {"rate": 1.0, "bad": 0.1}}}, "not budgeted gates of the rollout"),
        ({"gates": {"refund-success": {"rate": 1.0, "bad": 0.1, "regression": "lots"}}}, "gates.refund-success"),
        ({"gates": {"refund-success": {"rate": -1.0, "bad": 0.1}}}, "rate"),
        ({"gates": {"refund-success": {"rate": 1.0}}}, "give `bad`"),
        ({"gates": {"refund-success": {"rate": 1.0, "bad": 0.1, "extra": 1}}}, "not a known field"),
    ],
)
def test_a_bad_profile_is_exit_3_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], profile: object, message: str
) -> None:
    code = main(["plan", str(EXAMPLES / "refund-flow.yaml"), "--profile", str(write(tmp_path, profile))])
    err = capsys.readouterr().err
    assert code == 3
    assert message in err, err
    assert "Traceback" not in err


def test_plan_needs_traffic(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(EXAMPLES / "refund-flow.yaml")]) == 3
    assert "--profile FILE or --prometheus URL" in capsys.readouterr().err


def test_min_samples_slower_than_the_inconclusive_limit_is_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """refund-success needs 100 canary refunds; at 5% of 0.1 refunds/s that is over five hours,
    far beyond 20 evaluations of a minute: a healthy canary would halt as inconclusive."""
    profile = write(tmp_path, {"gates": {"refund-success": {"rate": 0.1, "bad": 0.01}}})
    main(["plan", str(EXAMPLES / "refund-flow.yaml"), "--profile", str(profile)])
    out = capsys.readouterr().out
    assert "minSamples 100 takes" in out and "halt as inconclusive" in out


def test_evidence_after_the_last_watched_phase_is_not_credited() -> None:
    """A gate watched only at a short 1% step, followed by a long 50% step it is not judged in:
    holding the 1% step longer is what it takes, not what the 50% step would have seen."""
    gate = ratio_gate("0pp")
    alone = (Phase(1, 0.01, 600.0, True),)
    followed = (*alone, Phase(3, 0.5, 7200.0, False))
    traffic = Traffic("all", 100.0, 0.03)
    one = segment_power(gate, traffic, alone, interval=INTERVAL, log_bar=math.log(300.0), canary_bad=0.06)
    two = segment_power(gate, traffic, followed, interval=INTERVAL, log_bar=math.log(300.0), canary_bad=0.06)
    assert one.found_after is not None and one.found_after > 600.0  # beyond the step's window
    assert one.found_after == two.found_after and one.found_at_step == two.found_at_step == 1


def test_a_long_plan_at_a_one_second_interval_is_planned_quickly() -> None:
    """The looks per phase are bounded: a year-long step at 1 s costs what a short one does."""
    gate = ratio_gate("0pp")
    plan = (Phase(1, 0.05, 365 * 86_400.0, True),)
    result = segment_power(
        gate, Traffic("rare", 0.001, 0.01), plan, interval=1.0, log_bar=math.log(300.0), canary_bad=0.02
    )
    assert 0.0 <= result.power <= 1.0


def test_a_huge_tolerance_does_not_divide_by_zero() -> None:
    gate = count_gate("99999999%")
    result = segment_power(
        gate, Traffic("all", 40.0, 0.001), PLAN, interval=INTERVAL, log_bar=math.log(100.0), canary_bad=1.0
    )
    assert result.power >= 0.0


@pytest.mark.parametrize(
    ("gates", "message"),
    [
        (
            {"duplicate-orders": {"rate": 40.0, "bad": 0.001, "segments": [{"segment": "a", "share": 1.0}]}},
            "has no segmentBy",
        ),
        (
            {
                "refund-success": {
                    "rate": 2.0,
                    "bad": 0.01,
                    "segments": [{"segment": "a", "share": 0.7}, {"segment": "b", "share": 0.7}],
                }
            },
            "add up to more than 1",
        ),
        ({"refund-success": {"rate": 2.0, "bad": 0.01, "regression": "0.2pp"}}, "within the gate's tolerance"),
    ],
)
def test_a_profile_that_cannot_be_planned_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], gates: object, message: str
) -> None:
    code = main(["plan", str(EXAMPLES / "refund-flow.yaml"), "--profile", str(write(tmp_path, {"gates": gates}))])
    err = capsys.readouterr().err
    assert code == 3 and message in err, err


def test_a_pause_is_not_an_inconclusive_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """minSamples gathered during a pause (the evidence is carried) count at the gate step after
    it; the pause's own evaluations never count towards inconclusiveLimit."""
    document = yaml.safe_load((EXAMPLES / "refund-flow.yaml").read_text(encoding="utf-8"))
    document["spec"]["gates"][0]["critical"] = True
    document["spec"]["steps"] = [
        {"setWeight": 5},
        {"pause": {"duration": "10h"}},
        {"gate": {"pass": ["refund-success", "duplicate-orders"], "window": "20m"}},
        {"setWeight": 100},
    ]
    rollout = tmp_path / "rollout.yaml"
    rollout.write_text(yaml.safe_dump(document), encoding="utf-8")
    profile = write(tmp_path, {"gates": {"refund-success": {"rate": 0.1, "bad": 0.01}}})
    main(["plan", str(rollout), "--profile", str(profile)])
    assert "halt as inconclusive" not in capsys.readouterr().out


def test_a_rate_of_zero_on_stable_can_still_be_found() -> None:
    """A gate that tolerates nothing, stable at 0 (no duplicate charge yet): canary events alone
    are evidence, and the planner says so instead of 0% power."""
    gate = count_gate("0%")
    result = segment_power(
        gate, Traffic("all", 40.0, 0.0), PLAN, interval=INTERVAL, log_bar=math.log(100.0), canary_bad=0.001
    )
    assert result.power > 0.5
