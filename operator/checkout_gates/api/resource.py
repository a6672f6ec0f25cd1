"""A whole ``CheckoutRollout`` object, and turning raw YAML into one with readable problems."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from checkout_gates.api.base import FIELD_MARK
from checkout_gates.api.quantities import DURATION_PATTERN, TOLERANCE_PATTERN
from checkout_gates.api.spec import (
    BUCKET_BOUND,
    DNS_LABEL,
    GROUP,
    KIND,
    LABEL_NAME,
    LABEL_VALUE,
    SECRET_KEY_PATTERN,
    URL_PATTERN,
    VERSION,
    CheckoutRolloutSpec,
)
from checkout_gates.api.status import CheckoutRolloutStatus
from checkout_gates.api.text import printable, shown

API_VERSION = f"{GROUP}/{VERSION}"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

PATTERN_MEANINGS = {
    DNS_LABEL: "a DNS label (lowercase letters, digits and '-', starting and ending alphanumeric)",
    DNS_SUBDOMAIN: "a DNS subdomain (DNS labels joined by '.')",
    LABEL_NAME: "a Prometheus label name (letters, digits and '_', not starting with a digit)",
    LABEL_VALUE: "a label value (letters, digits, '-', '_' and '.')",
    DURATION_PATTERN: "a duration (a number and a unit: 500ms, 30s, 10m, 1h30m)",
    TOLERANCE_PATTERN: "a tolerance (0.5pp, 20% or a plain number)",
    URL_PATTERN: "an http:// or https:// URL",
    SECRET_KEY_PATTERN: "a Secret key (letters, digits, '-', '_' and '.')",
    BUCKET_BOUND: 'a finite bucket bound as the le label spells it (e.g. "0.5" or "1.0")',
}


class ObjectMeta(BaseModel):
    """The parts of metadata the operator reads; the rest is kept by the API server, not by us."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    # As kube-apiserver requires them; lint checks them too because the dry runs print them.
    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)
    namespace: str = Field("default", min_length=1, max_length=63, pattern=DNS_LABEL)
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


# How pydantic names a union or validator branch: "function-after[...]", "tagged-union[...]", "str".
_BRANCH = re.compile(r"function-[a-z-]+|[a-z][a-z-]*\[.*\]", re.DOTALL)
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_./-]{1,80}")
MESSAGE_LENGTH = 300  # a problem's message; longer ones are cut (each quoted value is cut first)


def _key(part: str) -> str:
    """A mapping key as a path shows it: as written when it is a plain name, else quoted and bounded
    (keys come from the document too: an unknown field can be a megabyte of ANSI escapes)."""
    return part if _PLAIN_KEY.fullmatch(part) else f"[{shown(part)}]"


def _path(location: tuple[int | str, ...]) -> str:
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        elif _BRANCH.fullmatch(part):
            # pydantic names union/validator branches in the location; they are not fields.
            continue
        else:
            key = _key(part)
            text += key if key.startswith("[") or not text else f".{key}"
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
        return f"the string {shown(value, limit=40)}"
    if isinstance(value, int | float):
        return f"the number {shown(value)}"
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
        return f"{shown(error.get('input'))} is not {expected}"
    return message


def _bounded_message(message: str) -> str:
    # The models' own messages quote values they checked; this is the backstop for any that do not.
    cut = message if len(message) <= MESSAGE_LENGTH else message[:MESSAGE_LENGTH] + "..."
    return printable(" ".join(cut.split()))


def problems_of(error: ValidationError, prefix: str = "") -> list[Problem]:
    out = []
    for item in error.errors():
        location = _path(tuple(item["loc"]))
        message = _message(item)
        if message.startswith(FIELD_MARK):
            inner, message = message[1:].split(FIELD_MARK, 1)
            location = f"{location}.{inner}" if location else inner
        path = ".".join(part for part in (prefix, location) if part)
        out.append(Problem(path, _bounded_message(message)))
    return out


def parse_rollout(document: Any) -> CheckoutRollout | list[Problem]:
    """The rollout, or every problem found in it, each naming its field path."""
    if not isinstance(document, dict):
        return [Problem("", f"expected a {KIND} object (a mapping), found {type(document).__name__}")]
    problems = []
    # The values are quoted through shown(): a repr() of an alias bomb is gigabytes long.
    if document.get("apiVersion") != API_VERSION:
        problems.append(
            Problem("apiVersion", f"is {shown(document.get('apiVersion'))} (expected {shown(API_VERSION)})")
        )
    if document.get("kind") != KIND:
        problems.append(Problem("kind", f"is {shown(document.get('kind'))} (expected {shown(KIND)})"))
    if problems:
        return problems
    try:
        return CheckoutRollout.model_validate(document)
    except ValidationError as error:
        return problems_of(error)
