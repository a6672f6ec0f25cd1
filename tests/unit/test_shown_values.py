"""Untrusted values in messages: quoted bounded, control characters escaped, never ``repr()``'d whole."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest

from checkout_gates.api.resource import CheckoutRollout, parse_rollout
from checkout_gates.api.text import SHOWN_LENGTH, printable, shown
from tests.unit.bad_specs import load_example


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("v1", "'v1'"),
        ("", "''"),
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (5, "5"),
        (2.5, "2.5"),
        ([1, 2, 3], "a list of 3 items"),
        ([1], "a list of 1 item"),
        ({"a": 1}, "a mapping of 1 key"),
        (date(2026, 11, 27), "2026-11-27"),
        (b"\x00\x01", "2 bytes of binary data"),
        ({1, 2}, "a set"),
    ],
)
def test_shown_values(value: Any, expected: str) -> None:
    assert shown(value) == expected


def test_long_strings_are_cut_and_their_length_said() -> None:
    text = shown("x" * 10_000)
    assert text == f"'{'x' * SHOWN_LENGTH}...' (10000 characters)"


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [
        ("\x1b[2J", "\\x1b[2J"),
        ("a\nb\r\tc", "a\\nb\\r\\tc"),
        ("nul\x00", "nul\\x00"),
        ("\u202eevil", "\\u202eevil"),  # a bidirectional override turns the rest of the line around
        ("\ud800", "\\ud800"),  # a lone surrogate (a YAML escape can make one) cannot even be printed
        ("caf\u00e9 \u2713", "caf\u00e9 \u2713"),  # printable non-ASCII stays as written
    ],
)
def test_control_characters_are_escaped(raw: str, escaped: str) -> None:
    assert printable(raw) == escaped
    assert shown(raw) == f"'{escaped}'"


def test_a_huge_structure_is_described_not_walked() -> None:
    nested: list[Any] = []
    for _ in range(10):
        nested = [nested] * 10  # 10**10 leaves as a tree; repr() would never finish
    assert shown(nested) == "a list of 10 items"


def test_an_integer_too_long_for_text_is_described() -> None:
    assert shown(10**5000).startswith("a number of about 500")


# --- parse_rollout's messages -------------------------------------------------------------------


def _problems(document: Any) -> list[str]:
    outcome = parse_rollout(document)
    assert not isinstance(outcome, CheckoutRollout)
    return [str(problem) for problem in outcome]


def test_api_version_and_kind_are_quoted_bounded() -> None:
    shared: list[Any] = ["lol"] * 9
    for _ in range(8):
        shared = [shared] * 9  # the object an alias bomb builds: 9**9 strings as a tree
    document = {"apiVersion": shared, "kind": "\x1b[2J" + "K" * 5000, "metadata": {"name": "x"}, "spec": {}}
    problems = _problems(document)
    assert problems == [
        "apiVersion: is a list of 9 items (expected 'gates.checkout.dev/v1alpha1')",
        f"kind: is '\\x1b[2J{'K' * (SHOWN_LENGTH - 4)}...' (5004 characters) (expected 'CheckoutRollout')",
    ]


def test_pydantic_problems_are_bounded_and_printable() -> None:
    document = copy.deepcopy(load_example("card-payments.yaml"))
    document["spec"]["onHalt"] = "\x1b]0;owned\x07" + "h" * 100_000
    document["spec"]["\x1b[31mhidden\nfield" + "f" * 10_000] = 1
    document["spec"]["steps"][0]["setWeight"] = "\x1b[2J" * 1000
    document["spec"]["stable"]["service"] = "Bad\nName\x00"
    problems = _problems(document)
    assert len(problems) == 4, problems
    for problem in problems:
        assert len(problem) < 500, problem
        assert problem.isprintable(), problem
    assert any(p.startswith("spec['\\x1b[31mhidden\\nfield") and "not a known field" in p for p in problems)
    assert any(p.startswith("spec.steps[0].setWeight: is the string '\\x1b[2J") for p in problems)
    assert any(p.startswith("spec.stable.service: 'Bad\\nName") and "is not a DNS label" in p for p in problems)


def test_metadata_names_are_what_kube_apiserver_accepts() -> None:
    """The dry runs print namespace/name, so lint refuses what kube-apiserver would (an escape in a name)."""
    document = copy.deepcopy(load_example("card-payments.yaml"))
    document["metadata"].update(name="checkout\x1b[2J", namespace="Payments")
    problems = _problems(document)
    assert "metadata.name: 'checkout\\x1b[2J' is not a DNS subdomain (DNS labels joined by '.')" in problems
    assert any(p.startswith("metadata.namespace: 'Payments' is not a DNS label") for p in problems)
    document["metadata"].update(name="checkout-api.v2", namespace="payments")
    assert isinstance(parse_rollout(document), CheckoutRollout)
