"""The `subflow` node (docs/dsl.md §5.11): child runs, versions, inputs, depth, self-reference and
cancellation, run through the in-memory `LocalFlowRunner`."""

import asyncio
import copy

import pytest

from engine import Services, validate_document
from engine.subflows import LocalFlowRunner
from engine.testing import CollectingSink

from .runflows import (
    body,
    case,
    chain,
    cond,
    edge,
    end,
    events_of,
    finished,
    flow,
    if_else,
    iteration,
    launch,
    linear,
    load_sample,
    node,
    now,
    run,
    start,
    subflow,
    template,
    until,
    wait,
)

pytestmark = pytest.mark.virtual_time


def hello_doc(greeting="Hello"):
    doc = copy.deepcopy(load_sample("hello"))
    doc["nodes"][1]["params"]["template"] = greeting + ", {{start.name}}!"
    return doc


def caller(slug, inputs=None, version=None, outputs=None):
    """start(name) -> sub (subflow to `slug`) -> end(out = the child's outputs)."""
    return linear(
        subflow(
            "sub",
            slug,
            inputs if inputs is not None else {"name": "{{start.name}}"},
            version=version,
        ),
        inputs={"name": "string"},
        outputs=outputs or {"out": "{{sub.outputs}}"},
    )


def calling(slug):
    """A flow whose only work is a subflow to `slug` (no inputs)."""
    return linear(subflow("sub", slug, {}), outputs={"out": "{{sub.outputs}}"})


def leaf(text="leaf"):
    return linear(template("t", text), outputs={"text": "{{t.text}}"})


async def run_with(runner, doc, inputs=None, flow_slug="parent", **kw):
    return await run(doc, inputs or {}, services=Services(flows=runner), flow=flow_slug, **kw)


class ChildSinks:
    """A `sink_for` that keeps every child run's events by run id."""

    def __init__(self):
        self.sinks = {}

    def __call__(self, run_id, request):
        self.sinks[run_id] = sink = CollectingSink()
        return sink

    def events(self):
        return [e for sink in self.sinks.values() for e in sink.events]


# --- the sample pair --------------------------------------------------------------------------


async def test_greet_team_calls_hello_once_per_member():
    runner = LocalFlowRunner({"hello": [load_sample("hello")]})

    result, events = await run_with(
        runner, load_sample("greet-team"), {"members": ["Ada", "Lin"]}, flow_slug="greet-team"
    )

    assert result.status == "succeeded"
    assert result.outputs == {"lines": [{"line": "Hello, Ada!"}, {"line": "Hello, Lin!"}]}
    assert len(runner.children) == 2
    run_id = events[0]["run"]
    requests = sorted((child[0] for child in runner.children), key=lambda r: r.item)
    assert [(r.flow, r.node, r.item, r.depth) for r in requests] == [
        ("hello", "hello", 0, 1),
        ("hello", "hello", 1, 1),
    ]
    assert [r.inputs for r in requests] == [{"name": "Ada"}, {"name": "Lin"}]
    assert {r.parent_run_id for r in requests} == {run_id}
    children = {child[1]: child[2] for child in runner.children}
    assert len(children) == 2
    assert run_id not in children
    assert all(r.status == "succeeded" for r in children.values())
    assert sorted(r.outputs["greeting"] for r in children.values()) == [
        "Hello, Ada!",
        "Hello, Lin!",
    ]
    # Child nodes are not part of the parent's events.
    assert not events_of(events, "node.started", "greet")
    subflow_runs = events_of(events, "node.finished", "hello")
    assert [e["data"]["outputs"] for e in sorted(subflow_runs, key=lambda e: e["item"])] == [
        {"outputs": {"greeting": "Hello, Ada!"}},
        {"outputs": {"greeting": "Hello, Lin!"}},
    ]


async def test_subflow_outputs_are_the_child_outputs():
    runner = LocalFlowRunner({"hello": [hello_doc()]})

    result, events = await run_with(runner, caller("hello"), {"name": "Bo"})

    assert result.status == "succeeded"
    assert result.outputs == {"out": {"greeting": "Hello, Bo!"}}
    done = finished(events, "sub")
    assert done["data"]["status"] == "succeeded"
    assert done["data"]["outputs"] == {"outputs": {"greeting": "Hello, Bo!"}}
    assert result.nodes["sub"].type == "subflow"


async def test_child_runs_as_its_own_run_with_its_own_events():
    sinks = ChildSinks()
    runner = LocalFlowRunner({"hello": [hello_doc()]}, sink_for=sinks)

    result, events = await run_with(runner, caller("hello"), {"name": "Bo"})

    assert result.status == "succeeded"
    [(child_id, sink)] = sinks.sinks.items()
    child_events = sink.events
    assert child_id != events[0]["run"]
    assert {e["run"] for e in child_events} == {child_id}
    assert child_events[0]["type"] == "run.started"
    assert child_events[0]["data"]["flow"] == "hello"
    assert child_events[0]["data"]["version"] == 1
    assert child_events[0]["data"]["inputs"] == {"name": "Bo"}
    assert child_events[-1]["type"] == "run.finished"
    assert child_events[-1]["data"]["status"] == "succeeded"
    assert [e["seq"] for e in child_events] == list(range(1, len(child_events) + 1))


# --- versions ---------------------------------------------------------------------------------


async def test_unpublished_child_fails_with_not_published():
    for published in ({}, {"hello": []}, {"other": [hello_doc()]}):
        runner = LocalFlowRunner(published)

        result, events = await run_with(runner, caller("hello"), {"name": "Bo"})

        assert result.status == "failed", published
        assert result.error["code"] == "not_published"
        assert result.error["node"] == "sub"
        assert finished(events, "sub")["data"]["status"] == "failed"
        assert runner.children == []


async def test_not_published_is_not_retried():
    doc = caller("hello")
    doc["nodes"][1]["retry"] = {"max_attempts": 3, "backoff_ms": 0}

    result, events = await run_with(LocalFlowRunner({}), doc, {"name": "Bo"})

    assert result.error["code"] == "not_published"
    assert not events_of(events, "node.retrying")
    assert finished(events, "sub")["data"]["attempts"] == 1


async def test_published_means_the_latest_version():
    runner = LocalFlowRunner({"hello": [hello_doc("Hi"), hello_doc("Howdy")]})

    result, _ = await run_with(runner, caller("hello"), {"name": "Bo"})

    assert result.outputs == {"out": {"greeting": "Howdy, Bo!"}}
    explicit, _ = await run_with(runner, caller("hello", version="published"), {"name": "Bo"})
    assert explicit.outputs == {"out": {"greeting": "Howdy, Bo!"}}


async def test_version_number_picks_that_version():
    runner = LocalFlowRunner({"hello": [hello_doc("Hi"), hello_doc("Howdy")]})

    first, _ = await run_with(runner, caller("hello", version=1), {"name": "Bo"})
    second, _ = await run_with(runner, caller("hello", version=2), {"name": "Bo"})

    assert first.outputs == {"out": {"greeting": "Hi, Bo!"}}
    assert second.outputs == {"out": {"greeting": "Howdy, Bo!"}}
    assert [child[0].version for child in runner.children] == [1, 2]


# --- inputs and child failures --------------------------------------------------------------


async def test_child_inputs_are_validated_against_its_start_node():
    runner = LocalFlowRunner({"hello": [hello_doc()]})
    cases = [{}, {"name": 3}, {"name": "{{start.name}}", "extra": "x"}]

    for inputs in cases:
        result, events = await run_with(runner, caller("hello", inputs=inputs), {"name": "Bo"})

        assert result.status == "failed", inputs
        assert result.error["code"] == "invalid_param", inputs
        assert result.error["node"] == "sub"
        assert finished(events, "sub")["data"]["error"]["code"] == "invalid_param"
    assert runner.children == []


def mismatching_child():
    """A child that compares its input with a number: null there is type_mismatch (§5.4)."""
    nodes = [
        start({"n": "any"}),
        if_else("check", case("big", cond("{{start.n}}", "gt", 1))),
        end(),
    ]
    edges = [edge("start", "check"), edge("check", "end", "big"), edge("check", "end", "else")]
    return flow(nodes, edges)


async def test_child_failure_fails_the_subflow_node_with_the_child_error_code():
    runner = LocalFlowRunner({"child": [mismatching_child()]})
    doc = linear(subflow("sub", "child", {"n": None}), outputs={"out": "{{sub.outputs}}"})

    result, events = await run_with(runner, doc)

    assert result.status == "failed"
    assert result.error["code"] == "type_mismatch"
    assert result.error["node"] == "sub"
    assert finished(events, "sub")["data"]["status"] == "failed"
    [(_, _, child_result)] = runner.children
    assert child_result.status == "failed"
    assert child_result.error["code"] == "type_mismatch"
    assert child_result.error["node"] == "check"


async def test_child_failure_can_be_handled_by_on_error():
    runner = LocalFlowRunner({"child": [mismatching_child()]})
    doc = linear(
        subflow(
            "sub", "child", {"n": None}, on_error="default", default={"outputs": {"fallback": True}}
        ),
        outputs={"out": "{{sub.outputs}}"},
    )

    result, events = await run_with(runner, doc)

    assert result.status == "succeeded"
    assert result.outputs == {"out": {"fallback": True}}
    assert result.recovered == 1
    assert finished(events, "sub")["data"]["error"]["code"] == "type_mismatch"


# --- depth and self-reference -------------------------------------------------------------------


def chain_of_flows(length):
    """f0 -> f1 -> ... -> f{length-1}, each calling the next; the last one is a leaf."""
    published = {f"f{n}": [calling(f"f{n + 1}")] for n in range(length - 1)}
    published[f"f{length - 1}"] = [leaf("bottom")]
    return published


async def test_depth_five_is_the_deepest_run():
    # f0 (depth 0) ... f5 (depth 5): f5 starts no child, so the chain works.
    published = chain_of_flows(6)
    runner = LocalFlowRunner(published)

    result, _ = await run_with(runner, published["f0"][0], flow_slug="f0")

    assert result.status == "succeeded"
    assert result.outputs == {"out": {"out": {"out": {"out": {"out": {"text": "bottom"}}}}}}
    assert sorted(child[0].depth for child in runner.children) == [1, 2, 3, 4, 5]


async def test_run_at_depth_five_cannot_start_a_child():
    published = chain_of_flows(7)
    runner = LocalFlowRunner(published)

    result, events = await run_with(runner, published["f0"][0], flow_slug="f0")

    assert result.status == "failed"
    assert result.error["code"] == "depth_exceeded"
    assert finished(events, "sub")["data"]["error"]["code"] == "depth_exceeded"
    by_flow = {child[0].flow: child for child in runner.children}
    assert "f6" not in by_flow  # never started
    assert by_flow["f5"][0].depth == 5
    assert by_flow["f5"][2].status == "failed"
    assert by_flow["f5"][2].error["code"] == "depth_exceeded"
    assert by_flow["f5"][2].error["node"] == "sub"


async def test_runtime_self_reference_through_another_flow():
    published = {"a": [calling("b")], "b": [calling("a")]}
    runner = LocalFlowRunner(published)

    result, _ = await run_with(runner, published["a"][0], flow_slug="a")

    assert result.status == "failed"
    assert result.error["code"] == "self_reference"
    # b ran as a child and failed; a was never started again.
    assert [child[0].flow for child in runner.children] == ["b"]
    assert runner.children[0][2].error["code"] == "self_reference"


async def test_runtime_self_reference_to_itself_starts_no_child():
    published = {"a": [calling("a")]}
    runner = LocalFlowRunner(published)

    result, events = await run_with(runner, published["a"][0], flow_slug="a")

    assert result.status == "failed"
    assert result.error["code"] == "self_reference"
    assert result.error["node"] == "sub"
    assert runner.children == []
    assert not events_of(events, "node.retrying")


async def test_self_reference_is_not_retried():
    doc = calling("a")
    doc["nodes"][1]["retry"] = {"max_attempts": 3, "backoff_ms": 0}

    result, events = await run_with(LocalFlowRunner({"a": [doc]}), doc, flow_slug="a")

    assert result.error["code"] == "self_reference"
    assert finished(events, "sub")["data"]["attempts"] == 1


async def test_the_same_child_twice_is_not_a_self_reference():
    # parent -> hello, then parent -> hello again: a flow may call another one many times.
    nodes = [
        start({"name": "string"}),
        subflow("one", "hello", {"name": "{{start.name}}"}),
        subflow("two", "hello", {"name": "again"}),
        end({"a": "{{one.outputs.greeting}}", "b": "{{two.outputs.greeting}}"}),
    ]
    doc = flow(nodes, chain("start", "one", "two", "end"))
    runner = LocalFlowRunner({"hello": [hello_doc()]})

    result, _ = await run_with(runner, doc, {"name": "Bo"})

    assert result.status == "succeeded"
    assert result.outputs == {"a": "Hello, Bo!", "b": "Hello, again!"}


def test_saving_a_flow_that_calls_itself_is_self_reference():
    problems = validate_document(calling("a"), slug="a")

    assert [(p.path, p.code) for p in problems] == [("/nodes/1/params/flow", "self_reference")]


def test_saving_a_flow_that_reaches_itself_through_another_is_self_reference():
    def reachable(slug):
        return {"c", "a"} if slug == "b" else set()

    problems = validate_document(calling("b"), slug="a", reachable_flows=reachable)

    assert [(p.path, p.code) for p in problems] == [("/nodes/1/params/flow", "self_reference")]


def test_saving_flows_without_a_loop_has_no_self_reference():
    def reachable(slug):
        return {"c"} if slug == "b" else set()

    assert validate_document(calling("b"), slug="a", reachable_flows=reachable) == []
    assert validate_document(calling("b"), slug="a") == []
    assert validate_document(calling("a")) == []  # no slug known: nothing to compare


def test_self_reference_inside_an_iteration_body_is_found_at_save_time():
    inner = body(
        [node("bstart", "start"), subflow("again", "a", {}), end({"o": "{{again.outputs}}"})],
        chain("bstart", "again", "end"),
    )
    doc = flow(
        [
            start({"items": "array"}),
            iteration("each", "{{start.items}}", inner),
            end({"r": "{{each.results}}"}),
        ],
        chain("start", "each", "end"),
    )

    problems = validate_document(doc, slug="a")

    assert ("/nodes/1/params/body/nodes/1/params/flow", "self_reference") in {
        (p.path, p.code) for p in problems
    }


# --- cancellation ---------------------------------------------------------------------------


async def test_cancelling_the_parent_cancels_the_running_child():
    sinks = ChildSinks()
    slow_child = linear(wait("nap", 30), outputs={})
    runner = LocalFlowRunner({"slow": [slow_child]}, sink_for=sinks)
    doc = linear(subflow("sub", "slow", {}), outputs={"out": "{{sub.outputs}}"})
    the_run, sink, task = launch(doc, {}, services=Services(flows=runner), flow="parent")
    await until(lambda: events_of(sinks.events(), "node.started", "nap"))

    began = now()
    the_run.cancel()
    result = await asyncio.wait_for(task, 5)

    assert now() - began == pytest.approx(0.0, abs=0.01)  # the child's 30 s nap was stopped
    assert result.status == "cancelled"
    assert finished(sink.events, "sub")["data"]["status"] == "cancelled"
    assert sink.events[-1]["type"] == "run.finished"
    assert sink.events[-1]["data"]["status"] == "cancelled"
    await until(lambda: events_of(sinks.events(), "run.finished"), timeout=1)
    child_events = sinks.events()
    assert child_events[-1]["type"] == "run.finished"
    assert child_events[-1]["data"]["status"] == "cancelled"
    assert child_events[-1]["data"]["error"]["code"] == "cancelled"
    assert finished(child_events, "nap")["data"]["status"] == "cancelled"


async def test_parent_run_timeout_cancels_the_child():
    sinks = ChildSinks()
    runner = LocalFlowRunner({"slow": [linear(wait("nap", 30), outputs={})]}, sink_for=sinks)
    doc = linear(subflow("sub", "slow", {}), outputs={})
    doc["settings"] = {"timeout_s": 1}

    result, _ = await asyncio.wait_for(run_with(runner, doc), 5)

    assert result.status == "failed"
    assert result.error["code"] == "run_timeout"
    await until(lambda: events_of(sinks.events(), "run.finished"), timeout=1)
    assert events_of(sinks.events(), "run.finished")[0]["data"]["status"] == "cancelled"


# --- steps ------------------------------------------------------------------------------------


def greet_team(max_steps):
    doc = copy.deepcopy(load_sample("greet-team"))
    doc["settings"] = {"max_steps": max_steps}
    return doc


async def test_the_steps_of_child_runs_count_against_the_parents_max_steps():
    # 30 members: the parent's own steps are 3 + 30 × 3 = 93, its children's 30 × 3 = 90.
    members = {"members": [f"m{i}" for i in range(30)]}

    enough, _ = await run_with(LocalFlowRunner({"hello": [load_sample("hello")]}),
                               greet_team(183), members, flow_slug="greet-team")
    runner = LocalFlowRunner({"hello": [load_sample("hello")]})
    short, _ = await run_with(runner, greet_team(100), members, flow_slug="greet-team")

    assert enough.status == "succeeded" and enough.steps == 183
    assert short.status == "failed"
    assert short.error["code"] == "max_steps"
    assert len(runner.children) < 30  # it stopped starting children when the budget ran out
    spent = [child for _, _, child in runner.children if child.status == "failed"]
    assert all(child.error["code"] == "max_steps" for child in spent)
