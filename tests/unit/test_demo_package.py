"""The demo's package data: the rollout lints clean, the scenarios are exact copies of examples/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from checkout_gates.api.resource import parse_rollout
from checkout_gates.cli.lint import lint_text
from checkout_gates.demo import scenario_names, scenarios
from checkout_gates.demo.manifests import demo_rollout, rollout_template
from checkout_gates.demo.outcome import gate_of
from checkout_gates.sim.scenario import ScenarioError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "scenarios"
PACKAGED = ROOT / "operator" / "checkout_gates" / "demo" / "scenarios"
ROLLOUT = ROOT / "operator" / "checkout_gates" / "demo" / "rollout.yaml"


def test_packaged_scenarios_are_exact_copies_of_the_examples() -> None:
    examples = {p.name: p.read_bytes() for p in EXAMPLES.glob("*.yaml")}
    packaged = {p.name: p.read_bytes() for p in PACKAGED.glob("*.yaml")}
    assert sorted(packaged) == sorted(examples), (
        "copy examples/scenarios/*.yaml to operator/checkout_gates/demo/scenarios/"
    )
    drifted = [name for name in examples if examples[name] != packaged[name]]
    assert not drifted, f"operator/checkout_gates/demo/scenarios/ differs from examples/scenarios/ in {drifted}"
    assert scenario_names() == sorted(p.stem for p in EXAMPLES.glob("*.yaml"))


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
