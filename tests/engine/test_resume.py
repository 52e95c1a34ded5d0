"""Resuming an interrupted run from its stored events (docs/architecture.md: node results are
checkpoints; after a crash the run continues from the last finished nodes).

    from engine import Checkpoint
    Run(plan, inputs, resume=Checkpoint.from_events(events))

where `events` are the stored events of an interrupted run.

An interruption is simulated the way a dying process looks to the engine: the asyncio task
running `run.execute()` is cancelled from outside (`task.cancel()`, not `run.cancel()`), so
the run must NOT emit `run.finished`; the events collected so far are what was stored.
"""

import asyncio
import contextlib
import uuid

import pytest

import engine
from engine import Run, compile_plan
from engine.testing import CollectingSink, with_loop_clock

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
    run,
    start,
    template,
    unended,
    until,
    wait,
)

Checkpoint = engine.Checkpoint

pytestmark = pytest.mark.virtual_time


async def interrupt(doc, inputs, run_id, when):
    """Run `doc` until `when(events)` holds, then kill its task; return the stored events."""
    _, sink, task = launch(doc, inputs, run_id=run_id)
    await until(lambda: when(sink.events))
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    stored = list(sink.events)
    await asyncio.sleep(0.1)
    assert len(sink.events) == len(stored), "an interrupted run kept emitting events"
    assert not events_of(stored, "run.finished"), "an interruption must not finish the run"
    return stored


async def resume(doc, inputs, run_id, stored):
    sink = CollectingSink()
    resumed = Run(
        compile_plan(doc),
        inputs,
        run_id=run_id,
        sink=sink,
        resume=Checkpoint.from_events(stored),
        services=with_loop_clock(None),
    )
    result = await asyncio.wait_for(resumed.execute(), timeout=10)
    return result, sink.events


def started(node):
    return lambda events: bool(events_of(events, "node.started", node))


def finished_node(node):
    return lambda events: bool(events_of(events, "node.finished", node))


def linear_flow():
    return linear(
        template("a", "A:{{start.name}}"),
        wait("w", 0.2),
        template("b", "{{a.text}}!"),
        inputs={"name": "string"},
        outputs={"first": "{{a.text}}", "second": "{{b.text}}"},
        answer="{{second}}",
    )


def parallel_flow():
    nodes = [
        start({"name": "string"}),
        wait("quick", 0.01),
        wait("slow", 0.3),
        template("join", "{{start.name}} joined"),
        end({"join": "{{join.text}}"}),
    ]
    edges = [
        edge("start", "quick"),
        edge("start", "slow"),
        edge("quick", "join"),
        edge("slow", "join"),
        edge("join", "end"),
    ]
    return flow(nodes, edges)


def branching_flow():
    nodes = [
        start({"name": "string"}),
        if_else("check", case("yes", cond("{{start.name}}", "eq", "Ada"))),
        template("y", "yes {{start.name}}"),
        template("z", "no"),
        wait("w", 0.2),
        end({"y": "{{y.text}}", "z": "{{z.text}}", "branch": "{{check.branch}}"}),
    ]
    edges = [
        edge("start", "check"),
        edge("check", "y", "yes"),
        edge("check", "z", "else"),
        edge("y", "w"),
        edge("w", "end"),
        edge("z", "end"),
    ]
    return flow(nodes, edges)


INPUTS = {"name": "Ada"}


async def test_interrupted_run_stores_no_run_finished():
    stored = await interrupt(linear_flow(), INPUTS, str(uuid.uuid4()), started("w"))
    assert stored[0]["type"] == "run.started"
    assert [e["seq"] for e in stored] == list(range(1, len(stored) + 1))


async def test_resumed_run_continues_seq_after_the_last_stored_event():
    run_id = str(uuid.uuid4())
    stored = await interrupt(linear_flow(), INPUTS, run_id, started("w"))
    result, new = await resume(linear_flow(), INPUTS, run_id, stored)
    assert result.status == "succeeded"
    last = stored[-1]["seq"]
    assert [e["seq"] for e in new] == list(range(last + 1, last + 1 + len(new)))
    assert new[-1]["type"] == "run.finished"
    assert {e["run"] for e in new} == {run_id}


async def test_resumed_run_does_not_rerun_finished_nodes():
    run_id = str(uuid.uuid4())
    stored = await interrupt(linear_flow(), INPUTS, run_id, started("w"))
    assert events_of(stored, "node.finished", "a")
    _, new = await resume(linear_flow(), INPUTS, run_id, stored)
    assert not events_of(new, "node.started", "start")
    assert not events_of(new, "node.started", "a")
    assert not events_of(new, "node.finished", "a")


async def test_node_running_at_the_interruption_runs_again():
    run_id = str(uuid.uuid4())
    stored = await interrupt(linear_flow(), INPUTS, run_id, started("w"))
    assert not events_of(stored, "node.finished", "w")
    result, new = await resume(linear_flow(), INPUTS, run_id, stored)
    assert len(events_of(new, "node.started", "w")) == 1
    assert events_of(new, "node.finished", "w")[0]["data"]["status"] == "succeeded"
    assert result.nodes["w"].status == "succeeded"


async def test_resumed_run_ends_with_the_outputs_of_an_uninterrupted_run():
    expected, _ = await run(linear_flow(), INPUTS)
    run_id = str(uuid.uuid4())
    stored = await interrupt(linear_flow(), INPUTS, run_id, started("w"))
    result, new = await resume(linear_flow(), INPUTS, run_id, stored)
    assert result.status == "succeeded"
    assert result.outputs == expected.outputs == {"first": "A:Ada", "second": "A:Ada!"}
    assert result.answer == expected.answer == "A:Ada!"
    assert new[-1]["data"]["outputs"] == expected.outputs


async def test_parallel_branch_that_finished_is_kept_and_the_running_one_reruns():
    expected, _ = await run(parallel_flow(), INPUTS)
    run_id = str(uuid.uuid4())
    stored = await interrupt(
        parallel_flow(),
        INPUTS,
        run_id,
        lambda events: finished_node("quick")(events) and started("slow")(events),
    )
    assert not events_of(stored, "node.finished", "slow")
    result, new = await resume(parallel_flow(), INPUTS, run_id, stored)
    assert result.status == "succeeded"
    assert result.outputs == expected.outputs == {"join": "Ada joined"}
    assert not events_of(new, "node.started", "quick")
    assert len(events_of(new, "node.started", "slow")) == 1
    assert len(events_of(new, "node.started", "join")) == 1


async def test_branch_decisions_and_skips_survive_the_interruption():
    expected, _ = await run(branching_flow(), INPUTS)
    run_id = str(uuid.uuid4())
    stored = await interrupt(branching_flow(), INPUTS, run_id, started("w"))
    assert events_of(stored, "node.skipped", "z")
    result, new = await resume(branching_flow(), INPUTS, run_id, stored)
    assert result.status == "succeeded"
    assert result.outputs == expected.outputs == {"y": "yes Ada", "z": None, "branch": "yes"}
    assert not events_of(new, "node.started", "check")
    assert not events_of(new, "node.started", "y")
    assert not events_of(new, "node.skipped", "z")
    combined = stored + new
    for node in ["start", "check", "y", "z", "w", "end"]:
        ends = [
            e
            for e in combined
            if e["type"] in ("node.finished", "node.skipped") and e["data"]["node"] == node
        ]
        assert len(ends) == 1, node


# --- a resumed run that ends before an interrupted node runs again ---------------------------


async def test_cancel_requested_before_resuming_ends_the_interrupted_node_cancelled():
    # The platform cancels a run nobody executes by resuming it with the cancel requested.
    doc = linear(wait("w", 5, inputs={"who": "{{start.name}}"}), inputs={"name": "string"})
    run_id = str(uuid.uuid4())
    stored = await interrupt(doc, INPUTS, run_id, started("w"))
    sink = CollectingSink()
    resumed = Run(compile_plan(doc), INPUTS, run_id=run_id, sink=sink,
                  resume=Checkpoint.from_events(stored), services=with_loop_clock(None))
    resumed.cancel()

    result = await asyncio.wait_for(resumed.execute(), timeout=10)

    assert result.status == "cancelled"
    assert [e["type"] for e in sink.events] == ["node.finished", "run.finished"]
    done = finished(sink.events, "w")["data"]
    assert done["status"] == "cancelled"
    assert done["attempts"] == 1
    assert result.nodes["w"].status == "cancelled"
    assert result.nodes["w"].inputs == {"who": "Ada"}
    assert unended(stored + sink.events) == []


async def test_interrupted_node_that_cannot_run_again_ends_cancelled():
    # start, a and w spend the 3 steps before the interruption; w's rerun finds none left.
    doc = linear_flow()
    doc["settings"] = {"max_steps": 3}
    run_id = str(uuid.uuid4())
    stored = await interrupt(doc, INPUTS, run_id, started("w"))

    result, new = await resume(doc, INPUTS, run_id, stored)

    assert result.error["code"] == "max_steps"
    assert not events_of(new, "node.started", "w")
    assert finished(new, "w")["data"]["status"] == "cancelled"
    assert result.nodes["w"].status == "cancelled"
    assert unended(stored + new) == []


def iteration_flow(on_item_error="fail"):
    each = body([{"id": "item_start", "type": "start"}, wait("slow", 0.1),
                 template("say", "#{{index}} {{item}}"), end({"text": "{{say.text}}"})],
                chain("item_start", "slow", "say", "end"))
    nodes = [start({"names": "array"}),
             iteration("each", "{{start.names}}", each, concurrency=3,
                       on_item_error=on_item_error),
             end({"results": "{{each.results}}"})]
    return flow(nodes, chain("start", "each", "end"))


def body_starts(events):
    return {(e["item"], e["data"]["node"]) for e in events
            if e["type"] == "node.started" and e.get("scope") == "each"}


def body_ends(events):
    return {(e["item"], e["data"]["node"]) for e in events
            if e["type"] == "node.finished" and e.get("scope") == "each"}


async def test_a_resumed_iteration_runs_only_the_items_and_body_nodes_that_had_not_finished():
    names = [f"n{i}" for i in range(9)]
    doc = iteration_flow()
    run_id = str(uuid.uuid4())
    stored = await interrupt(doc, {"names": names}, run_id,
                             lambda events: len({i for i, node in body_ends(events)
                                                 if node == "end"}) >= 5)
    done_before = body_ends(stored)

    result, new = await resume(doc, {"names": names}, run_id, stored)

    assert result.status == "succeeded"
    assert result.outputs == {"results": [{"text": f"#{i} n{i}"} for i in range(9)]}
    assert not body_starts(new) & done_before  # nothing that had finished ran again
    items_done = {i for i, node in done_before if node == "end"}
    assert {i for i, _ in body_starts(new)} == set(range(9)) - items_done
    assert unended(stored + new) == []


async def test_a_failed_item_of_a_resumed_iteration_keeps_its_failure_without_running_again():
    names = ["a", "b", "c", "d", "e"]
    doc = iteration_flow(on_item_error="null")
    doc["nodes"][1]["params"]["body"]["nodes"][2]["params"]["template"] = \
        "{{item.name}}"  # a bad_path for an item that is a string: every item fails
    run_id = str(uuid.uuid4())
    stored = await interrupt(doc, {"names": names}, run_id,
                             lambda events: len({i for i, node in body_ends(events)
                                                 if node == "say"}) >= 2)
    failed_items = {e["item"] for e in stored if e["type"] == "node.finished"
                    and e.get("scope") == "each" and e["data"]["status"] == "failed"}

    result, new = await resume(doc, {"names": names}, run_id, stored)

    assert result.status == "succeeded"
    assert failed_items and not {i for i, _ in body_starts(new)} & failed_items
    assert result.outputs == {"results": [None] * 5}
