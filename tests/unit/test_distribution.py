"""The product's distribution: what `pip install checkout-gates` brings, without the lab.

The lab (testbed, simulator, demo) is a second distribution, `checkout-gates-lab`; the product's
runtime dependency closure (read from the installed metadata, no index needed) must not need it or
what only it needs (`cryptography`, for the testbed's certificates)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution, entry_points

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def runtime_closure(name: str) -> set[str]:
    """Canonical names of ``name`` and everything its runtime requirements (no extras) pull in."""
    seen: set[str] = set()
    todo = [name]
    while todo:
        current = canonicalize_name(todo.pop())
        if current in seen:
            continue
        seen.add(current)
        try:
            requires = distribution(current).requires or []
        except PackageNotFoundError:
            continue  # a marker excluded it on this platform, or it is optional
        for text in requires:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            todo.append(requirement.name)
    return seen


def test_the_product_pulls_neither_the_lab_nor_cryptography() -> None:
    closure = runtime_closure("checkout-gates")
    assert "checkout-gates" in closure
    assert "checkout-gates-lab" not in closure
    assert "cryptography" not in closure, sorted(closure)


def test_the_lab_adds_its_commands_through_the_entry_point_group() -> None:
    names = {point.name for point in entry_points(group="checkout_gates.commands")}
    assert {"demo", "simulate"} <= names
    assert "checkout-gates" in runtime_closure("checkout-gates-lab")
