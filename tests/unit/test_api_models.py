"""The CheckoutRollout API models: the examples parse, bad specs name their field, quantities round-trip."""

from __future__ import annotations

import copy
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from checkout_gates.api.quantities import (
    Tolerance,
    format_duration,
    parse_duration,
    parse_tolerance,
)
from checkout_gates.api.resource import CheckoutRollout, Problem, parse_rollout
from checkout_gates.api.spec import CheckoutRolloutSpec
from checkout_gates.api.status import CheckoutRolloutStatus, Weights
from tests.unit.bad_specs import BAD_SPECS, EXAMPLE_FILES, BadSpec, load_example


def _parsed(document: Any) -> CheckoutRollout:
    outcome = parse_rollout(document)
    assert isinstance(outcome, CheckoutRollout), "\n".join(str(problem) for problem in outcome)
    return outcome


# --- the examples -------------------------------------------------------------------------------


def test_there_are_examples() -> None:
    assert len(EXAMPLE_FILES) >= 3


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda path: path.name)
def test_every_example_parses(path: Path) -> None:
    documents = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
    assert documents
    for document in documents:
        rollout = _parsed(document)
        assert rollout.spec.steps
        assert rollout.metadata.name == document["metadata"]["name"]


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda path: path.name)
def test_to_wire_round_trips(path: Path) -> None:
    """What the operator writes back (camelCase, unset optionals left out) parses to the same spec."""
    rollout = _parsed(yaml.safe_load(path.read_text(encoding="utf-8")))
    wire = rollout.spec.to_wire()
    assert "setWeight" in str(wire) and "set_weight" not in str(wire)
    assert CheckoutRolloutSpec.model_validate(wire) == rollout.spec


def test_example_accessors() -> None:
    spec = _parsed(load_example("card-payments.yaml")).spec
    assert spec.routing.gateway_api is not None and spec.routing.gateway_api.http_route == "checkout-api"
    assert [step.kind for step in spec.steps][:3] == ["set_weight", "gate", "set_weight"]
    assert spec.gate("duplicate-charges").signal_kind == "count"
    assert spec.gate("duplicate-charges").critical
    assert spec.owner.page[0].kind == "pager_duty"
    assert spec.interval_seconds() == 30.0
    assert spec.variant_label("stable") == "stable"
    assert spec.variant_label("canary") == "canary"


def test_defaults_fill_in() -> None:
    spec = _parsed(load_example("pricing-tax.yaml")).spec
    assert spec.on_halt == "hold"
    assert spec.analysis.failure_limit == 2
    gate = spec.gate("mismatch-queue")
    assert (gate.method, gate.alpha, gate.min_samples, gate.on_missing_data) == ("threshold", None, 0, "inconclusive")
    assert spec.analysis.alpha == 0.01  # one false-halt budget for the rollout
    assert spec.variant_label("canary") == "canary"  # no variant set: the side's name


def test_status_defaults_and_tolerates_newer_fields() -> None:
    document = load_example("refund-flow.yaml")
    document["status"] = {
        "phase": "Paused",
        "pausedFrom": "Progressing",
        "lastEvaluatedAt": "2026-11-27T10:00:00Z",
        "weights": {"stable": 95, "canary": 5},
        "someFieldOfANewerOperator": {"x": 1},
    }
    status = _parsed(document).status
    assert status.phase == "Paused"
    assert status.paused_from == "Progressing"
    assert status.last_evaluated_at is not None and status.last_evaluated_at.year == 2026
    assert status.weights == Weights.canary_at(5)
    assert CheckoutRolloutStatus().weights == Weights(stable=100, canary=0)


def test_models_are_frozen() -> None:
    spec = _parsed(load_example("card-payments.yaml")).spec
    with pytest.raises(ValidationError):
        spec.on_halt = "abort"  # type: ignore[misc]


# --- bad specs ----------------------------------------------------------------------------------


def test_the_table_of_bad_specs_is_large_and_distinct() -> None:
    ids = [bad.id for bad in BAD_SPECS]
    assert len(ids) == len(set(ids))
    assert len(BAD_SPECS) >= 15
    assert len({bad.path for bad in BAD_SPECS}) >= 15


@pytest.mark.parametrize("bad", BAD_SPECS, ids=lambda bad: bad.id)
def test_bad_spec_names_its_field(bad: BadSpec) -> None:
    outcome = parse_rollout(bad.document())
    assert isinstance(outcome, list), f"{bad.id} was accepted"
    assert outcome
    matching = [problem for problem in outcome if bad.path in problem.path and bad.message in problem.message]
    assert matching, f"no problem at {bad.path!r} saying {bad.message!r}: {[str(p) for p in outcome]}"
    for problem in outcome:
        assert problem.path.startswith("spec"), problem
        assert "§" not in problem.message and "function-" not in problem.path, problem
        assert not problem.message.startswith("Value error"), problem


@pytest.mark.parametrize("bad", BAD_SPECS, ids=lambda bad: bad.id)
def test_bad_spec_mutations_do_not_touch_the_example(bad: BadSpec) -> None:
    before = load_example(bad.example)
    bad.document()
    assert load_example(bad.example) == before
    _parsed(copy.deepcopy(before))


def test_problem_reads_as_path_and_message() -> None:
    assert str(Problem("spec.steps[1].setWeight", "is wrong")) == "spec.steps[1].setWeight: is wrong"
    assert str(Problem("", "is wrong")) == "is wrong"


@pytest.mark.parametrize("document", [None, "text", [1, 2], 3])
def test_not_a_mapping(document: Any) -> None:
    outcome = parse_rollout(document)
    assert isinstance(outcome, list) and len(outcome) == 1
    assert "expected a CheckoutRollout object" in outcome[0].message


def test_wrong_api_version_and_kind() -> None:
    document = load_example("card-payments.yaml")
    document["apiVersion"] = "gates.checkout.dev/v1"
    document["kind"] = "Rollout"
    outcome = parse_rollout(document)
    assert isinstance(outcome, list)
    assert [problem.path for problem in outcome] == ["apiVersion", "kind"]
    assert "gates.checkout.dev/v1alpha1" in outcome[0].message


def test_several_problems_are_all_reported() -> None:
    document = load_example("card-payments.yaml")
    document["spec"]["steps"][7]["setWeight"] = 101
    document["spec"]["gates"][0]["alpha"] = 0.9
    del document["spec"]["owner"]["page"]
    outcome = parse_rollout(document)
    assert isinstance(outcome, list)
    assert {problem.path for problem in outcome} == {
        "spec.steps[7].setWeight",
        "spec.gates[0].alpha",
        "spec.owner.page",
    }


def test_missing_spec() -> None:
    document = load_example("card-payments.yaml")
    del document["spec"]
    outcome = parse_rollout(document)
    assert isinstance(outcome, list)
    assert [(problem.path, problem.message) for problem in outcome] == [("spec", "is required")]


def test_variant_clash_with_an_unset_canary_variant_names_the_stable_one() -> None:
    document = load_example("pricing-tax.yaml")
    document["spec"]["stable"]["variant"] = "canary"
    outcome = parse_rollout(document)
    assert isinstance(outcome, list)
    assert [problem.path for problem in outcome] == ["spec.stable.variant"]


def test_equal_weights_and_zero_first_weight_are_fine() -> None:
    document = load_example("card-payments.yaml")
    document["spec"]["steps"][0]["setWeight"] = 0
    document["spec"]["steps"][2]["setWeight"] = 0
    _parsed(document)


# --- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("2m30s", 150.0),
        ("1h0m0s", 3600.0),
        ("0s", 0.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10 minutes", "10", "m", "", "-5s", "5 s", "5d", "1.s", "PT5M", "5S"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(1, "1s"), (59, "59s"), (60, "1m"), (90, "1m30s"), (3600, "1h"), (3661, "1h1m1s"), (86400, "24h"), (7200, "2h")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_duration_rounds_up_to_a_whole_second() -> None:
    assert format_duration(0) == "1s"
    assert format_duration(0.2) == "1s"
    assert format_duration(59.5) == "1m"


@given(st.integers(min_value=1, max_value=10**7))
def test_duration_round_trip_from_seconds(seconds: int) -> None:
    text = format_duration(seconds)
    assert parse_duration(text) == seconds
    assert format_duration(parse_duration(text)) == text


@given(
    st.lists(
        st.tuples(st.integers(min_value=0, max_value=999), st.sampled_from(["h", "m", "s"])), min_size=1, max_size=3
    )
)
def test_duration_round_trip_from_text(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{number}{unit}" for number, unit in parts)
    seconds = parse_duration(text)
    if seconds >= 1:
        assert parse_duration(format_duration(seconds)) == seconds


# --- tolerances ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("0.5pp", "points", 0.5),
        ("1pp", "points", 1.0),
        ("20%", "relative", 20.0),
        ("0%", "relative", 0.0),
        ("0.2", "absolute", 0.2),
        ("5", "absolute", 5.0),
    ],
)
def test_parse_tolerance(text: str, kind: str, value: float) -> None:
    tolerance = parse_tolerance(text)
    assert (tolerance.kind, tolerance.value) == (kind, value)
    assert str(tolerance) == text


@pytest.mark.parametrize("text", ["half", "", "-1pp", "1 pp", "1e-3", "0.5 %", "pp", "%", "1.pp", "5PP"])
def test_parse_tolerance_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="is not a tolerance"):
        parse_tolerance(text)


def test_tolerance_limits() -> None:
    assert parse_tolerance("0.5pp").limit_below(0.98) == pytest.approx(0.975)
    assert parse_tolerance("20%").limit_above(2.0) == pytest.approx(2.4)
    assert parse_tolerance("20%").limit_below(-1.0) == pytest.approx(-1.2)
    assert parse_tolerance("5").limit_above(10.0) == pytest.approx(15.0)
    assert parse_tolerance("0%").limit_above(3.0) == pytest.approx(3.0)


@pytest.mark.parametrize("value", [1234567.0, 0.00001, 1e16, 123.456, 0.1, 100.0, 0.0])
@pytest.mark.parametrize("kind", ["points", "relative", "absolute"])
def test_tolerance_text_never_uses_an_exponent(value: float, kind: Any) -> None:
    tolerance = Tolerance(kind, value)
    assert "e" not in str(tolerance).lower()
    assert parse_tolerance(str(tolerance)) == tolerance


@given(
    st.decimals(min_value=0, max_value=10**9, allow_nan=False, allow_infinity=False, places=6),
    st.sampled_from(["pp", "%", ""]),
)
def test_tolerance_round_trip(number: Decimal, suffix: str) -> None:
    text = f"{number:f}{suffix}"
    tolerance = parse_tolerance(text)
    again = parse_tolerance(str(tolerance))
    assert again == tolerance
    assert math.isclose(again.value, float(number))
    assert str(again) == str(tolerance)
