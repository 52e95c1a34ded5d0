"""Flows and runners of the question tests (test_question.py, test_question_deadlines.py)."""

from datetime import datetime

from engine import Checkpoint, Run, compile_plan
from engine.testing import CollectingSink, with_loop_clock

from .runflows import (
    aggregate,
    edge,
    end,
    flow,
    question,
    run,
    start,
    template,
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
        services=with_loop_clock(kw.pop("services", None)),
        **kw,
    )
    result = await the_run.execute()
    return result, sink.events


def parse_utc(text):
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert moment.utcoffset().total_seconds() == 0
    return moment


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
