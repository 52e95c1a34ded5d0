"""Sizes are bounded (docs/dsl.md §3 rule 7): a value a node renders or produces is at most
RUN_VALUE_MAX_BYTES as JSON, checked while rendering; an iteration takes at most 100,000
items. A flow cannot make the process build a value of unbounded size."""

from __future__ import annotations

import tracemalloc

import pytest

from engine.ports import Services
from engine.values import DEFAULT_VALUE_MAX_BYTES, MAX_ITEMS, json_size_over, oversize

from .runflows import (
    body,
    chain,
    end,
    finished,
    flow,
    iteration,
    node,
    run,
    start,
    template,
)

pytestmark = pytest.mark.virtual_time


def doubling_flow(steps: int) -> dict:
    """Each template renders its predecessor's text twice: 2^steps times the input."""
    ids = [f"t{i}" for i in range(1, steps + 1)]
    nodes = [start({"s": "string"}), template("t1", "{{start.s}}{{start.s}}")]
    nodes += [template(f"t{i}", f"{{{{t{i - 1}.text}}}}{{{{t{i - 1}.text}}}}")
              for i in range(2, steps + 1)]
    nodes.append(end({"n": "{{" + ids[-1] + ".text}}"}))
    return flow(nodes, chain("start", *ids, "end"))


async def test_a_doubling_template_fails_too_large_at_the_node_that_crosses_the_limit():
    tracemalloc.start()
    result, events = await run(doubling_flow(40), {"s": "x" * 64})
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    # 64 · 2^16 = 4 MiB is the last text within the limit; t17 would be 8 MiB.
    assert result.status == "failed"
    assert result.error["code"] == "too_large" and result.error["node"] == "t17"
    assert finished(events, "t16")["data"]["status"] == "succeeded"
    assert len(result.nodes["t16"].outputs["text"]) == DEFAULT_VALUE_MAX_BYTES
    assert "t18" not in result.nodes  # nothing after it ran
    assert peak < 40 * 1024 * 1024  # a few copies of 4 MiB, not 2^40 · 64 bytes


async def test_on_error_default_handles_too_large_like_any_node_error():
    doc = doubling_flow(3)
    doc["nodes"][3]["on_error"] = "default"
    doc["nodes"][3]["default"] = {"text": "too big"}
    result, _ = await run(doc, {"s": "abcd"}, services=Services(value_max_bytes=20))

    assert result.status == "succeeded"
    assert result.outputs == {"n": "too big"}
    assert result.nodes["t3"].status == "recovered"
    assert result.nodes["t3"].error["code"] == "too_large"


async def test_the_limit_comes_from_the_services():
    result, _ = await run(doubling_flow(3), {"s": "abcd"}, services=Services(value_max_bytes=16))
    # t1 renders 8 characters, t2 16 (the limit: allowed), t3 would render 32.
    assert result.error["code"] == "too_large" and result.error["node"] == "t3"


async def test_an_iteration_over_too_many_items_fails_before_any_item_starts():
    graph = body([node("bstart", "start"), end({"v": "{{item}}"})], chain("bstart", "end"))
    doc = flow([start({"items": "array"}), iteration("each", "{{start.items}}", graph),
                end({"r": "{{each.results}}"})], chain("start", "each", "end"))

    result, events = await run(doc, {"items": list(range(MAX_ITEMS + 1))})

    assert result.error["code"] == "too_large" and result.error["node"] == "each"
    assert not [e for e in events if e["scope"] == "each"]  # no item started


@pytest.mark.parametrize(("value", "limit", "over"), [
    ("abc", 5, False), ("abcd", 5, True), ({"a": [1, 2]}, 11, False), ({"a": [1, 2]}, 10, True),
    ([None, True, False], 17, False), ([None, True, False], 16, True), ([[[]]] * 3, 16, False),
    ([[[]]] * 3, 15, True), ({}, 2, False), ([], 1, True), (1.5, 3, False),
    ({"a": "xy", "b": ""}, 17, False), ({"a": "xy", "b": ""}, 16, True),
])
def test_json_size_matches_compact_json(value, limit, over):
    import json

    assert (len(json.dumps(value, separators=(",", ":"))) > limit) is over  # the case is right
    assert json_size_over(value, limit) is over


def nested(levels: int) -> list:
    value: list = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_depth_is_bounded_like_a_documents():
    assert oversize(nested(64), DEFAULT_VALUE_MAX_BYTES) is None
    assert "deeper than 64" in oversize(nested(65), DEFAULT_VALUE_MAX_BYTES)


async def test_outputs_nested_600_deep_fail_too_large_instead_of_crashing_a_later_node():
    """Before, a later if_else comparing such a value failed with a RecursionError
    (internal_error); now the node that made it fails, with a contract code."""
    from engine.nodes import default_registry
    from engine.nodes.wait import WaitNode

    class Deep(WaitNode):  # stands for a code node or an http body returning such a value
        fixed_outputs = {"value": {"type": "any"}}

        async def execute(self, call):
            return {"value": nested(600)}

    registry = default_registry()
    registry.register(Deep())
    doc = flow([start(), node("deep", "wait", params={"seconds": 0}), end({})],
               chain("start", "deep", "end"))
    result, _ = await run(doc, registry=registry)
    assert result.error["code"] == "too_large" and result.error["node"] == "deep"
    assert "deeper than 64" in result.error["message"]


# -- what a run records in all (RUN_STORED_MAX_MB) ------------------------------------------

def hundreds_flow(count: int) -> dict:
    """`count` templates in a chain, each rendering 100 characters (104 bytes of outputs:
    {"text":"…"} is 11 more, counted as compact JSON)."""
    ids = [f"t{i}" for i in range(1, count + 1)]
    nodes = [start(), *(template(i, "x" * 100) for i in ids), end({})]
    return flow(nodes, chain("start", *ids, "end"))


async def test_the_node_that_would_cross_the_runs_budget_fails_too_large():
    # Each template records 111 bytes; 5 fit in 600, the sixth would cross it.
    result, events = await run(hundreds_flow(8), services=Services(stored_max_bytes=600))

    assert result.status == "failed"
    assert result.error["code"] == "too_large" and result.error["node"] == "t6"
    assert "RUN_STORED_MAX_MB" in result.error["message"]
    assert [finished(events, f"t{i}")["data"]["status"] for i in range(1, 6)] == \
        ["succeeded"] * 5
    assert "t7" not in result.nodes


async def test_within_the_budget_the_same_flow_succeeds():
    result, _ = await run(hundreds_flow(8), services=Services(stored_max_bytes=8 * 111 + 64))
    assert result.status == "succeeded"


async def test_an_iterations_items_count_against_the_runs_budget():
    graph = body([node("bstart", "start"), template("pad", "y" * 100), end({"v": "{{pad.text}}"})],
                 chain("bstart", "pad", "end"))
    doc = flow([start({"items": "array"}), iteration("each", "{{start.items}}", graph),
                end({"r": "{{each.results}}"})], chain("start", "each", "end"))

    result, _ = await run(doc, {"items": list(range(50))},
                          services=Services(stored_max_bytes=2000))

    assert result.error["code"] == "too_large" and result.error["node"] == "each"
    assert "RUN_STORED_MAX_MB" in result.error["message"]


async def test_on_error_default_recovers_from_a_spent_budget():
    doc = hundreds_flow(3)
    doc["nodes"][3].update(on_error="default", default={"text": "budget spent"})
    result, _ = await run(doc, services=Services(stored_max_bytes=250))
    assert result.status == "succeeded"
    assert result.nodes["t3"].status == "recovered"
    assert result.nodes["t3"].outputs == {"text": "budget spent"}


async def test_a_resumed_run_counts_what_it_replays():
    from engine import Checkpoint, Run, compile_plan
    from engine.testing import CollectingSink, with_loop_clock

    doc = hundreds_flow(4)
    _, events = await run(doc, run_id="r1")
    through_t3 = events[:events.index(finished(events, "t3")) + 1]
    sink = CollectingSink()
    resumed = Run(compile_plan(doc), {}, sink=sink, run_id="r1",
                  resume=Checkpoint.from_events(through_t3),
                  services=with_loop_clock(Services(stored_max_bytes=400)))
    result = await resumed.execute()

    # t1–t3 are replayed (333 bytes), so t4 crosses 400 although it alone would not.
    assert result.error["code"] == "too_large" and result.error["node"] == "t4"
