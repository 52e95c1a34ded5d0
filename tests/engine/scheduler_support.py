"""Checks and flows of the scheduler tests (test_scheduler.py, test_run_limits.py)."""

import re

from .runflows import (
    ENVELOPE_KEYS,
    case,
    cond,
    edge,
    end,
    events_of,
    flow,
    if_else,
    start,
    template,
)

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


def assert_well_formed(events, run_id=None):
    """Envelope, seq 1..N without gaps, run.started first, run.finished last."""
    assert events, "no events"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    for e in events:
        assert set(e) == ENVELOPE_KEYS, e
        assert TS.fullmatch(e["ts"]), e["ts"]
        assert e["scope"] is None and e["item"] is None
        assert isinstance(e["data"], dict)
    assert len({e["run"] for e in events}) == 1
    if run_id is not None:
        assert events[0]["run"] == run_id
    assert events[0]["type"] == "run.started"
    assert events[-1]["type"] == "run.finished"
    assert len(events_of(events, "run.started")) == 1
    assert len(events_of(events, "run.finished")) == 1


def exclusive_flow(choose):
    """check chooses `left` or `else`; `a` is on left, `b` on else; both join into `join`."""
    nodes = [
        start({"go_left": "boolean"}),
        if_else("check", case("left", cond("{{start.go_left}}", "eq", True))),
        template("a", "A"),
        template("b", "B"),
        template("join", "[{{a.text}}|{{b.text}}]"),
        end({"join": "{{join.text}}"}),
    ]
    edges = [
        edge("start", "check"),
        edge("check", "a", "left"),
        edge("check", "b", "else"),
        edge("a", "join"),
        edge("b", "join"),
        edge("join", "end"),
    ]
    return flow(nodes, edges), {"go_left": choose == "left"}
