"""Compilation: a validated document becomes an immutable `Plan` (linear in the graph's size)."""

from __future__ import annotations

import hashlib
from typing import Any

from engine.dsl.scope import GraphScope
from engine.dsl.validate import GraphInfo, analyse_document, secret_names
from engine.errors import DocumentInvalid
from engine.expressions import ArrayOf, Expression, Literal, ObjectOf, Reference, Text
from engine.nodes.base import Registry
from engine.plan import GraphPlan, Plan, PlanEdge, PlanNode, RetryPolicy, Settings
from engine.references import ParsedReference, parse_template
from engine.values import canonical_json


def document_digest(document: dict[str, Any]) -> str:
    """The identity of a document: SHA-256 of its canonical JSON."""
    return "sha256:" + hashlib.sha256(canonical_json(document).encode()).hexdigest()


def compile_plan(document: Any, registry: Registry | None = None) -> Plan:
    """Validate and compile a document; raise DocumentInvalid with every problem."""
    analysis = analyse_document(document, registry)
    if analysis.problems:
        raise DocumentInvalid(analysis.problems)
    assert analysis.graph is not None
    settings = document.get("settings", {})
    start = analysis.graph.nodes[analysis.graph.start]  # type: ignore[index]
    return Plan(
        digest=document_digest(document),
        name=document["name"],
        settings=Settings(**settings),
        graph=_compile_graph(analysis.graph),
        input_specs=dict((start.raw.get("params") or {}).get("inputs") or {}),
        secret_names=secret_names(analysis.graph),
    )


def _compile_graph(graph: GraphInfo) -> GraphPlan:
    incoming: list[list[int]] = [[] for _ in graph.nodes]
    outgoing: list[list[int]] = [[] for _ in graph.nodes]
    edges = []
    for number, (source, target, branch, _position) in enumerate(graph.edges):
        edges.append(PlanEdge(source, target, branch))
        outgoing[source].append(number)
        incoming[target].append(number)
    nodes = []
    for info in graph.nodes:
        raw = info.raw
        strategy = info.strategy
        assert strategy is not None and info.id is not None
        compiler = ExpressionCompiler(graph.scope, info.index,
                                      frozenset(raw.get("inputs") or {}), info)
        params = raw.get("params")
        compiled_params = strategy.params_spec.compile(params, compiler) \
            if isinstance(params, dict) else {}
        nodes.append(PlanNode(
            id=info.id,
            type=strategy.type_name,
            index=info.index,
            inputs=tuple((name, compiler.expression(value))
                         for name, value in (raw.get("inputs") or {}).items()),
            params=compiled_params,
            outputs=_own_outputs(info.outputs, raw.get("on_error")),
            retry=RetryPolicy(**raw.get("retry", {})),
            timeout_s=raw.get("timeout_s"),
            on_error=raw.get("on_error", "fail"),
            default=raw.get("default"),
            branching=info.handles is not None,
            incoming=tuple(incoming[info.index]),
            outgoing=tuple(outgoing[info.index]),
        ))
    assert graph.order is not None and graph.start is not None and graph.end is not None
    return GraphPlan(tuple(nodes), tuple(edges), tuple(graph.order), graph.start, graph.end,
                     {node.id: node.index for node in nodes})


class ExpressionCompiler:
    """Parses the templates and value expressions of one node, naming what each reference means."""

    def __init__(self, scope: GraphScope, node: int, input_names: frozenset[str], info: Any):
        self.scope = scope
        self.node = node
        self.input_names = input_names
        self.info = info

    def expression(self, value: Any) -> Expression:
        if isinstance(value, str):
            if "{{" not in value:
                return Literal(value)
            parts = parse_template(value)
            if len(parts) == 1 and isinstance(parts[0], ParsedReference):
                return self._reference(parts[0], template=False)
            return self._text(parts, template=False)
        if isinstance(value, dict):
            items = tuple((key, self.expression(item)) for key, item in value.items())
            if all(expr.is_literal for _key, expr in items):
                # Rebuilt from the parts: a literal `{{'{{'}}` inside has become `{{`.
                return Literal({key: expr.value for key, expr in items})  # type: ignore[attr-defined]
            return ObjectOf(items)
        if isinstance(value, list):
            elements = tuple(self.expression(item) for item in value)
            if all(expr.is_literal for expr in elements):
                return Literal([expr.value for expr in elements])  # type: ignore[attr-defined]
            return ArrayOf(elements)
        return Literal(value)

    def template(self, text: str) -> Expression:
        if "{{" not in text:
            return Literal(text)
        return self._text(parse_template(text), template=True)

    def body(self, value: dict[str, Any]) -> GraphPlan:
        assert self.info.body is not None
        return _compile_graph(self.info.body)

    def _text(self, parts: list[str | ParsedReference], template: bool) -> Expression:
        compiled = tuple(part if isinstance(part, str) else self._reference(part, template)
                         for part in parts)
        if all(isinstance(part, str) for part in compiled):
            return Literal("".join(compiled))  # type: ignore[arg-type]
        return Text(compiled)

    def _reference(self, ref: ParsedReference, template: bool) -> Reference:
        kind, depth = self.scope.classify(ref, self.node, self.input_names, template)
        return Reference(kind, ref.head, ref.path, depth)


def _own_outputs(declared: dict[str, Any] | None, on_error: Any) -> dict[str, Any] | None:
    """The outputs a node itself must produce: the implicit `error` output is the engine's."""
    if declared is not None and on_error == "branch":
        return {name: spec for name, spec in declared.items() if name != "error"}
    return declared
