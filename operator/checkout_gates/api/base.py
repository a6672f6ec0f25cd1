"""Common base of the API models: camelCase names on the wire, unknown fields refused."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        validate_default=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as Kubernetes stores it: camelCase keys, unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


FIELD_MARK = "\u00a7"


def field_error(path: str, message: str) -> ValueError:
    """A cross-field error that names the field it is about, relative to the model raising it.

    Pydantic places a model validator's error at the model itself; the mark lets
    :func:`checkout_gates.api.resource.problems_of` move it to the field a person must edit.
    """
    return ValueError(f"{FIELD_MARK}{path}{FIELD_MARK}{message}")


def wire_name(model: type[BaseModel], field: str) -> str:
    return model.model_fields[field].alias or to_camel(field)


def exactly_one_of(model: BaseModel, fields: tuple[str, ...], what: str) -> None:
    """Raise a ValueError naming the wire fields when not exactly one of ``fields`` is set."""
    chosen = [name for name in fields if getattr(model, name) is not None]
    if len(chosen) != 1:
        wire = ", ".join(wire_name(type(model), name) for name in fields)
        found = ", ".join(wire_name(type(model), name) for name in chosen) or "none"
        raise ValueError(f"{what} needs exactly one of {wire} (found: {found})")


def cel_exactly_one(model: type[BaseModel], fields: tuple[str, ...]) -> str:
    """The CEL rule that mirrors :func:`exactly_one_of` in the CRD."""
    return " + ".join(f"(has(self.{wire_name(model, name)}) ? 1 : 0)" for name in fields) + " == 1"
