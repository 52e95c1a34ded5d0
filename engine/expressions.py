"""Compiled value expressions and templates, and their resolution at run time (docs/dsl.md §3).

Expressions are parsed once at compile time into small immutable objects. Each resolves
against a `Scope` and serialises to plain JSON data (`to_data` / `expression_from_data`),
so a compiled plan can be cached without pickle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.errors import NodeError
from engine.references import Path
from engine.values import DEFAULT_VALUE_MAX_BYTES, render_text, too_large, type_name_of


class Scope:
    """What references can see while one node runs: results of its graph and the enclosing ones.

    `outputs` maps node id → outputs (None for a skipped node). A body scope of an iteration
    has a `parent` (the graph around the iteration node) and its own `item`/`index`.
    """

    __slots__ = ("index", "item", "max_bytes", "outputs", "parent", "secrets", "sys")

    def __init__(self, outputs: dict[str, Any], sys: dict[str, Any], parent: Scope | None = None,
                 item: Any = None, index: int | None = None,
                 max_bytes: int = DEFAULT_VALUE_MAX_BYTES,
                 secrets: Mapping[str, str] | None = None):
        self.outputs = outputs
        self.sys = sys
        # The owner's secrets the run references, by name (the top scope's; never recorded).
        self.secrets = parent.secrets if parent is not None else (secrets or {})
        self.parent = parent
        self.item = item
        self.index = index
        # The largest value a node may render or produce (docs/dsl.md §3 rule 7).
        self.max_bytes = parent.max_bytes if parent is not None else max_bytes


class Expression:
    __slots__ = ()

    def resolve(self, scope: Scope, inputs: dict[str, Any] | None = None) -> Any:
        raise NotImplementedError

    def to_data(self) -> list[Any]:
        raise NotImplementedError

    @property
    def is_literal(self) -> bool:
        return False


@dataclass(frozen=True, slots=True, eq=False)
class Literal(Expression):
    value: Any

    def resolve(self, scope: Scope, inputs: dict[str, Any] | None = None) -> Any:
        return self.value

    def to_data(self) -> list[Any]:
        return ["lit", self.value]

    @property
    def is_literal(self) -> bool:
        return True


@dataclass(frozen=True, slots=True, eq=False)
class Reference(Expression):
    """A resolved name: `kind` is node, input, sys, item or index; `depth` counts scopes up."""

    kind: str
    head: str
    path: Path
    depth: int = 0

    def resolve(self, scope: Scope, inputs: dict[str, Any] | None = None) -> Any:
        kind = self.kind
        if kind == "node":
            for _ in range(self.depth):
                scope = scope.parent  # type: ignore[assignment]
            value: Any = scope.outputs.get(self.head)
            path = self.path
            if len(path) == 1 and value.__class__ is dict:  # the common `{{node.output}}`
                return value.get(path[0])
        elif kind == "input":
            value = (inputs or {}).get(self.head)
        elif kind == "item":
            value = scope.item
        elif kind == "index":
            value = scope.index
        elif kind == "secret":
            name = self.path[0]
            value = scope.secrets.get(name)  # type: ignore[call-overload]
            if value is None:
                raise NodeError("missing_secret", f'the secret "{name}" does not exist (any more)',
                                details={"secret": name})
            return value
        else:
            while scope.parent is not None:
                scope = scope.parent
            value = scope.sys
        return walk(value, self.path, self)

    def to_data(self) -> list[Any]:
        return ["ref", self.kind, self.head, list(self.path), self.depth]

    def __str__(self) -> str:
        text = self.head
        for step in self.path:
            text += f"[{step}]" if isinstance(step, int) else f".{step}"
        return "{{" + text + "}}"


@dataclass(frozen=True, slots=True, eq=False)
class Text(Expression):
    """Text with references: always renders to a string."""

    parts: tuple[str | Reference, ...]

    def resolve(self, scope: Scope, inputs: dict[str, Any] | None = None) -> str:
        pieces = []
        size, limit = 0, scope.max_bytes
        for part in self.parts:
            if part.__class__ is str:
                piece = part
            else:
                value = part.resolve(scope, inputs)
                piece = value if value.__class__ is str else render_text(value)
            # Checked while rendering: an expansion stops at the limit instead of being built.
            size += len(piece)
            if size > limit:
                raise too_large(limit, "the rendered text")
            pieces.append(piece)
        return "".join(pieces)

    def to_data(self) -> list[Any]:
        return ["text", [p if isinstance(p, str) else p.to_data() for p in self.parts]]


@dataclass(frozen=True, slots=True, eq=False)
class ObjectOf(Expression):
    items: tuple[tuple[str, Expression], ...]

    def resolve(self, scope: Scope, inputs: dict[str, Any] | None = None) -> dict[str, Any]:
        return {key: expr.resolve(scope, inputs) for key, expr in self.items}

    def to_data(self) -> list[Any]:
        return ["obj", [[key, expr.to_data()] for key, expr in self.items]]


@dataclass(frozen=True, slots=True, eq=False)
class ArrayOf(Expression):
    items: tuple[Expression, ...]

    def resolve(self, scope: Scope, inputs: dict[str, Any] | None = None) -> list[Any]:
        return [expr.resolve(scope, inputs) for expr in self.items]

    def to_data(self) -> list[Any]:
        return ["arr", [expr.to_data() for expr in self.items]]


def walk(value: Any, path: Path, reference: Any) -> Any:
    """Follow a path: missing keys, indexes out of range and null give null (docs/dsl.md §3, references)."""
    for step in path:
        if value is None:
            return None
        if isinstance(value, dict):
            value = value.get(str(step))
        elif isinstance(value, list):
            if isinstance(step, int):
                value = value[step] if step < len(value) else None
            else:
                return None
        else:
            raise NodeError(
                "bad_path",
                f"{reference}: cannot take '{step}' from a {type_name_of(value)}",
                details={"reference": str(reference), "step": step},
            )
    return value


def expression_from_data(data: list[Any]) -> Expression:
    tag = data[0]
    if tag == "lit":
        return Literal(data[1])
    if tag == "ref":
        return Reference(data[1], data[2], tuple(data[3]), data[4])
    if tag == "text":
        return Text(tuple(p if isinstance(p, str) else expression_from_data(p) for p in data[1]))
    if tag == "obj":
        return ObjectOf(tuple((key, expression_from_data(expr)) for key, expr in data[1]))
    if tag == "arr":
        return ArrayOf(tuple(expression_from_data(expr) for expr in data[1]))
    raise ValueError(f"unknown expression tag {tag!r}")

