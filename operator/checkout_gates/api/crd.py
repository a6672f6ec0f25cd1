"""The CustomResourceDefinition, generated from the pydantic models.

Pydantic emits JSON Schema; Kubernetes wants a *structural* OpenAPI v3 schema: no ``$ref``,
no ``anyOf`` with null, boolean ``exclusiveMinimum``, no ``additionalProperties`` beside
``properties``. This module translates, and adds the CEL rules of :data:`spec.CEL_RULES`.
"""

from __future__ import annotations

from typing import Any

import yaml
from pydantic import BaseModel

from checkout_gates.api.freeze import FREEZE_CEL_RULES, FREEZE_KIND, FREEZE_PLURAL, CheckoutFreezeSpec
from checkout_gates.api.spec import CEL_RULES, GROUP, KIND, PLURAL, VERSION, CheckoutRolloutSpec
from checkout_gates.api.status import CheckoutRolloutStatus

Schema = dict[str, Any]
_DROPPED_KEYS = {"title", "default", "additionalProperties", "$defs"}


def _cel_rules_by_name() -> dict[str, list[dict[str, str]]]:
    return {
        model.__name__: [
            {"rule": cel.rule, "message": cel.message, **({"fieldPath": cel.field_path} if cel.field_path else {})}
            for cel in rules
        ]
        for model, rules in {**CEL_RULES, **FREEZE_CEL_RULES}.items()
    }


def _structural(node: Schema, defs: dict[str, Schema], rules: dict[str, list[dict[str, str]]]) -> Schema:
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        resolved = _structural(defs[name], defs, rules)
        if "description" in node:
            resolved["description"] = node["description"]
        if name in rules:
            resolved["x-kubernetes-validations"] = rules[name]
        return resolved
    if "anyOf" in node:
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express a union of {len(options)} schemas structurally: {node}")
        merged = {**{k: v for k, v in node.items() if k != "anyOf"}, **options[0]}
        return _structural(merged, defs, rules)
    out: Schema = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "properties":
            out[key] = {name: _structural(child, defs, rules) for name, child in value.items()}
        elif key == "items":
            out[key] = _structural(value, defs, rules)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = value
    return out


def model_schema(model: type[BaseModel]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    rules = _cel_rules_by_name()
    schema = _structural(raw, raw.get("$defs", {}), rules)
    if model.__name__ in rules:
        schema["x-kubernetes-validations"] = rules[model.__name__]
    return schema


def _column(name: str, path: str, kind: str = "string", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "jsonPath": path, **extra}


def crd_manifest() -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": ["cro"],
                "categories": ["all", "checkout"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        _column("Phase", ".status.phase"),
                        _column("Step", ".status.currentStep", "integer"),
                        _column("Canary", ".status.weights.canary", "integer", description="canary weight %"),
                        _column("Verdict", ".status.verdict"),
                        _column("Stable", ".status.revisions.stable.hash", description="stable revision"),
                        _column("Revision", ".status.revisions.canary.hash", description="canary revision"),
                        _column("Frozen-Until", ".status.freeze.until", description="a CheckoutFreeze holds exposure"),
                        _column("Age", ".metadata.creationTimestamp", "date"),
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A gated, stepwise exposure of a checkout or payment service.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": "gates.checkout.dev/v1alpha1"},
                                "kind": {"type": "string", "description": "CheckoutRollout"},
                                # kube-apiserver takes nothing else here (the metadata's schema is its own).
                                "metadata": {"type": "object"},
                                "spec": model_schema(CheckoutRolloutSpec),
                                "status": model_schema(CheckoutRolloutStatus),
                            },
                        }
                    },
                }
            ],
        },
    }


class _PlainDumper(yaml.SafeDumper):
    """No anchors and aliases: kubectl reads them, but people reviewing the CRD should not have to."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def freeze_crd_manifest() -> dict[str, Any]:
    """The cluster-scoped CheckoutFreeze: windows in which no rollout's exposure grows."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{FREEZE_PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Cluster",
            "names": {
                "kind": FREEZE_KIND,
                "listKind": f"{FREEZE_KIND}List",
                "plural": FREEZE_PLURAL,
                "singular": FREEZE_KIND.lower(),
                "shortNames": ["cfreeze"],
                "categories": ["checkout"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "additionalPrinterColumns": [
                        _column("Reason", ".spec.reason"),
                        _column("Age", ".metadata.creationTimestamp", "date"),
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "Windows in which no CheckoutRollout's exposure grows.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": "gates.checkout.dev/v1alpha1"},
                                "kind": {"type": "string", "description": "CheckoutFreeze"},
                                "metadata": {"type": "object"},
                                "spec": model_schema(CheckoutFreezeSpec),
                            },
                        }
                    },
                }
            ],
        },
    }


HEADER = "# Generated by `checkout-gates crd` from operator/checkout_gates/api; do not edit by hand.\n"


def crd_yaml() -> str:
    return HEADER + yaml.dump(crd_manifest(), Dumper=_PlainDumper, sort_keys=False, width=120)


def freeze_crd_yaml() -> str:
    return HEADER.replace("crd`", "crd --freeze`") + yaml.dump(
        freeze_crd_manifest(), Dumper=_PlainDumper, sort_keys=False, width=120
    )
