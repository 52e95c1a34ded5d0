"""The JSON Schema of an `astron/v1` document, generated from the same specs validation uses.

The schema describes shapes only; graph rules (cycles, reachability, references) are beyond
JSON Schema and are checked by `validate_document`.
"""

from __future__ import annotations

from typing import Any

from engine.dsl import validate as rules
from engine.dsl.spec import TypeSpec
from engine.nodes.base import Registry


def document_json_schema(registry: Registry | None = None) -> dict[str, Any]:
    if registry is None:
        from engine.nodes import shared_default_registry as default_registry

        registry = default_registry()
    type_checks = []
    for name in registry.names():
        strategy = registry[name]
        # `description` and `x-outputs` are annotations for editors (docs/editor.md): what the
        # type does, and the outputs every node of it has (null: each node declares its own).
        then: dict[str, Any] = {
            "description": strategy.summary,
            "x-outputs": None if strategy.fixed_outputs is None else list(strategy.fixed_outputs),
            "properties": {"params": strategy.params_spec.schema()}}
        if strategy.params_spec.required:
            then["required"] = ["params"]
        if strategy.fixed_outputs is None:
            then.setdefault("required", []).append("outputs")
        else:
            then["not"] = {"required": ["outputs"]}
        type_checks.append({"if": {"properties": {"type": {"const": name}}}, "then": then})
    node = {
        "type": "object",
        "properties": {
            "id": rules.NODE_ID.schema(),
            "type": {"enum": registry.names()},
            "title": rules.TITLE.schema(),
            "inputs": rules.INPUTS.schema(),
            "params": {"type": "object"},
            "outputs": {"type": "object", "additionalProperties": {"$ref": "#/$defs/type"},
                        "propertyNames": {"pattern": rules.ID_PATTERN}},
            "retry": rules.RETRY.schema(),
            "timeout_s": rules.TIMEOUT.schema(),
            "on_error": rules.ON_ERROR_FIELD.schema(),
            "default": {"type": "object"},
            "ui": rules.UI.schema(),
        },
        "required": ["id", "type"],
        "additionalProperties": False,
        "allOf": type_checks,
    }
    edge = {
        "type": "object",
        "properties": {"from": {"type": "string"}, "to": {"type": "string"},
                       "branch": {"type": "string"}},
        "required": ["from", "to"],
        "additionalProperties": False,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://astron.dev/schemas/astron-v1.json",
        "title": "Astron flow (astron/v1)",
        "type": "object",
        "properties": {
            "dsl": {"const": rules.DSL_VERSION},
            "name": rules.NAME.schema(),
            "description": rules.DESCRIPTION.schema(),
            "settings": rules.SETTINGS.schema(),
            "nodes": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            "edges": {"type": "array", "items": {"$ref": "#/$defs/edge"}},
        },
        "required": ["dsl", "name", "nodes", "edges"],
        "additionalProperties": False,
        "$defs": {"node": node, "edge": edge, "type": TypeSpec().schema()},
    }
