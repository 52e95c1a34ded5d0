"""Small builders and helpers for the engine's run-semantics tests (docs/dsl.md §3-§6).

Flows are built as plain DSL documents (dicts), exactly what a client would send, and run
through `engine.testing.run_document`, so the tests exercise the public API only.
"""

from __future__ import annotations

import asyncio
import itertools

from engine import Run, compile_plan
from engine.testing import CollectingSink, run_document, with_loop_clock

ENVELOPE_KEYS = {"seq", "type", "ts", "run", "scope", "item", "data"}
_MISSING = object()


# --- documents -------------------------------------------------------------------------


def flow(nodes, edges, *, name="Test flow", **settings):
    """A whole `astron/v1` document; keyword arguments become `settings`."""
    doc = {"dsl": "astron/v1", "name": name, "nodes": list(nodes), "edges": list(edges)}
    if settings:
        doc["settings"] = settings
    return doc


def node(id, type, **kw):
    """Any node: `node("t", "template", params={...}, inputs={...}, on_error=...)`."""
    return {"id": id, "type": type, **kw}


def start(inputs=None, id="start"):
    """A start node; `inputs` maps name -> declaration, or name -> type name as a shortcut."""
    declared = {}
    for name, spec in (inputs or {}).items():
        declared[name] = {"type": spec} if isinstance(spec, str) else spec
    return node(id, "start", params={"inputs": declared})


def end(inputs=None, answer=None, id="end"):
    extra = {"params": {"answer": answer}} if answer is not None else {}
    return node(id, "end", inputs=dict(inputs or {}), **extra)


def template(id, text, inputs=None, **kw):
    if inputs is not None:
        kw["inputs"] = inputs
    return node(id, "template", params={"template": text}, **kw)


def wait(id, seconds, **kw):
    return node(id, "wait", params={"seconds": seconds}, **kw)


def aggregate(id, sources, **kw):
    return node(id, "aggregate", params={"sources": list(sources)}, **kw)


def cond(left, op, right=_MISSING):
    condition = {"left": left, "op": op}
    if right is not _MISSING:
        condition["right"] = right
    return condition


def case(id, *conditions, match=None):
    c = {"id": id, "conditions": list(conditions)}
    if match is not None:
        c["match"] = match
    return c


def if_else(id, *cases, **kw):
    return node(id, "if_else", params={"cases": list(cases)}, **kw)


def edge(src, dst, branch=None):
    e = {"from": src, "to": dst}
    if branch is not None:
        e["branch"] = branch
    return e


def chain(*ids):
    """Plain edges a -> b -> c ..."""
    return [edge(a, b) for a, b in itertools.pairwise(ids)]


def linear(*middle, inputs=None, outputs=None, answer=None, **settings):
    """start -> middle nodes in order -> end."""
    nodes = [start(inputs), *middle, end(outputs, answer=answer)]
    return flow(nodes, chain("start", *(n["id"] for n in middle), "end"), **settings)


# --- running ---------------------------------------------------------------------------


async def run(doc, inputs=None, **kw):
    """Compile and run `doc`; returns (RunResult, events)."""
    return await run_document(doc, inputs if inputs is not None else {}, **kw)


def launch(doc, inputs=None, **kw):
    """Start a run as a task we control; returns (run, sink, task)."""
    sink = CollectingSink()
    kw["services"] = with_loop_clock(kw.get("services"))
    the_run = Run(compile_plan(doc), inputs if inputs is not None else {}, sink=sink, **kw)
    task = asyncio.ensure_future(the_run.execute())
    return the_run, sink, task


async def until(predicate, timeout=3.0, every=0.005):
    """Poll until predicate() is true; fail the test if it never becomes true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(every)


async def until_event(sink, type_, node=None, timeout=3.0):
    await until(lambda: events_of(sink.events, type_, node), timeout)


def load_sample(name):
    """A sample flow of the project's samples/ folder (a copy of shared/flows), parsed."""
    from .flowfactory import load_flow

    return load_flow(name if name.endswith(".json") else f"{name}.json")


# --- events ----------------------------------------------------------------------------


def events_of(events, type_, node=None):
    return [
        e for e in events if e["type"] == type_ and (node is None or e["data"].get("node") == node)
    ]


def position(events, type_, node=None):
    """Index in `events` of the first event of that type (for that node)."""
    for i, e in enumerate(events):
        if e["type"] == type_ and (node is None or e["data"].get("node") == node):
            return i
    raise AssertionError(f"no {type_} event for {node!r}")


def positions(events, type_, node=None):
    return [
        i
        for i, e in enumerate(events)
        if e["type"] == type_ and (node is None or e["data"].get("node") == node)
    ]


def finished(events, node):
    """The node.finished event of `node` (exactly one)."""
    found = events_of(events, "node.finished", node)
    assert len(found) == 1, f"{node}: {len(found)} node.finished events"
    return found[0]


def unended(events):
    """Node executions that started and never ended, as (scope, item, node).

    An execution runs from its first `node.started`, through its retries, to one
    `node.finished` (docs/dsl.md §6); pass a run's whole history, every segment of it.
    """
    running = set()
    for e in events:
        key = (e["scope"], e["item"], e["data"].get("node"))
        if e["type"] == "node.started":
            running.add(key)
        elif e["type"] == "node.finished":
            assert key in running, f"{key} finished without having started"
            running.discard(key)
    return sorted(running, key=repr)


def max_overlap(events, nodes):
    """Most of `nodes` running at once, judged by the order of started/finished events."""
    running = best = 0
    for e in events:
        if e["data"].get("node") not in nodes:
            continue
        if e["type"] == "node.started":
            running += 1
            best = max(best, running)
        elif e["type"] == "node.finished":
            running -= 1
    return best


# --- iteration, question, subflow nodes --------------------------------------------------


def body(nodes, edges):
    """An iteration body graph `{nodes, edges}`."""
    return {"nodes": list(nodes), "edges": list(edges)}


def iteration(id, items, graph, **params):
    """An iteration node over `items` (a value expression) running `graph` (see `body`)."""
    return node(id, "iteration", params={"items": items, "body": graph, **params})


def question(id, text, options=None, timeout_s=None, **kw):
    """A question node; `options` is a list of ids (labels are the ids title-cased)."""
    params = {"question": text}
    if options is not None:
        params["options"] = [{"id": o, "label": o.title()} for o in options]
    if timeout_s is not None:
        params["timeout_s"] = timeout_s
    return node(id, "question", params=params, **kw)


def subflow(id, slug, inputs=None, version=None, **kw):
    params = {"flow": slug}
    if version is not None:
        params["version"] = version
    return node(id, "subflow", params=params, inputs=dict(inputs or {}), **kw)


def now():
    """The running loop's time: virtual (exact, no waiting) in `virtual_time` tests."""
    return asyncio.get_running_loop().time()
