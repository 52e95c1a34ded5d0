"""The `code` node through the real engine and a real sandbox (docs/dsl.md §5.6, docs/sandbox.md)."""

import asyncio
import time

import pytest

from engine.ports import CodeLimits, Services

from .runflows import (
    edge,
    end,
    events_of,
    finished,
    flow,
    launch,
    linear,
    load_sample,
    node,
    run,
    start,
    until_event,
)
from .sandboxes import SMALL, descendants, make_sandbox, running, still_works


@pytest.fixture
async def sandbox():
    sandbox = await make_sandbox("auto")
    yield sandbox
    await sandbox.close()


@pytest.fixture
def services(sandbox):
    return Services(sandbox=sandbox, code_limits=SMALL)


def code(id, source, outputs, inputs=None, **kw):
    return node(id, "code", params={"code": source}, outputs=outputs, inputs=inputs or {}, **kw)


LOOP = "def main():\n    while True:\n        pass"


async def test_a_code_node_returns_what_main_returned_and_records_its_prints(services):
    doc = linear(code("shout", "def main(text):\n    print('shouting', text)\n"
                               "    return {'loud': text.upper()}",
                      {"loud": {"type": "string"}}, {"text": "{{start.text}}"}),
                 inputs={"text": "string"}, outputs={"loud": "{{shout.loud}}"})
    result, events = await run(doc, {"text": "hey"}, services=services)
    assert result.status == "succeeded"
    assert result.outputs == {"loud": "HEY"}
    assert result.nodes["shout"].logs == "shouting hey\n"
    assert finished(events, "shout")["data"]["logs"] == "shouting hey\n"


async def test_an_exception_fails_the_node_with_the_users_traceback(services):
    doc = linear(code("boom", "def main():\n    raise RuntimeError('kaput')",
                      {"x": {"type": "integer"}}))
    result, _ = await run(doc, services=services)
    assert result.status == "failed"
    error = result.error
    assert (error["code"], error["message"], error["node"]) == (
        "code_error", "RuntimeError: kaput", "boom")
    assert error["details"]["traceback"] == (
        'Traceback (most recent call last):\n  File "<code>", line 2, in main\n'
        "    raise RuntimeError('kaput')\nRuntimeError: kaput\n")


async def test_outputs_are_still_checked_against_the_declaration(services):
    doc = linear(code("typed", "def main():\n    return {'n': 'three'}",
                      {"n": {"type": "integer"}}))
    result, _ = await run(doc, services=services)
    assert result.error["code"] == "output_type"


async def test_a_result_that_is_not_a_dict_is_a_code_error(services):
    doc = linear(code("listy", "def main():\n    return [1]", {"n": {"type": "integer"}}))
    result, _ = await run(doc, services=services)
    assert result.error["code"] == "code_error"
    assert "dict" in result.error["message"]


async def test_the_nodes_timeout_is_its_wall_clock_limit(services, sandbox):
    doc = linear(code("spin", LOOP, {"x": {"type": "integer"}}, timeout_s=0.5))
    started = time.monotonic()
    result, _ = await run(doc, services=services)
    assert time.monotonic() - started < 2
    assert result.error["code"] == "timeout"
    await still_works(sandbox)


async def test_without_a_sandbox_the_node_fails_with_code_error():
    doc = linear(code("lonely", "def main():\n    return {}", {}))
    result, _ = await run(doc, services=Services())
    assert (result.error["code"], result.error["message"]) == (
        "code_error", "no code sandbox is configured")


async def test_a_failing_code_node_leaves_parallel_branches_running(services):
    """An attack in one branch is that node's error; the rest of the run carries on."""
    nodes = [start(), code("bomb", "def main():\n    x = bytearray(1 << 34)\n    return {}", {},
                           on_error="branch"),
             code("calm", "def main():\n    return {'n': 7}", {"n": {"type": "integer"}}),
             node("alarm", "template", params={"template": "{{bomb.error.message}}"}),
             end({"n": "{{calm.n}}"})]
    edges = [edge("start", "bomb"), edge("start", "calm"), edge("bomb", "alarm", "error"),
             edge("bomb", "end"), edge("calm", "end"), edge("alarm", "end")]
    result, _ = await run(flow(nodes, edges, concurrency=4), services=services)
    assert result.status == "succeeded"
    assert result.outputs == {"n": 7}
    assert result.nodes["bomb"].error["message"] == "memory limit of 128 MiB exceeded"


# -- the sample flows ------------------------------------------------------------------------


async def test_router_sample_measures_short_text(services):
    result, _ = await run(load_sample("router"), {"text": "hi"}, services=services)
    assert result.status == "succeeded", result.error
    assert result.outputs == {"answer": "Short: hi", "length": 2}


async def test_resilient_sample_divides(services):
    result, _ = await run(load_sample("resilient"), {"a": 6, "b": 3}, services=services)
    assert result.status == "succeeded", result.error
    assert result.outputs == {"message": "6 / 3 = 2.0"}


async def test_resilient_sample_retries_then_recovers_from_division_by_zero(services):
    result, events = await run(load_sample("resilient"), {"a": 1, "b": 0}, services=services)
    assert result.status == "succeeded", result.error
    assert result.outputs["message"].startswith("Cannot divide: ")
    assert result.outputs["message"] == "Cannot divide: ZeroDivisionError: division by zero"
    divide = result.nodes["divide"]
    assert (divide.status, divide.attempts) == ("recovered", 2)
    assert len(events_of(events, "node.retrying", "divide")) == 1


async def test_many_runs_share_the_sandbox_at_once(services):
    sample = load_sample("router")
    texts = [f"text number {n}" for n in range(12)]
    results = [result for result, _ in await asyncio.gather(
        *(run(sample, {"text": text}, services=services) for text in texts))]
    assert [r.status for r in results] == ["succeeded"] * 12
    assert [r.outputs["length"] for r in results] == [len(text) for text in texts]


# -- cancellation ----------------------------------------------------------------------------


async def test_cancelling_a_run_mid_code_stops_its_sandbox_process(services, sandbox):
    doc = linear(code("spin", LOOP, {"x": {"type": "integer"}}),
                 timeout_s=60)
    the_run, sink, task = launch(doc, services=Services(
        sandbox=sandbox, code_limits=CodeLimits(cpu_s=30, memory_mb=128, wall_s=30)))
    await until_event(sink, "node.started", "spin")
    await asyncio.sleep(0.3)  # the loop is spinning in the sandbox now
    tree = max((descendants([pid]) for pid in sandbox.pids), key=len)
    cancelled_at = time.monotonic()
    the_run.cancel()
    result = await asyncio.wait_for(task, 1)
    assert time.monotonic() - cancelled_at < 1
    assert result.status == "cancelled"
    assert result.nodes["spin"].status == "cancelled"
    while running(tree) and time.monotonic() - cancelled_at < 1:
        await asyncio.sleep(0.02)
    assert running(tree) == set()
    await still_works(sandbox)
