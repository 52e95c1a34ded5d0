"""Questions over time: a waiting question among the run's nodes, a run that ends while one is
open, deadlines, and paused time not counted as executing time (docs/dsl.md §5.10, §6)."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from engine import Checkpoint, Run, compile_plan, validate_document
from engine.questions import Answer, AnswerRefused
from engine.testing import VIRTUAL_EPOCH, CollectingSink, with_loop_clock

from .question_support import (
    RUN_ID,
    ask_flow,
    first_segment,
    parse_utc,
    resume,
    two_branches,
)
from .runflows import (
    body,
    chain,
    edge,
    end,
    events_of,
    finished,
    flow,
    iteration,
    launch,
    node,
    now,
    position,
    question,
    run,
    start,
    template,
    unended,
    until,
    wait,
)

pytestmark = pytest.mark.virtual_time


# --- a waiting question in the run's nodes ---------------------------------------------------


async def test_open_question_is_in_the_nodes_with_status_waiting():
    result, events = await first_segment(ask_flow(), {"name": "Ada"})

    ask = result.nodes["ask"]
    assert ask.status == "waiting"
    assert ask.type == "question"
    assert ask.attempts == 1
    assert ask.inputs == {}
    assert ask.outputs is None and ask.error is None
    assert ask.started_at == events_of(events, "node.started", "ask")[0]["ts"]
    assert ask.finished_at is None


async def test_question_still_open_after_a_resume_is_in_the_nodes_as_waiting():
    nodes = [
        start({"n": "integer"}),
        question("q1", "First?", inputs={"n": "{{start.n}}"}),
        question("q2", "Second?"),
        end({"one": "{{q1.answer}}", "two": "{{q2.answer}}"}),
    ]
    edges = [edge("start", "q1"), edge("start", "q2"), edge("q1", "end"), edge("q2", "end")]
    doc = flow(nodes, edges)
    first, stored = await first_segment(doc, {"n": 3})
    assert first.nodes["q1"].inputs == {"n": 3}

    second, _ = await resume(doc, {"n": 3}, stored, [Answer("q2", "a2")])

    assert second.status == "waiting"
    assert second.nodes["q2"].status == "succeeded"
    assert second.nodes["q1"].status == "waiting"
    assert second.nodes["q1"].inputs == {"n": 3}
    assert second.nodes["q1"].started_at == events_of(stored, "node.started", "q1")[0]["ts"]


# --- a run that ends while a question is open --------------------------------------------------


async def test_run_failing_while_a_question_is_open_ends_the_question_cancelled():
    # q waits for an answer; meanwhile w, then t, which fails: a number has no key "x".
    nodes = [
        start({"s": "any"}),
        question("q", "Ok?", inputs={"s": "{{start.s}}"}),
        wait("w", "{{start.s}}"),
        template("t", "{{start.s.x}}"),
        end({"a": "{{q.answer}}", "t": "{{t.text}}"}),
    ]
    edges = [edge("start", "q"), edge("q", "end"), edge("start", "w"), edge("w", "t"),
             edge("t", "end")]

    result, events = await run(flow(nodes, edges), {"s": 0.1})

    assert result.status == "failed"
    assert result.error["code"] == "bad_path"
    done = finished(events, "q")["data"]
    assert done["status"] == "cancelled"
    assert done["error"]["code"] == "cancelled"
    assert position(events, "node.finished", "q") < position(events, "run.finished")
    assert result.waiting == []
    assert result.nodes["q"].status == "cancelled"
    assert result.nodes["q"].inputs == {"s": 0.1}
    assert unended(events) == []


async def test_cancel_while_a_question_is_open_ends_the_question_cancelled():
    the_run, sink, task = launch(two_branches(slow_s=5), {})
    await until(lambda: events_of(sink.events, "run.waiting"))

    the_run.cancel()
    result = await asyncio.wait_for(task, 2)

    assert result.status == "cancelled"
    events = sink.events
    for name in ("ask", "slow"):
        assert finished(events, name)["data"]["status"] == "cancelled"
        assert position(events, "node.finished", name) < position(events, "run.finished")
    assert result.waiting == []
    assert result.nodes["ask"].status == "cancelled"
    assert unended(events) == []


async def test_run_timeout_while_a_question_is_open_ends_the_question_cancelled():
    doc = two_branches(slow_s=5)
    doc["settings"] = {"timeout_s": 1}

    result, events = await asyncio.wait_for(run(doc, {}), 3)

    assert result.error["code"] == "run_timeout"
    assert finished(events, "ask")["data"]["status"] == "cancelled"
    assert result.waiting == []
    assert unended(events) == []


async def test_cancel_requested_before_resuming_ends_the_open_question_cancelled():
    # The platform cancels a paused run by resuming it with the cancel already requested.
    doc = ask_flow()
    _, stored = await first_segment(doc, {"name": "Ada"})
    sink = CollectingSink()
    the_run = Run(compile_plan(doc), {"name": "Ada"}, run_id=RUN_ID, sink=sink,
                  resume=Checkpoint.from_events(stored), services=with_loop_clock(None))
    the_run.cancel()

    result = await the_run.execute()

    assert result.status == "cancelled"
    events = sink.events
    assert [e["type"] for e in events] == ["node.finished", "run.finished"]
    done = finished(events, "ask")["data"]
    assert done["status"] == "cancelled"
    assert done["attempts"] == 1
    assert events[-1]["data"]["status"] == "cancelled"
    assert result.waiting == []
    assert result.nodes["ask"].status == "cancelled"
    assert result.nodes["ask"].inputs == {}
    everything = stored + events
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    assert unended(everything) == []


async def test_cancel_requested_before_resuming_with_an_answer_still_cancels():
    doc = ask_flow()
    _, stored = await first_segment(doc, {"name": "Ada"})
    sink = CollectingSink()
    the_run = Run(compile_plan(doc), {"name": "Ada"}, run_id=RUN_ID, sink=sink,
                  resume=Checkpoint.from_events(stored), answers=[Answer("ask", "ok", "yes")],
                  services=with_loop_clock(None))
    the_run.cancel()

    result = await the_run.execute()

    assert result.status == "cancelled"
    assert finished(sink.events, "ask")["data"]["status"] == "cancelled"
    assert not events_of(sink.events, "run.resumed")
    assert unended(stored + sink.events) == []


# --- timeouts ---------------------------------------------------------------------------------


async def test_timeout_at_is_utc_timeout_s_after_the_question_opened():
    opened = datetime.fromtimestamp(VIRTUAL_EPOCH + now(), UTC)  # no time passes before it
    result, events = await first_segment(ask_flow(timeout_s=3600), {"name": "Ada"})

    timeout_at = result.waiting[0]["timeout_at"]
    assert isinstance(timeout_at, str) and timeout_at.endswith("Z")
    assert parse_utc(timeout_at) == opened + timedelta(seconds=3600)
    assert events_of(events, "run.waiting")[0]["data"]["timeout_at"] == timeout_at


async def test_timeout_passes_in_process_while_other_work_runs():
    began = now()
    result, events = await asyncio.wait_for(run(two_branches(slow_s=0.5, timeout_s=0.2), {}), 5)

    assert result.status == "succeeded"
    assert result.outputs == {"picked": "timeout", "answer": None}
    done = finished(events, "ask")
    assert done["data"]["outputs"] == {"answer": None, "option": "timeout"}
    assert events_of(events, "node.finished", "on_timeout")
    assert events_of(events, "node.skipped", "on_yes")
    assert events_of(events, "node.skipped", "on_no")
    # The timeout fired before the other branch finished.
    assert position(events, "node.finished", "ask") < position(events, "node.finished", "slow")
    assert now() - began == pytest.approx(0.5)  # the run ended with the slow branch


async def test_timeout_after_a_pause_is_taken_when_resumed_without_answers():
    doc = ask_flow(timeout_s=0.2)
    first, stored = await first_segment(doc, {"name": "Ada"})
    assert first.status == "waiting"
    assert first.waiting[0]["timeout_at"] is not None

    await asyncio.sleep(0.3)
    result, events = await resume(doc, {"name": "Ada"}, stored)

    assert result.status == "succeeded"
    assert result.outputs == {"result": "timeout:", "answer": None, "option": "timeout"}
    assert finished(events, "ask")["data"]["outputs"] == {"answer": None, "option": "timeout"}
    resumed = events_of(events, "run.resumed")
    assert [(e["data"]["node"], e["data"]["option"], e["data"]["answer"]) for e in resumed] == [
        ("ask", "timeout", None)
    ]


async def test_resumed_before_the_deadline_without_answers_keeps_waiting():
    doc = ask_flow(timeout_s=3600)
    _, stored = await first_segment(doc, {"name": "Ada"})

    result, events = await resume(doc, {"name": "Ada"}, stored)

    assert result.status == "waiting"
    assert [q["node"] for q in result.waiting] == ["ask"]
    assert not events_of(events, "run.finished")
    assert not events_of(events, "run.resumed")


async def test_answer_before_the_deadline_wins_over_the_timeout():
    doc = ask_flow(timeout_s=3600)
    _, stored = await first_segment(doc, {"name": "Ada"})

    result, _ = await resume(doc, {"name": "Ada"}, stored, [Answer("ask", "ok", "no")])

    assert result.outputs["option"] == "no"


async def test_timeout_is_not_an_option_a_person_can_answer_with():
    doc = ask_flow(timeout_s=3600)
    _, stored = await first_segment(doc, {"name": "Ada"})

    with pytest.raises(AnswerRefused) as refused:
        await resume(doc, {"name": "Ada"}, stored, [Answer("ask", None, "timeout")])

    assert refused.value.code == "invalid_answer"


# --- waiting time is not executing time --------------------------------------------------------


async def test_waiting_time_does_not_count_toward_elapsed_ms():
    doc = ask_flow()
    _, stored = await first_segment(doc, {"name": "Ada"})

    await asyncio.sleep(1)
    result, events = await resume(doc, {"name": "Ada"}, stored, [Answer("ask", "ok", "yes")])

    assert result.status == "succeeded"
    assert result.elapsed_ms == 0  # nothing executed for any time: the 1 s paused is not counted
    assert events[-1]["data"]["elapsed_ms"] == 0


async def test_run_timeout_ignores_time_spent_paused():
    doc = ask_flow()
    doc["settings"] = {"timeout_s": 1}
    _, stored = await first_segment(doc, {"name": "Ada"})

    await asyncio.sleep(1.5)
    result, _ = await resume(doc, {"name": "Ada"}, stored, [Answer("ask", "ok", "yes")])

    assert result.status == "succeeded"
    assert result.outputs["result"] == "yes:ok"


async def test_executing_time_is_summed_over_segments():
    # start -> slow (0.3 s) -> ask -> after (0.3 s) -> end: elapsed counts both waits.
    nodes = [
        start(),
        wait("before", 0.3),
        question("ask", "Go?"),
        wait("after", 0.3),
        end({"a": "{{ask.answer}}"}),
    ]
    doc = flow(nodes, chain("start", "before", "ask", "after", "end"))
    _, stored = await first_segment(doc, {})

    await asyncio.sleep(1)
    result, _ = await resume(doc, {}, stored, [Answer("ask", "ok")])

    assert result.status == "succeeded"
    assert result.elapsed_ms == pytest.approx(600)  # both 0.3 s waits; not the 1 s pause


# --- validation -------------------------------------------------------------------------------


def test_question_inside_an_iteration_body_is_not_allowed():
    inner = body(
        [node("bstart", "start"), question("ask", "Item {{item}}?"), end({"a": "{{ask.answer}}"})],
        chain("bstart", "ask", "end"),
    )
    doc = flow(
        [
            start({"items": "array"}),
            iteration("each", "{{start.items}}", inner),
            end({"r": "{{each.results}}"}),
        ],
        chain("start", "each", "end"),
    )

    problems = validate_document(doc)

    assert ("/nodes/1/params/body/nodes/1/type", "not_allowed") in {
        (p.path, p.code) for p in problems
    }


def test_question_edges_must_use_its_handles():
    doc = ask_flow()
    doc["edges"][1].pop("branch")  # ask -> on_yes without a branch
    problems = validate_document(doc)
    assert "missing_branch" in {p.code for p in problems}

    timed = ask_flow(timeout_s=60)
    assert validate_document(timed) == []
    untimed = ask_flow()
    untimed["edges"].append(edge("ask", "merge", "timeout"))
    assert "unknown_branch" in {p.code for p in validate_document(untimed)}


def test_question_has_no_node_timeout():
    doc = ask_flow()
    doc["nodes"][1]["timeout_s"] = 5
    assert ("/nodes/1/timeout_s", "not_allowed") in {
        (p.path, p.code) for p in validate_document(doc)
    }
