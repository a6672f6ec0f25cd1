"""Query templates: substitution, unknown variables, windows as PromQL durations."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from checkout_gates.api.spec import CheckoutRolloutSpec
from checkout_gates.metrics.prometheus import gate_queries
from checkout_gates.metrics.templates import (
    VARIABLES,
    TemplateError,
    placeholders,
    promql_duration,
    query_variables,
    render,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "gates"
VALUES = {"variant": "canary", "namespace": "payments", "name": "checkout-api", "service": "checkout-api-canary"}


def test_render_substitutes_every_variable() -> None:
    template = (
        'sum(rate(http_requests_total{variant="{{variant}}", namespace="{{namespace}}", '
        'service="{{ service }}", rollout="{{name}}"}[{{window}}]))'
    )
    rendered = render(template, {**VALUES, "window": "90s"})
    assert rendered == (
        'sum(rate(http_requests_total{variant="canary", namespace="payments", '
        'service="checkout-api-canary", rollout="checkout-api"}[90s]))'
    )


def test_unknown_variable_names_it_and_the_known_ones() -> None:
    with pytest.raises(TemplateError) as error:
        render('up{variant="{{varient}}"}[{{window}}]', {**VALUES, "window": "1m"})
    message = str(error.value)
    assert "{{varient}}" in message
    for name in VARIABLES:
        assert "{{" + name + "}}" in message


def test_several_unknown_variables_are_all_named() -> None:
    with pytest.raises(TemplateError, match=r"variables \{\{a\}\}, \{\{b\}\}"):
        render("{{a}} {{b}} {{a}}", {"variant": "x"})


def test_text_without_placeholders_is_unchanged() -> None:
    assert render('sum(up{job="a"})', {}) == 'sum(up{job="a"})'
    assert placeholders("{{variant}} {{ window }} {{variant}}") == ["variant", "window"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(30, "30s"), (90, "90s"), (60, "1m"), (600, "10m"), (3600, "1h"), (5400, "90m"), (7200, "2h"), (0.5, "500ms")],
)
def test_promql_duration(seconds: float, text: str) -> None:
    assert promql_duration(seconds) == text


@pytest.mark.parametrize("seconds", [0, -5, float("nan"), float("inf")])
def test_promql_duration_refuses_nonsense(seconds: float) -> None:
    with pytest.raises(ValueError, match="positive number of seconds"):
        promql_duration(seconds)


def _example(name: str) -> CheckoutRolloutSpec:
    document = yaml.safe_load((EXAMPLES / name).read_text())
    return CheckoutRolloutSpec.model_validate(document["spec"])


def test_query_variables_per_side() -> None:
    spec = _example("card-payments.yaml")
    stable = query_variables(spec, "stable", namespace="payments", name="checkout-api", window_seconds=600)
    canary = query_variables(spec, "canary", namespace="payments", name="checkout-api", window_seconds=30)
    assert stable == {
        "variant": "stable",
        "namespace": "payments",
        "name": "checkout-api",
        "service": "checkout-api-stable",
        "window": "10m",
    }
    assert canary["variant"] == "canary"
    assert canary["service"] == "checkout-api-canary"
    assert canary["window"] == "30s"


@pytest.mark.parametrize("example", sorted(path.name for path in EXAMPLES.glob("*.yaml")))
def test_every_example_query_renders(example: str) -> None:
    spec = _example(example)
    for gate in spec.gates:
        for side in ("stable", "canary"):
            variables = query_variables(spec, side, namespace="ns", name="n", window_seconds=30)
            for template in gate_queries(gate).values():
                rendered = render(template, variables)
                assert "{{" not in rendered
                assert f'variant="{spec.variant_label(side)}"' in rendered
