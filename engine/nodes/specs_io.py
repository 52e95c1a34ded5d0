"""Params, outputs and handles of the node types that touch the world (docs/dsl.md §5.6–§5.11).

Their checks live here so that a document using them validates fully; how each one executes
lives beside it, behind the ports the platform configures.
"""

from __future__ import annotations

import ast
from typing import Any

from engine.dsl.spec import (
    Arr,
    Bool,
    Checker,
    Field,
    Int,
    Num,
    Obj,
    Str,
    Template,
    ValueExpression,
    pointer,
)
from engine.nodes.base import NodeStrategy
from engine.nodes.pure import CASE_ID, RESERVED_HANDLES

SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
THIRTY_DAYS = 30 * 86400


class GraphBody(Field):
    """An iteration body: `{nodes, edges}`, analysed as a graph of its own by validation."""

    def check(self, value: Any, path: str, checker: Checker, in_params: bool) -> bool:
        if not isinstance(value, dict):
            return self.wrong_type(value, path, checker, "an object with nodes and edges")
        for key in value:
            if key not in ("nodes", "edges"):
                checker.add(pointer(path, key), "unknown_field", f'unknown field "{key[:100]}"')
        return True

    def schema(self) -> dict[str, Any]:
        return {"type": "object", "properties": {"nodes": {"type": "array",
                                                           "items": {"$ref": "#/$defs/node"}},
                                                 "edges": {"type": "array",
                                                           "items": {"$ref": "#/$defs/edge"}}},
                "required": ["nodes", "edges"], "additionalProperties": False}

    def compile(self, value: Any, compiler: Any) -> Any:
        return compiler.body(value)

    def encode(self, compiled: Any) -> Any:
        return compiled.to_data()

    def decode(self, data: Any) -> Any:
        from engine.plan import GraphPlan

        return GraphPlan.from_data(data)


class FlowVersion(Field):
    """`"published"` or a version number."""

    def check(self, value: Any, path: str, checker: Checker, in_params: bool) -> bool:
        if value == "published":
            return True
        if isinstance(value, str):
            checker.add(path, "invalid_param", 'use "published" or a version number')
            return False
        return Int(1).check(value, path, checker, in_params)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [{"const": "published"}, {"type": "integer", "minimum": 1}]}


class CodeSpec(NodeStrategy):
    side_effects = True
    type_name = "code"
    summary = "Runs a Python function main(**inputs), isolated from the server."
    fixed_outputs = None
    params_spec = Obj(fields={"code": Str(max_length=256 * 1024),
                              "language": Str(enum=("python",))}, required=("code",))

    def check(self, node: dict[str, Any], path: str, checker: Checker) -> None:
        source = node["params"].get("code")
        if not isinstance(source, str):
            return
        try:
            # Parsing only: nothing the user wrote is executed in the server.
            tree = ast.parse(source)
        except (SyntaxError, ValueError) as error:
            line = getattr(error, "lineno", None)
            where = f" (line {line})" if line else ""
            checker.add(f"{path}/params/code", "invalid_param",
                        f"the code does not parse{where}: {getattr(error, 'msg', error)}")
            return
        if not any(isinstance(item, ast.FunctionDef) and item.name == "main"
                   for item in tree.body):
            checker.add(f"{path}/params/code", "invalid_param",
                        "the code must define a function main(**inputs) (with def, not async def)")


class HttpSpec(NodeStrategy):
    side_effects = True
    type_name = "http"
    summary = "Sends an HTTP request; outputs status, headers and body."
    fixed_outputs = {"status": {"type": "integer"}, "headers": {"type": "object"},
                     "body": {"type": "any"}}
    params_spec = Obj(fields={
        "method": Str(enum=HTTP_METHODS),
        "url": Template(),
        "headers": Obj(values=Template()),
        "query": Obj(values=Template()),
        "body": ValueExpression(),
        "timeout_s": Num(0, 3600, exclusive_minimum=True),
        "expect": Str(enum=("json", "text", "auto")),
        "fail_on_status": Bool(),
    }, required=("url",))


class LlmSpec(NodeStrategy):
    side_effects = True
    type_name = "llm"
    summary = "Asks a language model; its text streams as it arrives."
    fixed_outputs = {"text": {"type": "string"}, "usage": {"type": "object"}}
    params_spec = Obj(fields={
        "provider": Str(min_length=1, max_length=100),
        "model": Str(min_length=1, max_length=200),
        "system": Template(),
        "prompt": Template(),
        "temperature": Num(0, 2),
        "max_tokens": Int(1, 1_000_000),
        # Normally `{{secrets.NAME}}`: replaces the provider's configured key for this node.
        "api_key": Template(),
    }, required=("provider", "prompt"))


OPTION = Obj(fields={"id": CASE_ID, "label": Str(max_length=200)}, required=("id",))


class QuestionSpec(NodeStrategy):
    side_effects = True
    type_name = "question"
    summary = "Pauses its branch until a person answers."
    allows_timeout = False
    fixed_outputs = {"answer": {"type": "string"}, "option": {"type": "string"}}
    params_spec = Obj(fields={
        "question": Template(),
        "options": Arr(OPTION),
        "timeout_s": Num(0, THIRTY_DAYS, exclusive_minimum=True),
    }, required=("question",))

    def check(self, node: dict[str, Any], path: str, checker: Checker) -> None:
        options = node["params"].get("options")
        seen: set[str] = set()
        for index, option in enumerate(options if isinstance(options, list) else []):
            option_id = option.get("id") if isinstance(option, dict) else None
            if isinstance(option_id, str):
                if option_id in seen:
                    checker.add(f"{path}/params/options/{index}/id", "invalid_param",
                                f'option id "{option_id}" is used twice')
                seen.add(option_id)

    def handles(self, node: dict[str, Any]) -> tuple[str, ...] | None:
        params = node.get("params") if isinstance(node.get("params"), dict) else {}
        options = params.get("options")
        ids = tuple(o["id"] for o in options if isinstance(o, dict) and isinstance(o.get("id"), str)
                    and o["id"] not in RESERVED_HANDLES) if isinstance(options, list) else ()
        timeout = ("timeout",) if "timeout_s" in params else ()
        if not ids and not timeout and not options:
            return None
        return ids + timeout

    def chosen_handle(self, outputs: dict[str, Any]) -> str | None:
        return outputs.get("option")


class IterationSpec(NodeStrategy):
    type_name = "iteration"
    summary = "Runs a nested graph once per item of a list."
    allows_timeout = False
    holds_slot = False
    has_body = True
    fixed_outputs = {"results": {"type": "array"}}
    params_spec = Obj(fields={
        "items": ValueExpression(),
        "concurrency": Int(1, 32),
        "on_item_error": Str(enum=("fail", "skip", "null")),
        "body": GraphBody(),
    }, required=("items", "body"))


class SubflowSpec(NodeStrategy):
    side_effects = True
    type_name = "subflow"
    summary = "Runs another flow of yours as a child run."
    allows_timeout = False
    holds_slot = False
    fixed_outputs = {"outputs": {"type": "object"}}
    params_spec = Obj(fields={
        "flow": Str(pattern=SLUG_PATTERN, pattern_code="invalid_param"),
        "version": FlowVersion(),
    }, required=("flow",))

