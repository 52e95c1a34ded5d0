"""The question node: pausing a run, answering after a pause, refused answers, several questions
and live answers (docs/dsl.md §5.10)."""

import asyncio
import copy

import pytest

from engine import Checkpoint, Run, compile_plan
from engine.questions import Answer, AnswerRefused, check_answer
from engine.testing import CollectingSink, with_loop_clock

from .question_support import (
    RUN_ID,
    ask_flow,
    first_segment,
    resume,
    two_branches,
)
from .runflows import (
    chain,
    edge,
    end,
    events_of,
    finished,
    flow,
    launch,
    load_sample,
    position,
    question,
    start,
    template,
    until,
)

pytestmark = pytest.mark.virtual_time


# --- pausing ---------------------------------------------------------------------------------


async def test_open_question_pauses_the_run_with_status_waiting():
    result, events = await first_segment(ask_flow(), {"name": "Ada"})

    assert result.status == "waiting"
    assert result.waiting == [
        {
            "node": "ask",
            "question": "Greet Ada?",
            "options": [{"id": "yes", "label": "Yes"}, {"id": "no", "label": "No"}],
            "timeout_at": None,
        }
    ]
    assert result.outputs is None
    assert result.error is None
    waiting = events_of(events, "run.waiting")
    assert len(waiting) == 1
    assert waiting[0]["data"] == result.waiting[0]
    assert waiting[0]["scope"] is None and waiting[0]["item"] is None
    assert not events_of(events, "run.finished")
    assert not events_of(events, "node.finished", "ask")
    assert not events_of(events, "node.started", "on_yes")
    assert result.nodes["start"].status == "succeeded"


async def test_options_without_labels_are_listed_with_their_ids():
    doc = ask_flow()
    doc["nodes"][1]["params"]["options"] = [{"id": "yes"}, {"id": "no", "label": "Nope"}]

    result, _ = await first_segment(doc, {"name": "Ada"})

    options = result.waiting[0]["options"]
    assert [o["id"] for o in options] == ["yes", "no"]
    assert options[1]["label"] == "Nope"


async def test_question_text_is_a_template_over_its_inputs():
    nodes = [
        start({"n": "integer"}),
        question(
            "ask",
            "Count {{count}} of {{start.n}}? {{obj}}",
            inputs={"count": "{{start.n}}", "obj": {"k": "{{start.n}}"}},
        ),
        end({"a": "{{ask.answer}}"}),
    ]
    doc = flow(nodes, chain("start", "ask", "end"))

    result, events = await first_segment(doc, {"n": 3})

    assert result.waiting[0]["question"] == 'Count 3 of 3? {"k":3}'
    assert result.waiting[0]["options"] == []
    assert events_of(events, "node.started", "ask")[0]["data"]["inputs"] == {
        "count": 3,
        "obj": {"k": 3},
    }


# --- answering after a pause -------------------------------------------------------------------


async def test_resuming_with_an_answer_emits_run_resumed_and_takes_its_branch():
    doc = ask_flow()
    _, stored = await first_segment(doc, {"name": "Ada"})

    result, events = await resume(
        doc, {"name": "Ada"}, stored, [Answer("ask", "sure", "yes", "ada")]
    )

    assert result.status == "succeeded"
    assert result.outputs == {"result": "yes:sure", "answer": "sure", "option": "yes"}
    resumed = events_of(events, "run.resumed")
    assert len(resumed) == 1
    assert {k: resumed[0]["data"][k] for k in ("node", "answer", "option", "by")} == {
        "node": "ask",
        "answer": "sure",
        "option": "yes",
        "by": "ada",
    }
    assert events.index(resumed[0]) == 0
    assert finished(events, "ask")["data"]["status"] == "succeeded"
    assert finished(events, "ask")["data"]["outputs"] == {"answer": "sure", "option": "yes"}
    assert events_of(events, "node.skipped", "on_no")
    assert not events_of(events, "node.started", "on_no")
    assert result.nodes["on_no"].status == "skipped"
    assert result.nodes["ask"].outputs == {"answer": "sure", "option": "yes"}
    assert events[-1]["type"] == "run.finished"
    assert events[-1]["data"]["status"] == "succeeded"


async def test_other_option_takes_the_other_branch():
    doc = ask_flow()
    _, stored = await first_segment(doc, {"name": "Ada"})

    result, events = await resume(doc, {"name": "Ada"}, stored, [Answer("ask", "nah", "no")])

    assert result.outputs == {"result": "no:nah", "answer": "nah", "option": "no"}
    assert events_of(events, "node.skipped", "on_yes")
    assert events_of(events, "run.resumed")[0]["data"]["by"] is None


async def test_seq_continues_without_gap_across_the_pause():
    doc = ask_flow()
    _, stored = await first_segment(doc, {"name": "Ada"})

    _, events = await resume(doc, {"name": "Ada"}, stored, [Answer("ask", "ok", "yes")])

    everything = stored + events
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    assert events[0]["seq"] == stored[-1]["seq"] + 1
    assert len(events_of(everything, "run.started")) == 1
    assert len(events_of(everything, "run.finished")) == 1
    assert {e["run"] for e in everything} == {RUN_ID}
    # Nodes that finished before the pause are not run again.
    assert not events_of(events, "node.started", "start")


def approval_without_llm():
    doc = copy.deepcopy(load_sample("approval"))
    index = next(i for i, n in enumerate(doc["nodes"]) if n["id"] == "draft")
    doc["nodes"][index] = template("draft", "Reply to: {{start.request}}")
    return doc


async def test_approval_sample_answered_yes_sends_the_draft():
    doc = approval_without_llm()
    inputs = {"request": "refund please"}
    first, stored = await first_segment(doc, inputs)

    assert first.status == "waiting"
    assert first.waiting[0]["question"] == "Send this reply? Reply to: refund please"
    assert first.waiting[0]["options"] == [
        {"id": "yes", "label": "Send"},
        {"id": "no", "label": "Discard"},
    ]
    result, _ = await resume(doc, inputs, stored, [Answer("ask", "go", "yes", "ada")])

    assert result.status == "succeeded"
    assert result.outputs["result"].startswith("Sent: ")
    assert result.outputs == {"result": "Sent: Reply to: refund please"}


async def test_approval_sample_answered_no_discards_with_the_answer():
    doc = approval_without_llm()
    inputs = {"request": "refund please"}
    _, stored = await first_segment(doc, inputs)

    result, _ = await resume(doc, inputs, stored, [Answer("ask", "too curt", "no", "ada")])

    assert result.status == "succeeded"
    assert result.outputs == {"result": "Discarded (too curt)"}


async def test_question_without_options_takes_free_text_and_option_null():
    nodes = [
        start(),
        question("ask", "Your name?"),
        template("hi", "Hi {{ask.answer}}"),
        end({"text": "{{hi.text}}", "option": "{{ask.option}}"}),
    ]
    doc = flow(nodes, chain("start", "ask", "hi", "end"))
    first, stored = await first_segment(doc, {})
    assert first.status == "waiting"

    result, events = await resume(doc, {}, stored, [Answer("ask", "Lin", None, "lin")])

    assert result.status == "succeeded"
    assert result.outputs == {"text": "Hi Lin", "option": None}
    assert finished(events, "ask")["data"]["outputs"] == {"answer": "Lin", "option": None}


# --- refused answers ----------------------------------------------------------------------------


@pytest.mark.parametrize(("answer", "option"), [("x", "maybe"), ("x", None), ("x", "YES")])
async def test_answer_must_name_one_of_the_options(answer, option):
    doc = ask_flow()
    _, stored = await first_segment(doc, {"name": "Ada"})

    with pytest.raises(AnswerRefused) as refused:
        await resume(doc, {"name": "Ada"}, stored, [Answer("ask", answer, option)])

    assert refused.value.code == "invalid_answer"


async def test_option_is_refused_when_the_question_has_none():
    nodes = [start(), question("ask", "Your name?"), end({"a": "{{ask.answer}}"})]
    doc = flow(nodes, chain("start", "ask", "end"))
    _, stored = await first_segment(doc, {})

    with pytest.raises(AnswerRefused) as refused:
        await resume(doc, {}, stored, [Answer("ask", "Lin", "yes")])

    assert refused.value.code == "invalid_answer"
    with pytest.raises(AnswerRefused) as direct:
        check_answer(compile_plan(doc), "ask", "Lin", "yes")
    assert direct.value.code == "invalid_answer"


async def test_check_answer_accepts_fitting_answers_and_refuses_others():
    plan = compile_plan(ask_flow())

    check_answer(plan, "ask", "fine", "yes")
    check_answer(plan, "ask", None, "no")
    for option in ("maybe", None):
        with pytest.raises(AnswerRefused) as refused:
            check_answer(plan, "ask", "fine", option)
        assert refused.value.code == "invalid_answer"


async def test_refused_answer_leaves_the_run_paused():
    doc = ask_flow()
    _, stored = await first_segment(doc, {"name": "Ada"})
    sink = CollectingSink()
    bad = Run(
        compile_plan(doc),
        {"name": "Ada"},
        run_id=RUN_ID,
        sink=sink,
        resume=Checkpoint.from_events(stored),
        answers=[Answer("ask", "x", "maybe")],
        services=with_loop_clock(None),
    )

    with pytest.raises(AnswerRefused):
        await bad.execute()

    assert sink.events == []
    result, _ = await resume(doc, {"name": "Ada"}, stored, [Answer("ask", "ok", "yes")])
    assert result.status == "succeeded"


async def test_answering_a_node_that_is_not_waiting_is_refused():
    doc = ask_flow()
    _, stored = await first_segment(doc, {"name": "Ada"})

    for target in ("on_yes", "start", "nosuch"):
        with pytest.raises(AnswerRefused) as refused:
            await resume(doc, {"name": "Ada"}, stored, [Answer(target, "x", "yes")])
        assert refused.value.code == "not_waiting", target


async def test_answering_an_already_answered_question_is_refused():
    doc = ask_flow()
    _, stored = await first_segment(doc, {"name": "Ada"})
    _, more = await resume(doc, {"name": "Ada"}, stored, [Answer("ask", "ok", "yes")])

    with pytest.raises(AnswerRefused) as refused:
        await resume(doc, {"name": "Ada"}, stored + more, [Answer("ask", "again", "no")])

    assert refused.value.code == "not_waiting"


async def test_live_answer_to_a_node_that_is_not_waiting_is_refused():
    doc = two_branches()
    the_run, sink, task = launch(doc, {})
    await until(lambda: events_of(sink.events, "run.waiting"))

    with pytest.raises(AnswerRefused) as refused:
        the_run.answer("slow", "x", None)
    assert refused.value.code == "not_waiting"
    with pytest.raises(AnswerRefused) as invalid:
        the_run.answer("ask", "x", "maybe")
    assert invalid.value.code == "invalid_answer"

    the_run.answer("ask", "ok", "yes")
    result = await asyncio.wait_for(task, 5)
    assert result.status == "succeeded"


# --- several questions; live answers -----------------------------------------------------------


async def test_two_open_questions_are_answered_one_after_another():
    nodes = [
        start(),
        question("q1", "First?", ["yes", "no"]),
        question("q2", "Second?"),
        end({"one": "{{q1.answer}}", "two": "{{q2.answer}}"}),
    ]
    edges = [
        edge("start", "q1"),
        edge("start", "q2"),
        edge("q1", "end", "yes"),
        edge("q1", "end", "no"),
        edge("q2", "end"),
    ]
    doc = flow(nodes, edges)

    first, stored = await first_segment(doc, {})

    assert first.status == "waiting"
    assert {q["node"] for q in first.waiting} == {"q1", "q2"}
    assert {e["data"]["node"] for e in events_of(stored, "run.waiting")} == {"q1", "q2"}

    second, more = await resume(doc, {}, stored, [Answer("q1", "a1", "yes")])

    assert second.status == "waiting"
    assert [q["node"] for q in second.waiting] == ["q2"]
    assert [e["data"]["node"] for e in events_of(more, "run.resumed")] == ["q1"]
    assert not events_of(more, "run.finished")

    stored += more
    third, last = await resume(doc, {}, stored, [Answer("q2", "a2")])

    assert third.status == "succeeded"
    assert third.outputs == {"one": "a1", "two": "a2"}
    everything = stored + last
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    assert len(events_of(everything, "run.finished")) == 1


async def test_both_questions_may_be_answered_in_one_resume():
    nodes = [
        start(),
        question("q1", "First?"),
        question("q2", "Second?"),
        end({"one": "{{q1.answer}}", "two": "{{q2.answer}}"}),
    ]
    edges = [edge("start", "q1"), edge("start", "q2"), edge("q1", "end"), edge("q2", "end")]
    doc = flow(nodes, edges)
    _, stored = await first_segment(doc, {})

    result, events = await resume(doc, {}, stored, [Answer("q1", "a1"), Answer("q2", "a2")])

    assert result.status == "succeeded"
    assert result.outputs == {"one": "a1", "two": "a2"}
    assert len(events_of(events, "run.resumed")) == 2


async def test_live_answer_continues_the_branch_without_pausing():
    the_run, sink, task = launch(two_branches(slow_s=0.5), {})
    await until(lambda: events_of(sink.events, "run.waiting"))
    assert not events_of(sink.events, "node.finished", "slow")

    the_run.answer("ask", "ok", "yes", "ada")
    await until(lambda: events_of(sink.events, "node.finished", "on_yes"))
    assert not events_of(sink.events, "node.finished", "slow")  # still running
    result = await asyncio.wait_for(task, 5)

    assert result.status == "succeeded"
    assert result.outputs == {"picked": "yes", "answer": "ok"}
    assert result.waiting == []
    events = sink.events
    assert position(events, "node.finished", "on_yes") < position(events, "node.finished", "slow")
    assert events_of(events, "node.skipped", "on_no")
    resumed = events_of(events, "run.resumed")
    assert [(e["data"]["node"], e["data"]["by"]) for e in resumed] == [("ask", "ada")]
    assert [e["type"] for e in events].count("run.finished") == 1
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
