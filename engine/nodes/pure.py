"""The node types that do no I/O: start, end, template, if_else, aggregate (docs/dsl.md §5.1–5.5)."""

from __future__ import annotations

import re
from typing import Any

from engine.dsl.spec import (
    ID_PATTERN,
    AnyJson,
    Arr,
    Bool,
    Checker,
    Obj,
    Str,
    Template,
    TypeSpec,
    ValueExpression,
    pointer,
)
from engine.nodes.base import NodeCall, NodeStrategy
from engine.nodes.operators import OPERATORS, UNARY
from engine.values import type_problem

RESERVED_HANDLES = frozenset({"else", "error", "timeout"})


class StartNode(NodeStrategy):
    type_name = "start"
    summary = "Where a run begins: declares the run's inputs."
    pure = True
    params_spec = Obj(fields={"inputs": Obj(
        values=TypeSpec(extra={"required": Bool(), "default": AnyJson()}),
        key_pattern=ID_PATTERN,
    )})

    def check(self, node: dict[str, Any], path: str, checker: Checker) -> None:
        declared = (node.get("params") or {}).get("inputs")
        if not isinstance(declared, dict):
            return
        for name, spec in declared.items():
            if isinstance(spec, dict) and "default" in spec and isinstance(spec.get("type"), str):
                problem = type_problem(spec["default"], spec, "the default")
                if problem:
                    checker.add(pointer(f"{path}/params/inputs", name) + "/default",
                                "wrong_type", problem)

    def declared_outputs(self, node: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
        params = node.get("params")
        declared = params.get("inputs") if isinstance(params, dict) else None
        if not isinstance(declared, dict):
            return {}
        return {name: spec for name, spec in declared.items() if isinstance(spec, dict)}

    def run(self, call: NodeCall) -> dict[str, Any]:
        return dict(call.inputs)


class EndNode(NodeStrategy):
    type_name = "end"
    summary = "Where a run ends: its inputs are the run's outputs, with an optional answer text."
    pure = True
    params_spec = Obj(fields={"answer": Template()})

    def run(self, call: NodeCall) -> dict[str, Any]:
        answer = call.params.get("answer")
        if answer is not None:
            text = call.resolve(answer)
            # Redacted whole before it is cut into pieces: a secret must not be split where
            # each piece alone looks harmless.
            redactor = call.services.redactor
            for piece in split_for_streaming(redactor.text(text) if redactor else text):
                call.chunk(piece)
        return dict(call.inputs)


class TemplateNode(NodeStrategy):
    type_name = "template"
    summary = "Renders text from references."
    pure = True
    params_spec = Obj(fields={"template": Template()}, required=("template",))
    fixed_outputs = {"text": {"type": "string"}}

    def run(self, call: NodeCall) -> dict[str, Any]:
        return {"text": call.resolve(call.params["template"])}


CASE_ID = Str(pattern=ID_PATTERN, pattern_code="invalid_param",
              forbidden=RESERVED_HANDLES, forbidden_code="invalid_param")


class IfElseNode(NodeStrategy):
    type_name = "if_else"
    summary = "Chooses a branch: the first case whose conditions hold, else `else`."
    pure = True
    fixed_outputs = {"branch": {"type": "string"}}
    params_spec = Obj(fields={"cases": Arr(Obj(
        fields={
            "id": CASE_ID,
            "match": Str(enum=("all", "any")),
            "conditions": Arr(Obj(
                fields={"left": ValueExpression(), "op": Str(enum=tuple(OPERATORS)),
                        "right": ValueExpression()},
                required=("left", "op"),
            )),
        },
        required=("id",),
    ))}, required=("cases",))

    def check(self, node: dict[str, Any], path: str, checker: Checker) -> None:
        cases = (node.get("params") or {}).get("cases")
        if not isinstance(cases, list):
            return
        seen: set[str] = set()
        for index, case in enumerate(cases):
            if not isinstance(case, dict):
                continue
            case_path = f"{path}/params/cases/{index}"
            case_id = case.get("id")
            if isinstance(case_id, str):
                if case_id in seen:
                    checker.add(f"{case_path}/id", "invalid_param",
                                f'case id "{case_id}" is used twice')
                seen.add(case_id)
            conditions = case.get("conditions")
            for number, condition in enumerate(conditions if isinstance(conditions, list) else []):
                if not isinstance(condition, dict):
                    continue
                where = f"{case_path}/conditions/{number}"
                op = condition.get("op")
                if op in UNARY and "right" in condition:
                    checker.add(f"{where}/right", "invalid_param", f"'{op}' takes no right side")
                elif op in OPERATORS and op not in UNARY and "right" not in condition:
                    checker.add(f"{where}/right", "missing_field", f"'{op}' needs a right side")

    def handles(self, node: dict[str, Any]) -> tuple[str, ...] | None:
        cases = (node.get("params") or {}).get("cases")
        ids = [c["id"] for c in cases if isinstance(c, dict) and isinstance(c.get("id"), str)] \
            if isinstance(cases, list) else []
        return (*ids, "else")

    def chosen_handle(self, outputs: dict[str, Any]) -> str | None:
        return outputs["branch"]

    def run(self, call: NodeCall) -> dict[str, Any]:
        for case in call.params["cases"]:
            conditions = case.get("conditions") or []
            results = (self._holds(condition, call) for condition in conditions)
            # An empty condition list holds whatever `match` says (docs/dsl.md §5.4).
            holds = not conditions or (
                any(results) if case.get("match", "all") == "any" else all(results))
            if holds:
                return {"branch": case["id"]}
        return {"branch": "else"}

    @staticmethod
    def _holds(condition: dict[str, Any], call: NodeCall) -> bool:
        left = call.resolve(condition["left"])
        right = call.resolve(condition["right"]) if "right" in condition else None
        return OPERATORS[condition["op"]](left, right)


class AggregateNode(NodeStrategy):
    type_name = "aggregate"
    summary = "The first source that is not null: merges exclusive branches."
    pure = True
    params_spec = Obj(fields={"sources": Arr(ValueExpression())}, required=("sources",))
    fixed_outputs = {"value": {"type": "any"}}

    def run(self, call: NodeCall) -> dict[str, Any]:
        for source in call.params["sources"]:
            value = call.resolve(source)
            if value is not None:
                return {"value": value}
        return {"value": None}


_PIECES = re.compile(r"\S+\s*|\s+")
MAX_PIECES = 2000


def split_for_streaming(text: str) -> list[str]:
    """Split text into word-sized pieces that join back into it exactly."""
    pieces = _PIECES.findall(text)
    if len(pieces) > MAX_PIECES:
        size = -(-len(pieces) // MAX_PIECES)
        pieces = ["".join(pieces[i:i + size]) for i in range(0, len(pieces), size)]
    return pieces

