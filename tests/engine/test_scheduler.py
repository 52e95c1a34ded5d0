"""Scheduling, errors, limits, cancellation and events (docs/dsl.md §2, §4, §5.1, §5.2, §6)."""

import asyncio
import re
import time

import pytest

from engine import InputsInvalid, Run, compile_plan
from engine.testing import CollectingSink

from .runflows import (
    ENVELOPE_KEYS,
    aggregate,
    case,
    chain,
    cond,
    edge,
    end,
    events_of,
    finished,
    flow,
    if_else,
    launch,
    linear,
    load_sample,
    max_overlap,
    position,
    positions,
    run,
    start,
    template,
    unended,
    until_event,
    wait,
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


# --- joins and skips ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("choose", "live", "dead", "text"),
    [
        ("left", "a", "b", "[A|]"),
        ("else", "b", "a", "[|B]"),
    ],
)
async def test_join_after_exclusive_branches_waits_only_for_the_live_one(choose, live, dead, text):
    doc, inputs = exclusive_flow(choose)
    result, events = await run(doc, inputs)
    assert result.status == "succeeded"
    assert result.outputs == {"join": text}
    assert result.nodes[live].status == "succeeded"
    assert result.nodes[dead].status == "skipped"
    assert result.nodes["join"].status == "succeeded"
    assert result.nodes["join"].attempts == 1
    assert position(events, "node.finished", live) < position(events, "node.started", "join")
    assert position(events, "node.skipped", dead) < position(events, "node.started", "join")


async def test_join_after_parallel_branches_waits_for_all_of_them():
    doc = flow(
        [
            start(),
            wait("fast", 0.01),
            wait("slow", 0.2),
            template("middle", "M"),
            template("join", "joined"),
            end({"join": "{{join.text}}"}),
        ],
        [
            edge("start", "fast"),
            edge("start", "slow"),
            edge("start", "middle"),
            edge("fast", "join"),
            edge("slow", "join"),
            edge("middle", "join"),
            edge("join", "end"),
        ],
    )
    result, events = await run(doc)
    assert result.status == "succeeded"
    assert result.outputs == {"join": "joined"}
    join_started = position(events, "node.started", "join")
    for branch in ["fast", "slow", "middle"]:
        assert position(events, "node.finished", branch) < join_started
    assert len(events_of(events, "node.started", "join")) == 1


async def test_skips_propagate_through_several_levels():
    nodes = [
        start(),
        if_else("check", case("yes")),
        template("y", "Y"),
        template("x1", "1"),
        template("x2", "{{x1.text}}2"),
        wait("x3", 0),
        template("x4", "{{x2.text}}4"),
        end({"y": "{{y.text}}", "x4": "{{x4.text}}"}),
    ]
    edges = [
        edge("start", "check"),
        edge("check", "y", "yes"),
        edge("check", "x1", "else"),
        *chain("x1", "x2", "x3", "x4", "end"),
        edge("y", "end"),
    ]
    result, events = await run(flow(nodes, edges))
    assert result.status == "succeeded"
    assert result.outputs == {"y": "Y", "x4": None}
    skipped = ["x1", "x2", "x3", "x4"]
    for n in skipped:
        assert result.nodes[n].status == "skipped"
        assert result.nodes[n].attempts == 0
        assert len(events_of(events, "node.skipped", n)) == 1
        assert not events_of(events, "node.started", n)
        assert not events_of(events, "node.finished", n)
    order = [e["data"]["node"] for e in events if e["type"] == "node.skipped"]
    assert order == skipped
    assert position(events, "node.skipped", "x4") < position(events, "node.started", "end")


async def test_node_with_one_live_and_one_skipped_input_runs():
    nodes = [
        start(),
        if_else("check", case("yes")),
        template("live", "L"),
        template("dead", "D"),
        template("after_dead", "{{dead.text}}"),
        template("join", "{{live.text}}+{{after_dead.text}}"),
        end({"join": "{{join.text}}"}),
    ]
    edges = [
        edge("start", "check"),
        edge("check", "live", "yes"),
        edge("check", "dead", "else"),
        edge("dead", "after_dead"),
        edge("live", "join"),
        edge("after_dead", "join"),
        edge("join", "end"),
    ]
    result, _ = await run(flow(nodes, edges))
    assert result.outputs == {"join": "L+"}
    assert result.nodes["after_dead"].status == "skipped"
    assert result.nodes["join"].status == "succeeded"


async def test_end_runs_even_when_all_its_incoming_edges_are_skipped():
    nodes = [
        start(),
        if_else("check", case("nowhere")),
        template("x", "X"),
        end({"out": "{{x.text}}", "from_start": "ok"}, answer="x=[{{x.text}}]"),
    ]
    edges = [edge("start", "check"), edge("check", "x", "else"), edge("x", "end")]
    result, events = await run(flow(nodes, edges))
    assert result.status == "succeeded"
    assert result.nodes["x"].status == "skipped"
    assert result.nodes["end"].status == "succeeded"
    assert result.nodes["end"].attempts == 1
    assert result.outputs == {"out": None, "from_start": "ok"}
    assert result.answer == "x=[]"
    assert finished(events, "end")["data"]["status"] == "succeeded"
    assert not events_of(events, "node.skipped", "end")


# --- parallelism and concurrency ---------------------------------------------------------


def three_waits(seconds, **settings):
    names = ["w1", "w2", "w3"]
    nodes = [start(), *[wait(n, seconds) for n in names], end({"done": True})]
    edges = [edge("start", n) for n in names] + [edge(n, "end") for n in names]
    return flow(nodes, edges, **settings), names


async def test_parallel_waits_really_overlap():
    doc, names = three_waits(0.3)
    began = time.monotonic()
    result, events = await run(doc)
    took = time.monotonic() - began
    assert result.status == "succeeded"
    last_start = max(position(events, "node.started", n) for n in names)
    first_finish = min(position(events, "node.finished", n) for n in names)
    assert last_start < first_finish
    assert took < 0.8


async def test_concurrency_one_runs_waits_one_at_a_time():
    doc, names = three_waits(0.05, concurrency=1)
    result, events = await run(doc)
    assert result.status == "succeeded"
    assert max_overlap(events, set(names)) == 1
    assert max_overlap(events, {"start", "end", *names}) == 1


async def test_concurrency_two_runs_at_most_two_waits_at_once():
    doc, names = three_waits(0.1, concurrency=2)
    result, events = await run(doc)
    assert result.status == "succeeded"
    assert max_overlap(events, set(names)) == 2


# --- retries -----------------------------------------------------------------------------


def timing_out(retry, **kw):
    """A wait that always outlives its own timeout."""
    return linear(wait("w", 2, timeout_s=0.05, retry=retry, **kw), outputs={"done": True})


async def test_timeout_with_retries_makes_every_attempt_then_fails():
    retry = {"max_attempts": 3, "backoff_ms": 10, "multiplier": 2, "jitter": False}
    began = time.monotonic()
    result, events = await run(timing_out(retry))
    took = time.monotonic() - began
    assert result.status == "failed"
    assert result.error["code"] == "timeout"
    assert result.error["node"] == "w"
    assert result.error["attempt"] == 3
    assert result.nodes["w"].status == "failed"
    assert result.nodes["w"].attempts == 3
    started = events_of(events, "node.started", "w")
    assert [e["data"]["attempt"] for e in started] == [1, 2, 3]
    retrying = events_of(events, "node.retrying", "w")
    assert [e["data"]["attempt"] for e in retrying] == [1, 2]
    assert [e["data"]["delay_ms"] for e in retrying] == [10, 20]
    for i, e in enumerate(retrying, start=1):
        assert e["data"]["error"]["code"] == "timeout"
        assert e["data"]["error"]["node"] == "w"
        assert e["data"]["error"]["attempt"] == i
    kinds = [e["type"] for e in events if e["data"].get("node") == "w"]
    assert kinds == [
        "node.started",
        "node.retrying",
        "node.started",
        "node.retrying",
        "node.started",
        "node.finished",
    ]
    assert finished(events, "w")["data"]["attempts"] == 3
    assert took < 1.5  # each attempt really stopped at its timeout, long before 2 s


async def test_backoff_grows_by_the_multiplier_up_to_the_cap():
    retry = {
        "max_attempts": 4,
        "backoff_ms": 10,
        "multiplier": 3,
        "max_backoff_ms": 25,
        "jitter": False,
    }
    _, events = await run(timing_out(retry))
    delays = [e["data"]["delay_ms"] for e in events_of(events, "node.retrying", "w")]
    assert delays == [10, 25, 25]


async def test_jittered_backoff_stays_within_the_bound():
    retry = {"max_attempts": 3, "backoff_ms": 40, "multiplier": 2, "jitter": True}
    for _ in range(3):
        result, events = await run(timing_out(retry))
        assert result.nodes["w"].attempts == 3
        delays = [e["data"]["delay_ms"] for e in events_of(events, "node.retrying", "w")]
        assert len(delays) == 2
        assert 0 <= delays[0] <= 40
        assert 0 <= delays[1] <= 80


async def test_jitter_is_on_by_default():
    retry = {"max_attempts": 3, "backoff_ms": 30}
    seen = []
    for _ in range(4):
        _, events = await run(timing_out(retry))
        delays = [e["data"]["delay_ms"] for e in events_of(events, "node.retrying", "w")]
        assert 0 <= delays[0] <= 30 and 0 <= delays[1] <= 60
        seen += delays
    assert seen != [30, 60] * 4  # drawn at random, not the plain formula every time


async def test_bad_path_is_not_retried():
    doc = linear(
        template("t", "{{start.v.x}}", retry={"max_attempts": 3, "backoff_ms": 1}),
        inputs={"v": "any"},
    )
    result, events = await run(doc, {"v": "a string"})
    assert result.status == "failed"
    assert result.error["code"] == "bad_path"
    assert result.error["attempt"] == 1
    assert result.nodes["t"].attempts == 1
    assert not events_of(events, "node.retrying")
    assert len(events_of(events, "node.started", "t")) <= 1


async def test_type_mismatch_is_not_retried():
    nodes = [
        start(),
        if_else(
            "check",
            case("yes", cond(1, "gt", "1")),
            retry={"max_attempts": 3, "backoff_ms": 1},
        ),
        template("y", "Y"),
        end({"y": "{{y.text}}"}),
    ]
    edges = [edge("start", "check"), edge("check", "y", "yes"), edge("y", "end")]
    result, events = await run(flow(nodes, edges))
    assert result.status == "failed"
    assert result.error["code"] == "type_mismatch"
    assert result.error["attempt"] == 1
    assert result.nodes["check"].attempts == 1
    assert not events_of(events, "node.retrying")
    assert len(events_of(events, "node.started", "check")) <= 1


async def test_bad_path_in_a_wait_is_not_retried():
    doc = linear(
        wait("w", "{{start.cfg.seconds}}", retry={"max_attempts": 3, "backoff_ms": 1}),
        inputs={"cfg": "any"},
    )
    result, events = await run(doc, {"cfg": "not an object"})
    assert result.status == "failed"
    assert result.error["code"] == "bad_path"
    assert result.error["node"] == "w"
    assert result.nodes["w"].attempts == 1
    assert not events_of(events, "node.retrying")
    assert len(events_of(events, "node.started", "w")) <= 1


async def test_wait_seconds_may_be_a_whole_reference():
    doc = linear(wait("w", "{{start.cfg.seconds}}"), inputs={"cfg": "any"}, outputs={"ok": 1})
    result, events = await run(doc, {"cfg": {"seconds": 0.05}})
    assert result.status == "succeeded"
    assert finished(events, "w")["data"]["elapsed_ms"] >= 40


async def test_max_attempts_one_means_no_retry():
    result, events = await run(timing_out({"max_attempts": 1, "backoff_ms": 1}))
    assert result.error["code"] == "timeout"
    assert result.nodes["w"].attempts == 1
    assert not events_of(events, "node.retrying")


# --- on_error ----------------------------------------------------------------------------


async def test_on_error_default_recovers_with_the_default_outputs():
    doc = linear(
        template("t", "{{start.v.x}}", on_error="default", default={"text": "fallback"}),
        template("after", "got {{t.text}}"),
        inputs={"v": "any"},
        outputs={"t": "{{t.text}}", "after": "{{after.text}}"},
    )
    result, events = await run(doc, {"v": 5})
    assert result.status == "succeeded"
    assert result.error is None
    assert result.recovered == 1
    assert result.outputs == {"t": "fallback", "after": "got fallback"}
    t = result.nodes["t"]
    assert t.status == "recovered"
    assert t.outputs == {"text": "fallback"}
    assert t.error["code"] == "bad_path"
    assert t.error["node"] == "t"
    data = finished(events, "t")["data"]
    assert data["status"] == "recovered"
    assert data["outputs"] == {"text": "fallback"}
    assert data["error"]["code"] == "bad_path"
    assert events[-1]["data"]["recovered"] == 1
    assert events[-1]["data"]["status"] == "succeeded"


async def test_on_error_default_after_retries_are_exhausted():
    doc = linear(
        wait(
            "w",
            2,
            timeout_s=0.05,
            retry={"max_attempts": 2, "backoff_ms": 5},
            on_error="default",
            default={},
        ),
        outputs={"done": True},
    )
    result, events = await run(doc)
    assert result.status == "succeeded"
    assert result.outputs == {"done": True}
    assert result.recovered == 1
    assert result.nodes["w"].status == "recovered"
    assert result.nodes["w"].attempts == 2
    assert result.nodes["w"].error["code"] == "timeout"
    assert len(events_of(events, "node.retrying", "w")) == 1


def error_branch_flow(value_type="any"):
    nodes = [
        start({"v": value_type}),
        template("t", "x={{start.v.x}}", on_error="branch"),
        template("ok", "ok: {{t.text}}"),
        template("explain", "failed: {{t.error.code}} at {{t.error.node}}"),
        aggregate("merge", ["{{ok.text}}", "{{explain.text}}"]),
        end({"message": "{{merge.value}}", "error": "{{t.error}}", "text": "{{t.text}}"}),
    ]
    edges = [
        edge("start", "t"),
        edge("t", "ok"),
        edge("t", "explain", "error"),
        edge("ok", "merge"),
        edge("explain", "merge"),
        edge("merge", "end"),
    ]
    return flow(nodes, edges)


async def test_on_error_branch_takes_only_error_edges():
    result, events = await run(error_branch_flow(), {"v": "not an object"})
    assert result.status == "succeeded"
    assert result.recovered == 1
    assert result.outputs["message"] == "failed: bad_path at t"
    assert result.outputs["text"] is None
    assert result.outputs["error"]["code"] == "bad_path"
    assert result.nodes["ok"].status == "skipped"
    assert result.nodes["explain"].status == "succeeded"
    t = result.nodes["t"]
    assert t.status == "recovered"
    assert t.outputs["text"] is None
    assert t.outputs["error"]["code"] == "bad_path"
    assert t.error["code"] == "bad_path"
    assert events_of(events, "node.skipped", "ok")


async def test_on_error_branch_on_success_takes_plain_edges_and_error_is_null():
    result, _ = await run(error_branch_flow(), {"v": {"x": 1}})
    assert result.status == "succeeded"
    assert result.recovered == 0
    assert result.outputs == {"message": "ok: x=1", "error": None, "text": "x=1"}
    assert result.nodes["explain"].status == "skipped"
    assert result.nodes["t"].status == "succeeded"
    assert result.nodes["t"].outputs == {"text": "x=1", "error": None}


@pytest.mark.parametrize("explicit", [True, False])
async def test_on_error_fail_fails_the_run_with_the_node_error(explicit):
    extra = {"on_error": "fail"} if explicit else {}
    doc = linear(
        template("t", "{{start.v.x}}", **extra),
        template("after", "after"),
        inputs={"v": "any"},
    )
    result, events = await run(doc, {"v": 1})
    assert result.status == "failed"
    assert result.nodes["t"].status == "failed"
    assert result.error == result.nodes["t"].error
    assert result.error["code"] == "bad_path"
    assert result.recovered == 0
    assert finished(events, "t")["data"]["status"] == "failed"
    assert not events_of(events, "node.started", "after")
    assert events[-1]["data"]["status"] == "failed"
    assert events[-1]["data"]["error"] == result.error


# --- run limits --------------------------------------------------------------------------


async def test_run_timeout_fails_the_run_and_cancels_running_nodes():
    nodes = [start(), wait("long1", 5), wait("long2", 5), end({"done": True})]
    edges = [
        edge("start", "long1"),
        edge("start", "long2"),
        edge("long1", "end"),
        edge("long2", "end"),
    ]
    began = time.monotonic()
    result, events = await run(flow(nodes, edges, timeout_s=1))
    took = time.monotonic() - began
    assert result.status == "failed"
    assert result.error["code"] == "run_timeout"
    assert result.error["node"] is None
    assert result.error["attempt"] is None
    for n in ["long1", "long2"]:
        assert result.nodes[n].status == "cancelled"
        assert finished(events, n)["data"]["status"] == "cancelled"
    assert 0.9 < took < 3
    assert events[-1]["type"] == "run.finished"
    assert events[-1]["data"]["error"]["code"] == "run_timeout"


async def test_max_steps_fails_the_run_when_exceeded():
    doc = linear(template("a", "A"), template("b", "B"), outputs={"b": "{{b.text}}"}, max_steps=3)
    result, events = await run(doc)
    assert result.status == "failed"
    assert result.error["code"] == "max_steps"
    assert result.error["node"] is None
    assert result.error["attempt"] is None
    assert events[-1]["data"]["error"]["code"] == "max_steps"
    assert not events_of(events, "node.finished", "end")


async def test_max_steps_allows_exactly_that_many_steps():
    doc = linear(template("a", "A"), template("b", "B"), outputs={"b": "{{b.text}}"}, max_steps=4)
    result, _ = await run(doc)
    assert result.status == "succeeded"
    assert result.steps == 4


async def test_max_steps_counts_waits_too():
    doc = linear(wait("a", 0), wait("b", 0), outputs={"ok": 1}, max_steps=2)
    result, events = await run(doc)
    assert result.status == "failed"
    assert result.error["code"] == "max_steps"
    assert len(events_of(events, "node.started")) <= 2
    assert result.nodes.get("b") is None or result.nodes["b"].status != "succeeded"
    assert all(e["data"]["status"] != "succeeded" for e in events_of(events, "node.finished", "b"))


async def test_retries_count_as_steps():
    retry = {"max_attempts": 3, "backoff_ms": 1, "jitter": False}
    doc = linear(wait("w", 2, timeout_s=0.05, retry=retry), max_steps=3)
    result, events = await run(doc)
    assert result.status == "failed"
    assert result.error["code"] == "max_steps"
    assert [e["data"]["attempt"] for e in events_of(events, "node.started", "w")] == [1, 2]
    assert all(e["data"]["status"] != "succeeded" for e in events_of(events, "node.finished", "w"))


async def test_node_stopped_by_max_steps_between_attempts_ends_cancelled():
    # start and two attempts of w use the 3 steps; the third attempt finds none left.
    retry = {"max_attempts": 3, "backoff_ms": 0}
    doc = linear(wait("w", 1, timeout_s=0.05, retry=retry), max_steps=3)

    result, events = await run(doc)

    assert result.error["code"] == "max_steps"
    done = finished(events, "w")["data"]
    assert done["status"] == "cancelled"
    assert done["error"]["code"] == "cancelled"
    assert done["attempts"] == 2
    assert position(events, "node.finished", "w") < position(events, "run.finished")
    assert result.nodes["w"].status == "cancelled"
    assert result.nodes["w"].attempts == 2
    assert unended(events) == []


# --- cancellation ------------------------------------------------------------------------


async def test_cancel_ends_the_run_promptly_and_cancels_the_running_wait():
    doc = linear(wait("long", 5), template("after", "A"))
    the_run, sink, task = launch(doc)
    began = time.monotonic()
    await until_event(sink, "node.started", "long")
    the_run.cancel()
    result = await asyncio.wait_for(task, timeout=2)
    took = time.monotonic() - began
    assert took < 1.5
    assert result.status == "cancelled"
    assert result.error["code"] == "cancelled"
    assert result.nodes["long"].status == "cancelled"
    events = sink.events
    assert finished(events, "long")["data"]["status"] == "cancelled"
    assert not events_of(events, "node.started", "after")
    assert events[-1]["type"] == "run.finished"
    assert events[-1]["data"]["status"] == "cancelled"
    assert events[-1]["data"]["error"]["code"] == "cancelled"
    assert_well_formed(events)


async def test_cancelled_node_keeps_its_resolved_inputs():
    doc = linear(wait("long", 5, inputs={"why": "{{start.name}}", "n": [1, "{{start.name}}"]}),
                 inputs={"name": "string"})
    the_run, sink, task = launch(doc, {"name": "Ada"})
    await until_event(sink, "node.started", "long")
    the_run.cancel()
    result = await asyncio.wait_for(task, timeout=2)

    assert result.nodes["long"].status == "cancelled"
    assert result.nodes["long"].inputs == {"why": "Ada", "n": [1, "Ada"]}
    started = events_of(sink.events, "node.started", "long")[0]
    assert result.nodes["long"].inputs == started["data"]["inputs"]


# --- events ------------------------------------------------------------------------------


async def test_events_are_numbered_from_one_without_gaps_and_well_formed():
    doc, inputs = exclusive_flow("left")
    _, events = await run(doc, inputs, run_id="11111111-2222-3333-4444-555555555555")
    assert_well_formed(events, "11111111-2222-3333-4444-555555555555")
    for e in events:
        if e["type"].startswith("node."):
            assert "node" in e["data"]


async def test_run_started_records_inputs_flow_and_version():
    doc = linear(inputs={"name": "string", "topic": {"type": "string", "default": "rivers"}})
    _, events = await run(doc, {"name": "Ada"}, flow="greeter", version=2)
    data = events[0]["data"]
    assert events[0]["type"] == "run.started"
    assert data["inputs"] == {"name": "Ada", "topic": "rivers"}
    assert data["flow"] == "greeter"
    assert data["version"] == 2


async def test_run_finished_carries_the_result():
    doc = linear(
        template("greet", "Hi {{start.name}}"),
        inputs={"name": "string"},
        outputs={"greeting": "{{greet.text}}"},
        answer="{{greeting}}!",
    )
    result, events = await run(doc, {"name": "Ada"})
    data = events[-1]["data"]
    for key in ["status", "outputs", "answer", "error", "elapsed_ms", "recovered"]:
        assert key in data, key
    assert data["status"] == result.status == "succeeded"
    assert data["outputs"] == result.outputs == {"greeting": "Hi Ada"}
    assert data["answer"] == result.answer == "Hi Ada!"
    assert data["error"] is None and result.error is None
    assert data["recovered"] == result.recovered == 0
    assert data["elapsed_ms"] >= 0


async def test_node_events_carry_their_data_in_order():
    doc = linear(
        template("t", "{{who}}/{{n}}", inputs={"who": "{{start.name}}", "n": 3}),
        inputs={"name": "string"},
        outputs={"t": "{{t.text}}"},
    )
    result, events = await run(doc, {"name": "Ada"})
    started = events_of(events, "node.started", "t")
    assert len(started) == 1
    assert started[0]["data"]["type"] == "template"
    assert started[0]["data"]["attempt"] == 1
    assert started[0]["data"]["inputs"] == {"who": "Ada", "n": 3}
    done = finished(events, "t")["data"]
    assert done["status"] == "succeeded"
    assert done["outputs"] == {"text": "Ada/3"}
    assert done["error"] is None
    assert done["attempts"] == 1
    assert done["elapsed_ms"] >= 0
    node_order = [e["data"]["node"] for e in events if e["type"] == "node.started"]
    assert node_order == ["start", "t", "end"]
    for n in ["start", "t", "end"]:
        assert position(events, "node.started", n) < position(events, "node.finished", n)
        assert result.nodes[n].status == "succeeded"
        assert result.nodes[n].attempts == 1
    assert result.nodes["t"].inputs == {"who": "Ada", "n": 3}
    assert result.nodes["t"].outputs == {"text": "Ada/3"}
    assert result.nodes["t"].type == "template"


async def test_end_answer_is_streamed_as_chunks_that_make_up_the_answer():
    doc = linear(
        template("greet", "Hello, {{start.name}}!"),
        inputs={"name": "string"},
        outputs={"name": "{{start.name}}"},
        answer="{{greet.text}} Nice to meet you, {{name}}. Bye.",
    )
    result, events = await run(doc, {"name": "Ada"})
    assert result.answer == "Hello, Ada! Nice to meet you, Ada. Bye."
    chunks = events_of(events, "node.chunk")
    assert chunks
    assert all(c["data"]["node"] == "end" for c in chunks)
    assert "".join(c["data"]["text"] for c in chunks) == result.answer
    idx = positions(events, "node.chunk")
    assert position(events, "node.started", "end") < idx[0]
    assert idx[-1] < position(events, "node.finished", "end")
    assert events[-1]["data"]["answer"] == result.answer


async def test_run_without_answer_has_null_answer_and_no_chunks():
    result, events = await run(linear(outputs={"x": 1}))
    assert result.answer is None
    assert not events_of(events, "node.chunk")


# --- inputs ------------------------------------------------------------------------------

DECLARED = {
    "name": {"type": "string", "required": True},
    "count": {"type": "integer"},
    "ratio": {"type": "number"},
    "flag": {"type": "boolean"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "meta": {"type": "object"},
    "topic": {"type": "string", "default": "rivers"},
}


@pytest.mark.parametrize(
    ("inputs", "path"),
    [
        ({}, "/name"),
        ({"name": "Ada", "bogus": 1}, "/bogus"),
        ({"name": 5}, "/name"),
        ({"name": "Ada", "count": "3"}, "/count"),
        ({"name": "Ada", "count": 3.0}, "/count"),
        ({"name": "Ada", "count": 3.5}, "/count"),
        ({"name": "Ada", "count": True}, "/count"),
        ({"name": "Ada", "ratio": "1.5"}, "/ratio"),
        ({"name": "Ada", "ratio": False}, "/ratio"),
        ({"name": "Ada", "flag": 1}, "/flag"),
        ({"name": "Ada", "flag": "true"}, "/flag"),
        ({"name": "Ada", "tags": "a"}, "/tags"),
        ({"name": "Ada", "tags": ["a", 1]}, "/tags"),
        ({"name": "Ada", "meta": []}, "/meta"),
        # A JSON Pointer escapes "~" as "~0" and "/" as "~1" (RFC 6901).
        ({"name": "Ada", "a/b": 1}, "/a~1b"),
        ({"name": "Ada", "x~y": 1}, "/x~0y"),
        ({"name": "Ada", "~/": 1}, "/~0~1"),
    ],
)
async def test_invalid_inputs_are_refused_before_any_event(inputs, path):
    sink = CollectingSink()
    with pytest.raises(InputsInvalid) as raised:
        the_run = Run(compile_plan(linear(inputs=DECLARED)), inputs, sink=sink)
        await the_run.execute()
    assert sink.events == []
    problems = raised.value.problems
    assert problems
    assert all(p.code == "invalid_inputs" for p in problems)
    assert path in [p.path for p in problems]


@pytest.mark.parametrize(
    ("given", "recorded"),
    [
        ({"name": "Ada"}, {}),
        ({"name": "Ada", "count": 3, "ratio": 6}, {"count": 3, "ratio": 6}),
        ({"name": "Ada", "ratio": 2.0, "flag": False}, {"ratio": 2.0, "flag": False}),
        ({"name": "Ada", "tags": ["a"], "meta": {"k": [1]}}, {"tags": ["a"], "meta": {"k": [1]}}),
        ({"name": "Ada", "topic": "lakes"}, {"topic": "lakes"}),
        ({"name": "Ada", "count": None}, {"count": None}),
    ],
)
async def test_valid_inputs_get_defaults_applied_and_recorded(given, recorded):
    expected = {
        "name": "Ada",
        "count": None,
        "ratio": None,
        "flag": None,
        "tags": None,
        "meta": None,
        "topic": "rivers",
    }
    expected.update(recorded)
    outputs = {k: "{{start." + k + "}}" for k in DECLARED}
    result, events = await run(linear(inputs=DECLARED, outputs=outputs), given)
    assert result.status == "succeeded"
    assert events[0]["data"]["inputs"] == expected
    assert result.outputs == expected
    for key in ["count", "ratio"]:
        assert type(result.outputs[key]) is type(expected[key])


async def test_apply_inputs_applies_defaults_and_refuses_wrong_types():
    plan = compile_plan(linear(inputs=DECLARED))
    applied = plan.apply_inputs({"name": "Ada", "ratio": 6})
    assert applied["topic"] == "rivers"
    assert applied["ratio"] == 6 and type(applied["ratio"]) is int
    with pytest.raises(InputsInvalid):
        plan.apply_inputs({"name": "Ada", "count": 1.5})


# --- sample flows ------------------------------------------------------------------------


async def test_sample_hello_greets_by_name():
    result, events = await run(load_sample("hello.json"), {"name": "Ada"})
    assert result.status == "succeeded"
    assert result.outputs == {"greeting": "Hello, Ada!"}
    assert_well_formed(events)


async def test_sample_hello_requires_a_name():
    with pytest.raises(InputsInvalid):
        await run(load_sample("hello.json"), {})


async def test_sample_fanout_runs_its_three_waits_at_the_same_time():
    began = time.monotonic()
    result, events = await run(load_sample("fanout.json"), {})
    took = time.monotonic() - began
    assert result.status == "succeeded"
    assert result.outputs == {"all": "A on rivers | B on rivers | C on rivers"}
    waits = ["slow_a", "slow_b", "slow_c"]
    last_start = max(position(events, "node.started", n) for n in waits)
    first_finish = min(position(events, "node.finished", n) for n in waits)
    assert last_start < first_finish
    assert took < 2.5
    assert events[0]["data"]["inputs"] == {"topic": "rivers"}
    assert_well_formed(events)
