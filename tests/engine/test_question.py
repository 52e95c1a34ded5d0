"""The `question` node (docs/dsl.md §5.10): pausing, answering, resuming, timeouts, and the
`run.waiting` / `run.resumed` events (§6)."""

import asyncio
import copy
import time
from datetime import UTC, datetime

import pytest

from engine import Checkpoint, Run, compile_plan, validate_document
from engine.questions import Answer, AnswerRefused, check_answer
from engine.testing import CollectingSink

from .runflows import (
    aggregate,
    body,
    chain,
    edge,
    end,
    events_of,
    finished,
    flow,
    iteration,
    launch,
    load_sample,
    node,
    position,
    question,
    run,
    start,
    template,
    unended,
    until,
    wait,
)

RUN_ID = "7a0d6c38-1c9e-4a36-9b35-2f2a3f0f7e11"


def ask_flow(options=("yes", "no"), timeout_s=None, **settings):
    """start(name) -> ask -> one template per option (and `timeout`) -> merge -> end."""
    handles = list(options) + (["timeout"] if timeout_s is not None else [])
    nodes = [
        start({"name": "string"}),
        question("ask", "Greet {{start.name}}?", list(options), timeout_s=timeout_s),
        *[template(f"on_{h}", f"{h}:{{{{ask.answer}}}}") for h in handles],
        aggregate("merge", [f"{{{{on_{h}.text}}}}" for h in handles]),
        end({"result": "{{merge.value}}", "answer": "{{ask.answer}}", "option": "{{ask.option}}"}),
    ]
    edges = [edge("start", "ask")]
    edges += [edge("ask", f"on_{h}", h) for h in handles]
    edges += [edge(f"on_{h}", "merge") for h in handles]
    edges += [edge("merge", "end")]
    return flow(nodes, edges, **settings)


async def first_segment(doc, inputs, **kw):
    """Run until the run stops; return (result, events) with a fixed run id."""
    return await run(doc, inputs, run_id=RUN_ID, **kw)


async def resume(doc, inputs, stored, answers=(), **kw):
    """Continue a paused run from its stored events; return (result, new events)."""
    sink = CollectingSink()
    the_run = Run(
        compile_plan(doc),
        inputs,
        run_id=RUN_ID,
        sink=sink,
        resume=Checkpoint.from_events(stored),
        answers=list(answers),
        **kw,
    )
    result = await the_run.execute()
    return result, sink.events


def parse_utc(text):
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert moment.utcoffset().total_seconds() == 0
    return moment


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


def two_branches(slow_s=0.5, timeout_s=None):
    """start -> ask (yes/no[/timeout]) -> on_<handle> -> end, and start -> slow (wait) -> end."""
    handles = ["yes", "no"] + (["timeout"] if timeout_s is not None else [])
    nodes = [
        start(),
        question("ask", "Go?", ["yes", "no"], timeout_s=timeout_s),
        *[template(f"on_{h}", f"{h}") for h in handles],
        wait("slow", slow_s),
        end({"picked": "{{ask.option}}", "answer": "{{ask.answer}}"}),
    ]
    edges = [edge("start", "ask"), edge("start", "slow"), edge("slow", "end")]
    edges += [edge("ask", f"on_{h}", h) for h in handles]
    edges += [edge(f"on_{h}", "end") for h in handles]
    return flow(nodes, edges)


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
                  resume=Checkpoint.from_events(stored))
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
                  resume=Checkpoint.from_events(stored), answers=[Answer("ask", "ok", "yes")])
    the_run.cancel()

    result = await the_run.execute()

    assert result.status == "cancelled"
    assert finished(sink.events, "ask")["data"]["status"] == "cancelled"
    assert not events_of(sink.events, "run.resumed")
    assert unended(stored + sink.events) == []


# --- timeouts ---------------------------------------------------------------------------------


async def test_timeout_at_is_utc_about_timeout_s_ahead():
    before = datetime.now(UTC)
    result, events = await first_segment(ask_flow(timeout_s=3600), {"name": "Ada"})

    timeout_at = result.waiting[0]["timeout_at"]
    assert isinstance(timeout_at, str)
    moment = parse_utc(timeout_at)
    assert abs((moment - before).total_seconds() - 3600) < 5
    assert events_of(events, "run.waiting")[0]["data"]["timeout_at"] == timeout_at


async def test_timeout_passes_in_process_while_other_work_runs():
    began = time.monotonic()
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
    assert time.monotonic() - began < 2


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
    assert result.elapsed_ms < 500
    assert events[-1]["data"]["elapsed_ms"] < 500


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
    assert 550 <= result.elapsed_ms < 1400  # the 1 s pause would make it at least 1600


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
