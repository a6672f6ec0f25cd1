"""A whole ``CheckoutRollout`` object, and turning raw YAML into one with readable problems."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from checkout_gates.api.base import FIELD_MARK
from checkout_gates.api.quantities import DURATION_PATTERN, TOLERANCE_PATTERN
from checkout_gates.api.spec import (
    DNS_LABEL,
    GROUP,
    KIND,
    LABEL_NAME,
    LABEL_VALUE,
    URL_PATTERN,
    VERSION,
    CheckoutRolloutSpec,
)
from checkout_gates.api.status import CheckoutRolloutStatus

API_VERSION = f"{GROUP}/{VERSION}"

PATTERN_MEANINGS = {
    DNS_LABEL: "a DNS label (lowercase letters, digits and '-', starting and ending alphanumeric)",
    LABEL_NAME: "a Prometheus label name (letters, digits and '_', not starting with a digit)",
    LABEL_VALUE: "a label value (letters, digits, '-', '_' and '.')",
    DURATION_PATTERN: "a duration (a number and a unit: 500ms, 30s, 10m, 1h30m)",
    TOLERANCE_PATTERN: "a tolerance (0.5pp, 20% or a plain number)",
    URL_PATTERN: "an http:// or https:// URL",
}


class ObjectMeta(BaseModel):
    """The parts of metadata the operator reads; the rest is kept by the API server, not by us."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=253)
    namespace: str = "default"
    uid: str = ""
    generation: int = 0
    resource_version: str = Field("", alias="resourceVersion")
    annotations: dict[str, str] = {}
    labels: dict[str, str] = {}


class CheckoutRollout(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    api_version: str = Field(alias="apiVersion")
    kind: str
    metadata: ObjectMeta
    spec: CheckoutRolloutSpec
    status: CheckoutRolloutStatus = CheckoutRolloutStatus()


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an object: where (a dotted field path) and what, with the fix."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def _path(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        elif "[" in part or part.startswith("function-"):
            # pydantic names union/validator branches in the location; they are not fields.
            continue
        else:
            text += f".{part}" if text else part
    return text


_EXPECTED = {
    "int_type": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _found(value: Any) -> str:
    """The JSON type and value of what was written, e.g. ``the string '5'``."""
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:40] + "..."
        return f"the string {shown!r}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field (check its spelling and indentation)"
    if kind in _EXPECTED:
        value = error.get("input")
        hint = " (write numbers and true/false without quotes)" if isinstance(value, str) else ""
        return f"is {_found(value)}, not {_EXPECTED[kind]}{hint}"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if kind == "string_pattern_mismatch":
        pattern = error.get("ctx", {}).get("pattern", "")
        expected = PATTERN_MEANINGS.get(pattern, f"the pattern {pattern}")
        return f"{error.get('input')!r} is not {expected}"
    return message


def problems_of(error: ValidationError, prefix: str = "") -> list[Problem]:
    out = []
    for item in error.errors():
        location = _path(tuple(item["loc"]))
        message = _message(item)
        if message.startswith(FIELD_MARK):
            inner, message = message[1:].split(FIELD_MARK, 1)
            location = f"{location}.{inner}" if location else inner
        path = ".".join(part for part in (prefix, location) if part)
        out.append(Problem(path, message))
    return out


def parse_rollout(document: Any) -> CheckoutRollout | list[Problem]:
    """The rollout, or every problem found in it, each naming its field path."""
    if not isinstance(document, dict):
        return [Problem("", f"expected a {KIND} object (a mapping), found {type(document).__name__}")]
    problems = []
    if document.get("apiVersion") != API_VERSION:
        problems.append(Problem("apiVersion", f"is {document.get('apiVersion')!r} (expected {API_VERSION!r})"))
    if document.get("kind") != KIND:
        problems.append(Problem("kind", f"is {document.get('kind')!r} (expected {KIND!r})"))
    if problems:
        return problems
    try:
        return CheckoutRollout.model_validate(document)
    except ValidationError as error:
        return problems_of(error)
