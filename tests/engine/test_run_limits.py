"""A run as a whole: its limits (timeout_s, max_steps), cancellation, the events it emits, its
inputs, and the sample flows (docs/dsl.md §4, §6)."""

import asyncio

import pytest

from engine import InputsInvalid, Run, compile_plan
from engine.testing import CollectingSink

from .runflows import (
    edge,
    end,
    events_of,
    finished,
    flow,
    launch,
    linear,
    load_sample,
    now,
    position,
    positions,
    run,
    start,
    template,
    unended,
    until_event,
    wait,
)
from .scheduler_support import (
    assert_well_formed,
    exclusive_flow,
)

pytestmark = pytest.mark.virtual_time


# --- run limits --------------------------------------------------------------------------


async def test_run_timeout_fails_the_run_and_cancels_running_nodes():
    nodes = [start(), wait("long1", 5), wait("long2", 5), end({"done": True})]
    edges = [
        edge("start", "long1"),
        edge("start", "long2"),
        edge("long1", "end"),
        edge("long2", "end"),
    ]
    began = now()
    result, events = await run(flow(nodes, edges, timeout_s=1))
    took = now() - began
    assert result.status == "failed"
    assert result.error["code"] == "run_timeout"
    assert result.error["node"] is None
    assert result.error["attempt"] is None
    for n in ["long1", "long2"]:
        assert result.nodes[n].status == "cancelled"
        assert finished(events, n)["data"]["status"] == "cancelled"
    assert took == pytest.approx(1.0)  # the run stopped at its timeout_s, not the 5 s waits
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
    began = now()
    await until_event(sink, "node.started", "long")
    the_run.cancel()
    result = await asyncio.wait_for(task, timeout=2)
    took = now() - began
    assert took == pytest.approx(0.0, abs=0.01)  # at once, not after the 5 s wait
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
    began = now()
    result, events = await run(load_sample("fanout.json"), {})
    took = now() - began
    assert result.status == "succeeded"
    assert result.outputs == {"all": "A on rivers | B on rivers | C on rivers"}
    waits = ["slow_a", "slow_b", "slow_c"]
    last_start = max(position(events, "node.started", n) for n in waits)
    first_finish = min(position(events, "node.finished", n) for n in waits)
    assert last_start < first_finish
    assert took == pytest.approx(1.0)  # three 1 s waits side by side, not 3 s
    assert events[0]["data"]["inputs"] == {"topic": "rivers"}
    assert_well_formed(events)
