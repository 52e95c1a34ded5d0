"""The run page's state machine (flows/static/flows/js/state.js), run in the browser on
synthetic events: what it makes of retries, streamed text, iterations, questions, branches
and replays."""

from __future__ import annotations

import pytest

from .browsing import ROOT, chromium_page, skip_unless_ready

skip_unless_ready()

pytestmark = pytest.mark.slow

STATIC = ROOT / "flows" / "static"
ORIGIN = "http://astron.test"

DOC = {
    "dsl": "astron/v1", "name": "Everything",
    "nodes": [
        {"id": "start", "type": "start", "params": {"inputs": {"words": {"type": "array"}}}},
        {"id": "write", "type": "llm", "params": {"provider": "echo", "model": "m",
                                                 "prompt": "hi"}},
        {"id": "fetch", "type": "code", "params": {"code": "..."},
         "outputs": {"body": {"type": "object"}}},
        {"id": "each", "type": "iteration", "params": {"items": "{{start.words}}", "body": {
            "nodes": [{"id": "first", "type": "start"},
                      {"id": "shout", "type": "code", "params": {"code": "..."},
                       "outputs": {"out": {"type": "string"}}},
                      {"id": "last", "type": "end", "inputs": {}}],
            "edges": [{"from": "first", "to": "shout"}, {"from": "shout", "to": "last"}]}}},
        {"id": "rows", "type": "iteration", "params": {"items": "{{fetch.body.rows}}", "body": {
            "nodes": [{"id": "s", "type": "start"}, {"id": "e", "type": "end"}],
            "edges": [{"from": "s", "to": "e"}]}}},
        {"id": "route", "type": "if_else", "params": {"cases": [{"id": "long"}]}},
        {"id": "ask", "type": "question", "params": {"question": "ok?"}},
        {"id": "other", "type": "question", "params": {"question": "sure?"}},
        {"id": "end", "type": "end", "inputs": {}},
    ],
    "edges": [
        {"from": "start", "to": "write"}, {"from": "start", "to": "fetch"},
        {"from": "start", "to": "each"}, {"from": "fetch", "to": "rows"},
        {"from": "write", "to": "route"}, {"from": "route", "to": "ask", "branch": "long"},
        {"from": "route", "to": "other", "branch": "else"}, {"from": "ask", "to": "end"},
        {"from": "other", "to": "end"}, {"from": "each", "to": "end"},
        {"from": "rows", "to": "end"},
    ],
}

SCRIPT = """async (doc) => {
  const m = await import("/static/flows/js/state.js");
  const state = m.createState(doc);
  let seq = 0;
  const ev = (type, data, scope = null, item = null) =>
    m.applyEvent(state, { seq: ++seq, type, ts: new Date().toISOString(), run: "r", scope, item, data });
  const node = (id) => {
    const n = state.nodes.get(id);
    return { status: n.status, attempts: n.attempts, text: n.text, retrying: n.retrying,
      items: n.items && { done: n.items.done.size, failed: n.items.failed.size, total: n.items.total } };
  };
  const out = {};
  ev("run.started", { inputs: { words: ["a", "b", "c"] }, flow: "f", version: "draft" });
  ev("node.started", { node: "start", type: "start", attempt: 1, inputs: {} });
  ev("node.finished", { node: "start", status: "succeeded", outputs: { words: ["a", "b", "c"] },
    error: null, elapsed_ms: 1, attempts: 1 });

  // Streamed text, a retry, and a new attempt that streams anew.
  ev("node.started", { node: "write", type: "llm", attempt: 1, inputs: {} });
  ev("node.chunk", { node: "write", text: "Hel" });
  ev("node.chunk", { node: "write", text: "lo" });
  out.streamed = node("write");
  ev("node.retrying", { node: "write", attempt: 1, delay_ms: 10, error: { code: "provider_error" } });
  out.retrying = node("write");
  ev("node.started", { node: "write", type: "llm", attempt: 2, inputs: {} });
  ev("node.chunk", { node: "write", text: "Hi" });
  out.second = node("write");
  ev("node.finished", { node: "write", status: "succeeded", outputs: { text: "Hi" }, error: null,
    elapsed_ms: 20, attempts: 2 });
  out.written = node("write");

  // An iteration: items done are counted from the body's end node (or a failed body node).
  ev("node.started", { node: "each", type: "iteration", attempt: 1, inputs: {} });
  out.eachStarted = node("each");
  ev("node.finished", { node: "shout", status: "succeeded" }, "each", 0);
  ev("node.finished", { node: "last", status: "succeeded" }, "each", 0);
  ev("node.finished", { node: "shout", status: "failed" }, "each", 1);
  ev("node.finished", { node: "last", status: "succeeded" }, "inner", 2); // another scope
  const before = seq;
  out.replayed = m.applyEvent(state, { seq: before, type: "node.finished", run: "r",
    scope: "each", item: 2, data: { node: "last", status: "succeeded" } });
  out.eachCounted = node("each");

  // A total known only from another node's outputs.
  ev("node.started", { node: "fetch", type: "code", attempt: 1, inputs: {} });
  ev("node.finished", { node: "fetch", status: "succeeded", outputs: { body: { rows: [1, 2] } },
    error: null, elapsed_ms: 3, attempts: 1 });
  ev("node.started", { node: "rows", type: "iteration", attempt: 1, inputs: {} });
  out.rows = node("rows");

  // Branches: the if_else chose "long".
  ev("node.started", { node: "route", type: "if_else", attempt: 1, inputs: {} });
  ev("node.finished", { node: "route", status: "succeeded", outputs: { branch: "long" },
    error: null, elapsed_ms: 0, attempts: 1 });
  ev("node.skipped", { node: "other" });
  const edge = (from, to, branch) => m.edgeState(state, { from, to, branch },
    doc.nodes.find((n) => n.id === from));
  out.edges = [edge("route", "ask", "long"), edge("route", "other", "else"),
    edge("other", "end", undefined), edge("ask", "end", undefined)];

  // Questions: the run shows "waiting" once nothing else runs.
  ev("node.finished", { node: "each", status: "succeeded", outputs: { results: [] }, error: null,
    elapsed_ms: 5, attempts: 1 });
  ev("node.finished", { node: "rows", status: "succeeded", outputs: { results: [] }, error: null,
    elapsed_ms: 5, attempts: 1 });
  ev("node.started", { node: "ask", type: "question", attempt: 1, inputs: {} });
  ev("run.waiting", { node: "ask", question: "ok?", options: [], timeout_at: null });
  out.waiting = { status: m.runStatus(state), open: state.waiting.map((q) => q.node),
    ask: node("ask").status, progress: m.progress(state) };
  ev("run.resumed", { node: "ask", answer: "yes", option: null, by: "ada" });
  out.resumed = { status: m.runStatus(state), open: state.waiting.length, ask: node("ask").status };
  ev("node.finished", { node: "ask", status: "succeeded", outputs: { answer: "yes", option: null },
    error: null, elapsed_ms: 9, attempts: 1 });
  ev("node.started", { node: "end", type: "end", attempt: 1, inputs: {} });
  ev("node.finished", { node: "end", status: "succeeded", outputs: {}, error: null,
    elapsed_ms: 0, attempts: 1 });
  ev("run.finished", { status: "succeeded", outputs: { ok: true }, answer: null, error: null,
    elapsed_ms: 50, recovered: 0 });
  out.finished = { status: m.runStatus(state), finished: m.isFinished(state),
    progress: m.progress(state), outputs: state.outputs, seq: state.seq };

  out.lengths = [
    m.resolveLength(state, [1, 2, 3]),
    m.resolveLength(state, "{{ start.words }}"),
    m.resolveLength(state, "{{fetch.body.rows}}"),
    m.resolveLength(state, "{{start.words[0]}}"),
    m.resolveLength(state, "items: {{start.words}}"),
    m.resolveLength(state, "{{write.text}}"),
  ];
  return out;
}"""


def serve_static(route):
    """The project's static files, straight from flows/static/ (no server needed)."""
    path = route.request.url.removeprefix(f"{ORIGIN}/static/")
    file = STATIC / path
    if ".." in path or not file.is_file():
        route.fulfill(status=404, body="")
    else:
        route.fulfill(body=file.read_bytes(), content_type="text/javascript")


def test_the_state_machine():
    with chromium_page() as page:
        page.route(f"{ORIGIN}/static/**", serve_static)
        page.route(f"{ORIGIN}/", lambda route: route.fulfill(
            body="<!doctype html><title>state</title>", content_type="text/html"))
        page.goto(f"{ORIGIN}/")
        out = page.evaluate(SCRIPT, DOC)
        problems = page.problems
    assert problems == []
    assert out["streamed"]["text"] == "Hello" and out["streamed"]["status"] == "running"
    assert out["retrying"]["status"] == "running" and out["retrying"]["retrying"]["attempt"] == 1
    assert out["second"] == {"status": "running", "attempts": 2, "text": "Hi", "retrying": None,
                             "items": None}
    assert (out["written"]["status"], out["written"]["attempts"]) == ("succeeded", 2)
    assert out["eachStarted"]["items"] == {"done": 0, "failed": 0, "total": 3}
    assert out["replayed"] is False
    assert out["eachCounted"]["items"] == {"done": 2, "failed": 1, "total": 3}
    assert out["rows"]["items"] == {"done": 0, "failed": 0, "total": 2}
    assert out["edges"] == ["taken", "skipped", "skipped", "idle"]
    assert out["waiting"] == {"status": "waiting", "open": ["ask"], "ask": "waiting",
                              "progress": {"done": 6, "total": 8}}  # "other" skipped
    assert out["resumed"] == {"status": "running", "open": 0, "ask": "running"}
    assert out["finished"]["status"] == "succeeded" and out["finished"]["finished"] is True
    assert out["finished"]["progress"] == {"done": 8, "total": 8}
    assert out["finished"]["outputs"] == {"ok": True}
    assert out["lengths"] == [3, 3, 2, None, None, None]


LAYOUT = """async (doc) => {
  const g = await import("/static/flows/js/graph.js");
  const shape = g.layout(doc);
  return { gapX: shape.gapX, nodeW: g.NODE_W,
           xs: Object.fromEntries([...shape.boxes].map(([id, box]) => [id, box.x])) };
}"""


def test_columns_leave_room_for_the_longest_branch_label():
    """A label sits in the gap after its source: a pill wider than the gap was hidden under
    the nodes on both sides ("se_2_with_")."""
    dsl = {"dsl": "astron/v1", "name": "Wide",
           "nodes": [{"id": "start", "type": "start"},
                     {"id": "route", "type": "if_else",
                      "params": {"cases": [{"id": "case_0_with_a_long_name"}]}},
                     {"id": "a", "type": "end"}, {"id": "b", "type": "end"}],
           "edges": [{"from": "start", "to": "route"},
                     {"from": "route", "to": "a", "branch": "case_0_with_a_long_name"},
                     {"from": "route", "to": "b", "branch": "else"}]}
    short = {**dsl, "edges": [dsl["edges"][0], {**dsl["edges"][1], "branch": "yes"},
                              dsl["edges"][2]]}
    with chromium_page() as page:
        page.route(f"{ORIGIN}/static/**", serve_static)
        page.route(f"{ORIGIN}/", lambda route: route.fulfill(
            body="<!doctype html><title>layout</title>", content_type="text/html"))
        page.goto(f"{ORIGIN}/")
        wide, narrow = page.evaluate(LAYOUT, dsl), page.evaluate(LAYOUT, short)

    longest_pill = 10 + 14 * 6.6  # cut at 14 characters
    assert wide["gapX"] >= longest_pill + 20
    assert wide["xs"]["a"] - wide["xs"]["route"] == wide["nodeW"] + wide["gapX"]
    assert narrow["gapX"] == 64  # short labels keep the compact layout
