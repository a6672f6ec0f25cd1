"""The demo's data: the rollout lints clean, the scenarios are the repository's examples/scenarios/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from checkout_gates.api.resource import parse_rollout
from checkout_gates.cli.lint import lint_text
from checkout_gates_lab.demo import scenario_names, scenarios, scenarios_folder
from checkout_gates_lab.demo.manifests import demo_rollout, rollout_template
from checkout_gates_lab.demo.outcome import gate_of
from checkout_gates_lab.sim.scenario import ScenarioError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "scenarios"
ROLLOUT = ROOT / "lab" / "checkout_gates_lab" / "demo" / "rollout.yaml"


def test_the_named_scenarios_are_the_examples_themselves() -> None:
    assert scenarios_folder().resolve() == EXAMPLES.resolve()
    assert scenario_names() == sorted(p.stem for p in EXAMPLES.glob("*.yaml"))
    assert not (ROOT / "lab" / "checkout_gates_lab" / "demo" / "scenarios").exists(), "no second copy"


def test_a_scenarios_folder_can_be_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "only-one.yaml").write_text("description: x\nfaults: []\n", encoding="utf-8")
    monkeypatch.setenv("CHECKOUT_GATES_SCENARIOS", str(tmp_path))
    assert scenario_names() == ["only-one"]
    assert scenarios.load("only-one").name == "only-one"
    with pytest.raises(ScenarioError, match="known: only-one"):
        scenarios.load("aa")


def test_rollout_lints_clean() -> None:
    assert lint_text(ROLLOUT.read_text(encoding="utf-8")) == []


def test_demo_rollout_fills_in_the_addresses_and_windows() -> None:
    document = demo_rollout(
        name="checkout-api",
        namespace="shop",
        prometheus="http://127.0.0.1:9090",
        alertmanager="http://127.0.0.1:9093",
        windows=("60s", "20s", "20s"),
    )
    rollout = parse_rollout(document)
    assert not isinstance(rollout, list)
    assert rollout.metadata.namespace == "shop"
    assert rollout.spec.prometheus.address == "http://127.0.0.1:9090"
    assert [t.kind for t in rollout.spec.owner.page] == ["alertmanager"]
    assert [s.gate.window for s in rollout.spec.steps if s.gate is not None] == ["60s", "20s", "20s"]
    with pytest.raises(ValueError, match="2 windows given for 3 gate steps"):
        demo_rollout(name="a", namespace="b", prometheus="http://p:1", alertmanager="http://a:1", windows=("1s", "2s"))


def test_every_gate_is_watched_and_every_query_is_per_namespace_and_settled() -> None:
    spec = rollout_template()["spec"]
    declared = {g["name"] for g in spec["gates"]}
    watched = {name for step in spec["steps"] if "gate" in step for name in step["gate"]["pass"]}
    assert watched == declared
    for gate in spec["gates"]:
        texts = [v for k, v in gate.items() if k in ("count", "quantile", "gauge", "samples", "exposure")]
        texts += list(gate.get("ratio", {}).values())
        for text in texts:
            selectors = len(re.findall(r"[a-z_]\{(?!\{)", text))
            assert text.count('{namespace="{{namespace}}"') == selectors, (gate["name"], text)
            assert text.count(" offset 5s") == selectors, (gate["name"], text)


def test_scenarios_by_name_path_and_unknown() -> None:
    assert scenarios.load("duplicate-charges").name == "duplicate-charges"
    assert scenarios.load(str(EXAMPLES / "aa.yaml")).name == "aa"
    with pytest.raises(ScenarioError, match="no such scenario"):
        scenarios.load("no-such-thing")


def test_expected_outcomes_and_compressed_clocks() -> None:
    assert not scenarios.expects_halt(scenarios.load("aa"))
    assert not scenarios.expects_halt(scenarios.load("shared-provider-outage"))
    assert all(
        scenarios.expects_halt(scenarios.load(name))
        for name in scenario_names()
        if name not in ("aa", "shared-provider-outage")
    )
    outage = scenarios.load("shared-provider-outage")
    assert scenarios.timed(outage) and not scenarios.timed(scenarios.load("duplicate-charges"))
    fault = scenarios.compress(outage, 10).faults[0]
    assert fault.start.after_seconds == 30 and fault.for_seconds == 60
    at_weight = scenarios.compress(scenarios.load("operator-intervention-load")).faults[0]
    assert at_weight.start.at_canary_weight == 5 and at_weight.start.after_seconds is None


@pytest.mark.parametrize(
    ("reason", "gate"),
    [
        ("critical gate duplicate-charges failed: e-value 117.9", "duplicate-charges"),
        ("gate checkout-completion failed 2 times: path=standard: ...", "checkout-completion"),
        ("no conclusive evidence after 30 evaluations: p99-latency: 12 samples < minSamples 150", "p99-latency"),
        ("router weights were changed by hand: canary 50%", ""),
    ],
)
def test_gate_named_by_a_halt_reason(reason: str, gate: str) -> None:
    assert gate_of(reason) == gate
