"""Static validation of `astron/v1` documents (docs/dsl.md §1–§5, codes of §7).

Every problem is reported at once, with a JSON Pointer path, and checking goes on after a
problem wherever the rest can still be checked. The analysis also keeps what compilation
needs (ids, edges, orders, scopes), so a valid document is never analysed twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.dsl.limits import MAX_NODES, size_problem
from engine.dsl.scope import SECRETS, GraphScope, ReferenceProblem
from engine.dsl.spec import (
    ID_PATTERN,
    RESERVED_IDS,
    Bool,
    Checker,
    Int,
    Num,
    Obj,
    ReferenceSite,
    Str,
    TypeSpec,
    ValueExpression,
    pointer,
)
from engine.errors import Problem
from engine.graph import ancestor_sets, cycles, reachable, topological_order
from engine.nodes.base import NodeStrategy, Registry
from engine.values import type_problem

DSL_VERSION = "astron/v1"
DOCUMENT_KEYS = ("dsl", "name", "description", "settings", "nodes", "edges")
NODE_KEYS = ("id", "type", "title", "inputs", "params", "outputs", "retry", "timeout_s",
             "on_error", "default", "ui")
EDGE_KEYS = ("from", "to", "branch")
ON_ERROR = ("fail", "default", "branch")

NAME = Str(min_length=1, max_length=200)
DESCRIPTION = Str(max_length=10_000)
SETTINGS = Obj(fields={
    "timeout_s": Num(1, 86400),
    "max_steps": Int(1, 1_000_000),
    "concurrency": Int(1, 1024),
})
RETRY = Obj(fields={
    "max_attempts": Int(1, 20),
    "backoff_ms": Num(0, 600_000),
    "multiplier": Num(1, 10),
    "max_backoff_ms": Num(0, 86_400_000),
    "jitter": Bool(),
})
NODE_ID = Str(pattern=ID_PATTERN, pattern_code="bad_id", forbidden=RESERVED_IDS,
              forbidden_code="bad_id")
TITLE = Str(max_length=200)
INPUTS = Obj(values=ValueExpression(), key_pattern=ID_PATTERN)
OUTPUTS = Obj(values=TypeSpec(), key_pattern=ID_PATTERN)
TIMEOUT = Num(0, 86400, exclusive_minimum=True)
# Where an editor draws the node (docs/dsl.md §2); the engine never reads it.
UI = Obj(fields={"x": Num(), "y": Num()}, required=("x", "y"))
ON_ERROR_FIELD = Str(enum=ON_ERROR)


@dataclass
class NodeInfo:
    """What validation learned about one node: enough for compilation to reuse."""

    index: int
    raw: dict[str, Any]
    # The id the node takes part in the graph under: the one it was given, even when that
    # breaks the id rule (bad_id is reported once; its edges and references still count).
    # None when it has no string id, or repeats an earlier node's id.
    id: str | None = None
    # The node whose place in the graph this node's references are checked from: itself, or
    # for a duplicate id the first node with that id; None when it has no id to be placed by.
    place: int | None = None
    strategy: NodeStrategy | None = None
    outputs: dict[str, Any] | None = None
    handles: tuple[str, ...] | None = None
    sites: list[ReferenceSite] = field(default_factory=list)
    body: GraphInfo | None = None

    @property
    def on_error(self) -> str:
        value = self.raw.get("on_error", "fail")
        return value if value in ON_ERROR else "fail"


@dataclass
class GraphInfo:
    path: str
    nodes: list[NodeInfo]
    # (source, target, branch, position in the document) of each well-formed edge
    edges: list[tuple[int, int, str | None, int]]
    scope: GraphScope
    order: list[int] | None = None
    start: int | None = None
    end: int | None = None


@dataclass
class Analysis:
    problems: list[Problem]
    graph: GraphInfo | None = None
    document: dict[str, Any] | None = None


def validate_document(document: Any, registry: Registry | None = None, *,
                      slug: str | None = None,
                      reachable_flows: Callable[[str], set[str]] | None = None) -> list[Problem]:
    """Every problem of a document; an empty list means it is valid.

    With `slug` (the flow's own), a subflow node that names it is `self_reference`; with
    `reachable_flows` (slug → every slug its flow reaches through subflows), so is one whose
    flow leads back to it.
    """
    analysis = analyse_document(document, registry)
    if slug is not None and analysis.graph is not None:
        _check_self_reference(analysis.graph, slug, reachable_flows, analysis.problems)
    return analysis.problems


def _check_self_reference(graph: GraphInfo, slug: str,
                          reachable_flows: Callable[[str], set[str]] | None,
                          problems: list[Problem]) -> None:
    stack = [graph]
    while stack:
        current = stack.pop()
        for info in current.nodes:
            if info.body is not None:
                stack.append(info.body)
            params = info.raw.get("params")
            if info.strategy is None or info.strategy.type_name != "subflow" or \
                    not isinstance(params, dict) or not isinstance(params.get("flow"), str):
                continue
            target = params["flow"]
            if target == slug or (reachable_flows is not None and slug in reachable_flows(target)):
                problems.append(Problem(
                    f"{current.path}/nodes/{info.index}/params/flow", "self_reference",
                    f'the subflow "{target}" leads back to this flow "{slug}"'))


def analyse_document(document: Any, registry: Registry | None = None) -> Analysis:
    if registry is None:
        from engine.nodes import shared_default_registry as default_registry

        registry = default_registry()
    checker = Checker()
    limit = size_problem(document)
    if limit is not None:
        checker.add("", *limit)
        return Analysis(checker.problems)
    if not isinstance(document, dict):
        checker.add("", "wrong_type", "a flow document must be a JSON object")
        return Analysis(checker.problems)
    if "dsl" not in document:
        checker.add("/dsl", "missing_field", f'"dsl" is required and must be "{DSL_VERSION}"')
    elif document["dsl"] != DSL_VERSION:
        checker.add("/dsl", "unsupported_dsl",
                    f'"{str(document["dsl"])[:100]}" is not supported; use "{DSL_VERSION}"')
        return Analysis(checker.problems)
    for key in document:
        if key not in DOCUMENT_KEYS:
            checker.add(pointer("", key), "unknown_field", f'unknown field "{key[:100]}"')
    _check_key(document, "name", NAME, "", checker, required=True)
    _check_key(document, "description", DESCRIPTION, "", checker)
    _check_key(document, "settings", SETTINGS, "", checker)
    nodes, edges = _graph_lists(document, "", checker)
    if _count_nodes(nodes) > MAX_NODES:
        checker.add("/nodes", "too_large", f"a flow may have at most {MAX_NODES} nodes")
        return Analysis(checker.problems)
    graph = _analyse_graph(nodes, edges, "", None, None, registry, checker)
    return Analysis(checker.problems, graph, document)


def _count_nodes(nodes: list[Any]) -> int:
    count, stack = 0, [nodes]
    while stack:
        current = stack.pop()
        count += len(current)
        for node in current:
            body = node.get("params", {}).get("body") if isinstance(node, dict) and \
                isinstance(node.get("params"), dict) else None
            if isinstance(body, dict) and isinstance(body.get("nodes"), list):
                stack.append(body["nodes"])
    return count


def _check_key(container: dict[str, Any], key: str, spec: Any, path: str, checker: Checker,
               required: bool = False) -> None:
    if key in container:
        spec.check(container[key], pointer(path, key), checker, False)
    elif required:
        checker.add(pointer(path, key), "missing_field", f'"{key}" is required')


def _graph_lists(container: dict[str, Any], path: str,
                 checker: Checker) -> tuple[list[Any], list[Any]]:
    lists = []
    for key in ("nodes", "edges"):
        value = container.get(key)
        if key not in container:
            checker.add(pointer(path, key), "missing_field", f'"{key}" is required')
            value = []
        elif not isinstance(value, list):
            checker.add(pointer(path, key), "wrong_type", f'"{key}" must be an array')
            value = []
        lists.append(value)
    return lists[0], lists[1]


def _analyse_graph(nodes: list[Any], edges: list[Any], path: str, parent: GraphScope | None,
                   owner: int | None, registry: Registry, checker: Checker) -> GraphInfo:
    in_body = parent is not None
    infos = [_check_node(node, index, path, in_body, registry, checker)
             for index, node in enumerate(nodes)]
    ids: dict[str, int] = {}
    for info in infos:
        if info.id is None:
            continue
        if info.id in ids:
            checker.add(f"{path}/nodes/{info.index}/id", "duplicate_id",
                        f'id "{info.id[:100]}" is used by another node')
            # Edges naming the id go to the first node; the duplicate stays out of the graph
            # and its references are checked as if it stood there, so that only what would be
            # wrong anyway is reported beside duplicate_id.
            info.place = ids[info.id]
            info.id = None
        else:
            ids[info.id] = info.place = info.index
    scope = GraphScope(ids, [info.outputs for info in infos], parent=parent, owner=owner)
    graph = GraphInfo(path, infos, _check_edges(edges, path, ids, infos, checker), scope)
    _check_structure(graph, checker)
    _check_references(graph, checker)
    for info in infos:
        params = info.raw.get("params")
        body = params.get("body") if info.strategy and info.strategy.has_body and \
            isinstance(params, dict) else None
        if isinstance(body, dict):
            body_path = f"{path}/nodes/{info.index}/params/body"
            body_nodes, body_edges = _graph_lists(body, body_path, checker)
            info.body = _analyse_graph(body_nodes, body_edges, body_path, scope, info.place,
                                       registry, checker)
    return graph


def _check_node(node: Any, index: int, path: str, in_body: bool, registry: Registry,
                checker: Checker) -> NodeInfo:
    node_path = f"{path}/nodes/{index}"
    if not isinstance(node, dict):
        checker.add(node_path, "wrong_type", "a node must be an object")
        return NodeInfo(index, {})
    info = NodeInfo(index, node)
    for key in node:
        if key not in NODE_KEYS:
            checker.add(pointer(node_path, key), "unknown_field", f'unknown field "{key[:100]}"')
    if "id" not in node:
        checker.add(f"{node_path}/id", "missing_field", '"id" is required')
    else:
        NODE_ID.check(node["id"], f"{node_path}/id", checker, False)
        if isinstance(node["id"], str):
            info.id = node["id"]
    node_type = node.get("type")
    if "type" not in node:
        checker.add(f"{node_path}/type", "missing_field", '"type" is required')
    elif not isinstance(node_type, str):
        checker.add(f"{node_path}/type", "wrong_type", '"type" must be a string')
    else:
        info.strategy = registry.get(node_type)
        if info.strategy is None:
            checker.add(f"{node_path}/type", "unknown_type",
                        f'"{node_type[:100]}" is not a node type; use one of '
                        f'{", ".join(registry.names())}')
    _check_key(node, "title", TITLE, node_path, checker)
    _check_key(node, "retry", RETRY, node_path, checker)
    _check_key(node, "on_error", ON_ERROR_FIELD, node_path, checker)
    _check_key(node, "ui", UI, node_path, checker)
    strategy = info.strategy
    if in_body and node_type == "question":
        # Each item would ask again, and an answer could not say which item it is for.
        checker.add(f"{node_path}/type", "not_allowed",
                    "a question cannot be inside an iteration body")
    first_site = len(checker.sites)
    if node_type == "start" and "inputs" in node:
        checker.add(f"{node_path}/inputs", "not_allowed",
                    "the start node has no inputs; declare run inputs in params.inputs")
    else:
        _check_key(node, "inputs", INPUTS, node_path, checker)
        _check_reserved_input_names(node, node_path, checker)
    if strategy is None:
        if "timeout_s" in node:
            TIMEOUT.check(node["timeout_s"], f"{node_path}/timeout_s", checker, False)
        info.sites = checker.sites[first_site:]
        return info
    _check_params(node, node_path, strategy, in_body, checker)
    if "timeout_s" in node:
        if strategy.allows_timeout:
            TIMEOUT.check(node["timeout_s"], f"{node_path}/timeout_s", checker, False)
        else:
            checker.add(f"{node_path}/timeout_s", "not_allowed",
                        f"a {node_type} node has no timeout_s")
    _check_outputs(info, node_path, strategy, checker)
    info.handles = strategy.handles(node)
    _check_error_handling(info, node_path, checker)
    info.sites = checker.sites[first_site:]
    return info


def _check_reserved_input_names(node: dict[str, Any], path: str, checker: Checker) -> None:
    inputs = node.get("inputs")
    if isinstance(inputs, dict):
        for name in inputs:
            if name in RESERVED_IDS:
                checker.add(pointer(f"{path}/inputs", name), "bad_id",
                            f'"{name}" is reserved and cannot name an input')


def _check_params(node: dict[str, Any], path: str, strategy: NodeStrategy, in_body: bool,
                  checker: Checker) -> None:
    params_path = f"{path}/params"
    if strategy.type_name == "start" and in_body:
        if "params" in node:
            checker.add(params_path, "not_allowed",
                        "the start node of an iteration body takes no params")
        return
    if "params" not in node:
        if strategy.params_spec.required:
            checker.add(params_path, "missing_field", f'a {strategy.type_name} node needs params')
        return
    before = len(checker.problems)
    strategy.params_spec.check(node["params"], params_path, checker, True)
    if isinstance(node["params"], dict) and not any(
            p.code == "wrong_type" and p.path == params_path for p in checker.problems[before:]):
        strategy.check(node, path, checker)


def _check_outputs(info: NodeInfo, path: str, strategy: NodeStrategy, checker: Checker) -> None:
    node = info.raw
    if strategy.fixed_outputs is None:
        if "outputs" not in node:
            checker.add(f"{path}/outputs", "missing_field",
                        f"a {strategy.type_name} node must declare its outputs")
            info.outputs = None
            return
        before = len(checker.problems)
        OUTPUTS.check(node["outputs"], f"{path}/outputs", checker, False)
        info.outputs = dict(node["outputs"]) if len(checker.problems) == before else None
    else:
        if "outputs" in node:
            checker.add(f"{path}/outputs", "not_allowed",
                        f"a {strategy.type_name} node has fixed outputs; leave out \"outputs\"")
        info.outputs = strategy.declared_outputs(node)
    if info.on_error == "branch" and node.get("on_error") == "branch":
        if info.outputs is not None and "error" in info.outputs:
            checker.add(f"{path}/outputs/error", "invalid_param",
                        'with on_error "branch" the output "error" is implicit; rename yours')
        if info.outputs is not None:
            info.outputs = {**info.outputs, "error": {"type": "object"}}


def _check_error_handling(info: NodeInfo, path: str, checker: Checker) -> None:
    node = info.raw
    on_error = node.get("on_error", "fail")
    if on_error == "default" and info.handles is not None:
        checker.add(f"{path}/on_error", "not_allowed",
                    'a branch node chooses edges; use on_error "branch" or "fail"')
        return
    if on_error != "default":
        if "default" in node:
            checker.add(f"{path}/default", "not_allowed",
                        '"default" is only used with on_error "default"')
        return
    if "default" not in node:
        checker.add(f"{path}/default", "missing_default",
                    'on_error "default" needs a "default" object with every output')
        return
    default = node["default"]
    if not isinstance(default, dict):
        checker.add(f"{path}/default", "wrong_type", '"default" must be an object')
        return
    declared = info.outputs
    if declared is None:
        return
    for name, spec in declared.items():
        if name not in default:
            checker.add(f"{path}/default", "missing_default",
                        f'"default" lacks the output "{name}"')
        elif isinstance(spec, dict) and isinstance(spec.get("type"), str):
            problem = type_problem(default[name], spec, f'"{name}"')
            if problem:
                checker.add(pointer(f"{path}/default", name), "wrong_type", problem)
    for name in default:
        if name not in declared:
            checker.add(pointer(f"{path}/default", name), "unknown_field",
                        f'"{name[:100]}" is not an output of this node')


def _check_edges(edges: list[Any], path: str, ids: dict[str, int], infos: list[NodeInfo],
                 checker: Checker) -> list[tuple[int, int, str | None, int]]:
    found: list[tuple[int, int, str | None, int]] = []
    seen: set[tuple[str, str, str | None]] = set()
    error_edges: set[int] = set()
    for number, edge in enumerate(edges):
        edge_path = f"{path}/edges/{number}"
        if not isinstance(edge, dict):
            checker.add(edge_path, "wrong_type", "an edge must be an object")
            continue
        for key in edge:
            if key not in EDGE_KEYS:
                checker.add(pointer(edge_path, key), "unknown_field", f'unknown field "{key[:100]}"')
        ends: list[int | None] = []
        for key in ("from", "to"):
            value = edge.get(key)
            if key not in edge:
                checker.add(f"{edge_path}/{key}", "missing_field", f'"{key}" is required')
                ends.append(None)
            elif not isinstance(value, str):
                checker.add(f"{edge_path}/{key}", "wrong_type", f'"{key}" must be a node id')
                ends.append(None)
            elif value not in ids:
                checker.add(f"{edge_path}/{key}", "unknown_node", f'there is no node "{value[:100]}"')
                ends.append(None)
            else:
                ends.append(ids[value])
        branch = edge.get("branch")
        if "branch" in edge and not isinstance(branch, str):
            checker.add(f"{edge_path}/branch", "wrong_type", '"branch" must be a string')
            continue
        source, target = ends
        if source is None or target is None:
            continue
        key = (edge["from"], edge["to"], branch)
        if key in seen:
            checker.add(edge_path, "duplicate_edge", "the same edge is listed twice")
            continue
        seen.add(key)
        if _check_branch(infos[source], branch, edge_path, checker) and branch == "error":
            error_edges.add(source)
        found.append((source, target, branch, number))
    for info in infos:
        if info.raw.get("on_error") == "branch" and info.id is not None \
                and info.index not in error_edges:
            checker.add(f"{path}/nodes/{info.index}/on_error", "missing_branch",
                        'on_error "branch" needs at least one edge with "branch": "error"')
    return found


def _check_branch(source: NodeInfo, branch: str | None, edge_path: str,
                  checker: Checker) -> bool:
    has_error_branch = source.raw.get("on_error") == "branch"
    if source.strategy is None:
        return True
    handles = source.handles
    if handles is not None:
        if branch is None:
            checker.add(edge_path, "missing_branch",
                        f'an edge from "{_shown(source)}" must name one of its handles: '
                        f'{", ".join(handles)}')
            return False
        allowed = (*handles, "error") if has_error_branch else handles
        if branch not in allowed:
            checker.add(f"{edge_path}/branch", "unknown_branch",
                        f'"{branch[:100]}" is not a handle of "{_shown(source)}"; use one of '
                        f'{", ".join(allowed)}')
            return False
        return True
    if branch is None:
        return True
    if branch == "error" and has_error_branch:
        return True
    reason = 'only "error" with on_error "branch"' if branch == "error" else \
        'plain nodes have no handles but "error"'
    checker.add(f"{edge_path}/branch", "unknown_branch", f'"{branch[:100]}": {reason}')
    return False


def _check_structure(graph: GraphInfo, checker: Checker) -> None:
    path, infos = graph.path, graph.nodes
    count = len(infos)
    for kind, missing, extra in (("start", "missing_start", "extra_start"),
                                 ("end", "missing_end", "extra_end")):
        found = [i.index for i in infos if i.strategy and i.strategy.type_name == kind]
        if not found:
            checker.add(f"{path}/nodes", missing, f"the graph needs a {kind} node")
        elif len(found) > 1:
            names = ", ".join(f'"{_shown(infos[i])}"' for i in found)
            checker.add(f"{path}/nodes", extra, f"the graph has {len(found)} {kind} nodes: {names}")
        else:
            setattr(graph, kind, found[0])
    successors: list[list[int]] = [[] for _ in range(count)]
    predecessors: list[list[int]] = [[] for _ in range(count)]
    for source, target, _branch, _number in graph.edges:
        successors[source].append(target)
        predecessors[target].append(source)
    graph.order = topological_order(count, successors)
    if graph.order is None:
        for component in cycles(count, successors):
            members = set(component)
            first = min(n for s, t, _b, n in graph.edges if s in members and t in members)
            names = ", ".join(f'"{_shown(infos[i])}"' for i in component)
            checker.add(f"{path}/edges/{first}", "cycle", f"the graph has a cycle through {names}")
    else:
        graph.scope.ancestors = ancestor_sets(graph.order, predecessors)
    if graph.start is not None:
        seen = reachable(count, [graph.start], successors)
        for info in infos:
            if info.id is not None and not seen[info.index]:
                checker.add(f"{path}/nodes/{info.index}", "unreachable",
                            f'no path leads from the start node to "{_shown(info)}"')
    if graph.end is not None:
        seen = reachable(count, [graph.end], predecessors)
        for info in infos:
            if info.id is not None and not seen[info.index]:
                checker.add(f"{path}/nodes/{info.index}", "dead_end",
                            f'no path leads from "{_shown(info)}" to the end node')


def _shown(info: NodeInfo) -> str:
    """A node's id for a message: a bad id may be long."""
    return str(info.raw.get("id"))[:100]


def _check_references(graph: GraphInfo, checker: Checker) -> None:
    for info in graph.nodes:
        if not info.sites:
            continue
        inputs = info.raw.get("inputs")
        input_names = frozenset(inputs) if isinstance(inputs, dict) else frozenset()
        node_path = f"{graph.path}/nodes/{info.index}"
        for site in info.sites:
            for part in site.parts:
                if isinstance(part, str):
                    continue
                try:
                    kind, _depth = graph.scope.classify(part, info.place, input_names,
                                                        site.template)
                except ReferenceProblem as problem:
                    checker.add(site.path, problem.code, problem.message)
                    continue
                if kind == "secret" and not _secret_allowed(info, node_path, site.path):
                    checker.add(site.path, "secret_not_allowed",
                                f"{part}: secrets may be used only in the params of an http "
                                "node and in an llm node's params.api_key")


def _secret_allowed(info: NodeInfo, node_path: str, site_path: str) -> bool:
    """Where `{{secrets.NAME}}` may stand (docs/dsl.md §3): what is sent with a request, never
    what a node computes from or records as its own."""
    node_type = info.strategy.type_name if info.strategy is not None else None
    if node_type == "http":
        return site_path.startswith(f"{node_path}/params/")
    if node_type == "llm":
        return site_path == f"{node_path}/params/api_key"
    return False


def secret_names(graph: GraphInfo) -> tuple[str, ...]:
    """The secrets a valid document references, its iteration bodies included, sorted."""
    names: set[str] = set()
    stack = [graph]
    while stack:
        current = stack.pop()
        for info in current.nodes:
            if info.body is not None:
                stack.append(info.body)
            for site in info.sites:
                for part in site.parts:
                    if not isinstance(part, str) and part.head == SECRETS and part.path and \
                            not current.scope.visible_anywhere(SECRETS):
                        names.add(str(part.path[0]))
    return tuple(sorted(names))
