"""Query templates: ``{{variant}}``, ``{{namespace}}``, ``{{name}}``, ``{{service}}``, ``{{window}}``.

A template names a variable as ``{{name}}`` (spaces inside the braces are allowed). Rendering
substitutes every variable or refuses the whole query: a misspelt ``{{varient}}`` must not reach
Prometheus as literal text, where it would match nothing and read as "no data".
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Literal

from checkout_gates.api.spec import CheckoutRolloutSpec

VARIABLES = ("variant", "namespace", "name", "service", "window")

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}\s]*)\s*\}\}")


class TemplateError(ValueError):
    """A template names a variable that has no value."""


def placeholders(template: str) -> list[str]:
    """The variable names a template uses, in order of first use."""
    names: list[str] = []
    for match in _PLACEHOLDER.finditer(template):
        if match.group(1) not in names:
            names.append(match.group(1))
    return names


def render(template: str, variables: Mapping[str, str]) -> str:
    """The template with every ``{{x}}`` replaced by ``variables[x]``; TemplateError on an unknown x."""
    unknown = [name for name in placeholders(template) if name not in variables]
    if unknown:
        known = ", ".join("{{" + name + "}}" for name in sorted(variables))
        named = ", ".join("{{" + name + "}}" for name in unknown)
        noun = "variable" if len(unknown) == 1 else "variables"
        raise TemplateError(f"unknown template {noun} {named} in query {template!r} (known: {known})")
    return _PLACEHOLDER.sub(lambda match: variables[match.group(1)], template)


def promql_duration(seconds: float) -> str:
    """A PromQL duration for a window: ``90s``, ``10m``, ``2h``; milliseconds when not whole seconds."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"a query window must be a positive number of seconds, not {seconds!r}")
    millis = math.ceil(seconds * 1000 - 1e-6)
    if millis % 1000:
        return f"{millis}ms"
    whole = millis // 1000
    if whole % 3600 == 0:
        return f"{whole // 3600}h"
    if whole % 60 == 0:
        return f"{whole // 60}m"
    return f"{whole}s"


def query_variables(
    spec: CheckoutRolloutSpec,
    side: Literal["stable", "canary"],
    *,
    namespace: str,
    name: str,
    window_seconds: float,
) -> dict[str, str]:
    """The variables of one side's queries: its metrics' variant label, its Service, and the window."""
    target = spec.stable if side == "stable" else spec.canary
    return {
        "variant": spec.variant_label(side),
        "namespace": namespace,
        "name": name,
        "service": target.service,
        "window": promql_duration(window_seconds),
    }
