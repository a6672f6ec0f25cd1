"""Common base of the API models: camelCase names on the wire, unknown fields refused."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Strict, model_validator
from pydantic.alias_generators import to_camel


def _whole(value: Any) -> Any:
    """kube-apiserver takes ``5.0`` for an integer field (and stores ``5``); so does lint."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# JSON's types, as kube-apiserver checks them: no "5" for 5, no true for 1, no 1 for true.
# (pydantic's lax mode would convert those, and lint would pass what kube-apiserver refuses.)
# An integer field is ``Annotated[int, Strict(), Field(bounds...), WHOLE]``: WHOLE last, so that
# the bounds stay in the JSON schema (and so in the CRD).
WHOLE = BeforeValidator(_whole)
JsonInt = Annotated[int, Strict(), WHOLE]
JsonNumber = Annotated[float, Strict()]
JsonBool = Annotated[bool, Strict()]


class ApiModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        # A docstring under a field is its description: in the CRD, so `kubectl explain` shows it.
        use_attribute_docstrings=True,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        validate_default=True,
        allow_inf_nan=False,  # JSON has no NaN or Infinity: kubectl could not send them
    )

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        """kube-apiserver drops a ``null`` known field of a non-nullable schema before validating
        it (``segmentBy:`` with no value in YAML is as if absent); lint reads it the same way.
        An unknown field is refused even when null, as kube-apiserver's strict validation does."""
        if isinstance(data, dict) and None in data.values():
            known = set(cls.model_fields) | {info.alias for info in cls.model_fields.values() if info.alias}
            return {key: value for key, value in data.items() if value is not None or key not in known}
        return data

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
