"""Tiny builders for astron/v1 documents and helpers to inspect validation problems."""

from __future__ import annotations

import json
from collections.abc import Iterable
from itertools import pairwise
from pathlib import Path

DSL = "astron/v1"


# --- documents -------------------------------------------------------------------------------


def flow(nodes: Iterable[dict], edges: Iterable[dict], **top) -> dict:
    """A document with the given nodes and edges; keyword args add or replace root keys."""
    doc = {"dsl": DSL, "name": "Test flow", "nodes": list(nodes), "edges": list(edges)}
    doc.update(top)
    return doc


def linear(*middle: dict, start_node: dict | None = None, end_node: dict | None = None, **top):
    """start -> middle[0] -> ... -> end, with the start declaring a string input `name`."""
    first = start_node if start_node is not None else start(name="string")
    last = end_node if end_node is not None else end()
    nodes = [first, *middle, last]
    return flow(nodes, chain(*(n["id"] for n in nodes)), **top)


def routed(route: dict, handles=("long", "else"), **top) -> dict:
    """start(name, n) -> route -> one template `to_<handle>` per handle -> end.
    Paths: route is /nodes/1, the targets follow; /edges/1.. are the route's edges."""
    targets = [template(f"to_{h}") for h in handles]
    nodes = [start(name="string", n="number"), route, *targets, end()]
    edges = [edge("start", route["id"])]
    edges += [edge(route["id"], t["id"], h) for t, h in zip(targets, handles, strict=True)]
    edges += [edge(t["id"], "end") for t in targets]
    return flow(nodes, edges, **top)


def error_branch_flow(risky: dict) -> dict:
    """start -> risky -> ok / (error) fix -> end. risky is /nodes/1; /edges/2 is the error edge."""
    rid = risky["id"]
    nodes = [
        start(name="string"),
        risky,
        template("ok"),
        template("fix", f"{{{{{rid}.error.message}}}}"),
        end(a="{{ok.text}}", b="{{fix.text}}"),
    ]
    edges = [edge("start", rid), edge(rid, "ok"), edge(rid, "fix", "error")]
    edges += [edge("ok", "end"), edge("fix", "end")]
    return flow(nodes, edges)


def simple_body() -> dict:
    nodes = [body_start(), template("inner", "{{item}}"), end(out="{{inner.text}}")]
    return body(nodes, chain("bstart", "inner", "end"))


def iteration_flow(graph: dict | None = None, node_kw: dict | None = None, **params) -> dict:
    """start(items: array) -> each (iteration over start.items) -> end. each is /nodes/1."""
    each = iteration("each", "{{start.items}}", graph or simple_body(), **params)
    each.update(node_kw or {})
    nodes = [start(items="array"), each, end(results="{{each.results}}")]
    return flow(nodes, chain("start", "each", "end"))


def body(nodes: Iterable[dict], edges: Iterable[dict]) -> dict:
    return {"nodes": list(nodes), "edges": list(edges)}


# --- nodes -----------------------------------------------------------------------------------


def node(id: str, type: str, **kw) -> dict:
    return {"id": id, "type": type, **kw}


def start(id: str = "start", **inputs) -> dict:
    """A start node; each keyword is an input: a type name or a full declaration dict."""
    decls = {k: ({"type": v} if isinstance(v, str) else v) for k, v in inputs.items()}
    return node(id, "start", params={"inputs": decls})


def body_start(id: str = "bstart") -> dict:
    return node(id, "start")


def end(id: str = "end", **inputs) -> dict:
    return node(id, "end", inputs=inputs) if inputs else node(id, "end")


def template(id: str, text: str = "x", **kw) -> dict:
    return node(id, "template", params={"template": text}, **kw)


def code(id: str, source: str | None = None, outputs: dict | None = None, **kw) -> dict:
    source = source if source is not None else "def main():\n    return {'n': 1}"
    outputs = outputs if outputs is not None else {"n": {"type": "integer"}}
    return node(id, "code", params={"code": source}, outputs=outputs, **kw)


def wait(id: str, seconds=0, **kw) -> dict:
    return node(id, "wait", params={"seconds": seconds}, **kw)


def cond(left, op: str = "eq", right=None) -> dict:
    return {"left": left, "op": op, "right": right}


def case(id: str, *conditions: dict, **kw) -> dict:
    return {"id": id, "conditions": list(conditions), **kw}


def if_else(id: str, *cases: dict, **kw) -> dict:
    return node(id, "if_else", params={"cases": list(cases)}, **kw)


def question(id: str, text: str = "Ok?", options=None, **kw) -> dict:
    params: dict = {"question": text}
    if options is not None:
        params["options"] = [{"id": o, "label": o.title()} for o in options]
    params.update(kw.pop("params", {}))
    return node(id, "question", params=params, **kw)


def iteration(id: str, items: str, graph: dict, **params) -> dict:
    return node(id, "iteration", params={"items": items, "body": graph, **params})


# --- edges -----------------------------------------------------------------------------------


def edge(src: str, dst: str, branch: str | None = None) -> dict:
    e = {"from": src, "to": dst}
    if branch is not None:
        e["branch"] = branch
    return e


def chain(*ids: str) -> list[dict]:
    return [edge(a, b) for a, b in pairwise(ids)]


# --- sample flows ----------------------------------------------------------------------------


SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def shared_flows_dir() -> Path:
    """The project's copy of the sample flows of shared/flows (kept identical by a test)."""
    return SAMPLES


def sample_flow_names() -> list[str]:
    return sorted(p.name for p in shared_flows_dir().glob("*.json"))


def load_flow(name: str) -> dict:
    return json.loads((shared_flows_dir() / name).read_text(encoding="utf-8"))


# --- problems --------------------------------------------------------------------------------


def codes_at(problems) -> set[tuple[str, str]]:
    return {(p.path, p.code) for p in problems}


def codes(problems) -> set[str]:
    return {p.code for p in problems}


def has(problems, code: str, *paths: str) -> bool:
    """True when some problem has `code` at one of `paths` (any path when none are given)."""
    return any(p.code == code and (not paths or p.path in paths) for p in problems)


def show(problems) -> list[tuple[str, str, str]]:
    """Readable form for assertion messages."""
    return [(p.path, p.code, p.message) for p in problems]


def check(doc: dict) -> set[tuple[str, str]]:
    """The (path, code) pairs of every problem of a document."""
    from engine import validate_document

    return codes_at(validate_document(doc))


def long_case(**kw):
    """An if_else case taken when the input n is over 3."""
    return case("long", cond("{{start.n}}", "gt", 3), **kw)
