"""The `iteration` node (docs/dsl.md §5.9), with the limits it shares with the run (§1 settings)
and the event envelope of its bodies (§6)."""

import asyncio
import copy

import pytest

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
    load_sample,
    max_overlap,
    node,
    now,
    position,
    positions,
    run,
    start,
    template,
    unended,
    until,
    wait,
)

pytestmark = pytest.mark.virtual_time

BODY_START = "bstart"


def body_of(*middle, outputs):
    """A body: its own start (id `bstart`) -> middle nodes in order -> end(outputs)."""
    nodes = [node(BODY_START, "start"), *middle, end(outputs)]
    return body(nodes, chain(BODY_START, *(n["id"] for n in middle), "end"))


def over_items(graph, items="{{start.items}}", inputs=None, **params):
    """start(items: array) -> each (iteration) -> end(results); `params` go to the iteration."""
    declared = {"items": "array", **(inputs or {})}
    nodes = [
        start(declared),
        iteration("each", items, graph, **params),
        end({"results": "{{each.results}}"}),
    ]
    return flow(nodes, chain("start", "each", "end"))


def waiting_body(seconds="{{item}}"):
    """A body that waits `seconds` (by default the item itself) and returns the item."""
    return body_of(wait("w", seconds), outputs={"v": "{{item}}"})


def body_events(events, scope="each"):
    return [e for e in events if e["scope"] == scope]


# --- results and references --------------------------------------------------------------


async def test_results_follow_item_order_when_later_items_finish_first():
    doc = over_items(waiting_body(), concurrency=3)

    result, events = await run(doc, {"items": [0.2, 0.05, 0.1]})

    assert result.status == "succeeded"
    assert result.outputs == {"results": [{"v": 0.2}, {"v": 0.05}, {"v": 0.1}]}
    # The items really finished out of order: 1, then 2, then 0.
    order = [e["item"] for e in events_of(events, "node.finished", "w")]
    assert order == [1, 2, 0]


async def test_item_paths_and_index_resolve_per_item():
    graph = body_of(
        template("t", "{{index}}:{{item.name}}"),
        outputs={"text": "{{t.text}}", "whole": "{{item}}", "i": "{{index}}"},
    )
    doc = over_items(graph)
    items = [{"name": "Ada"}, {"name": "Lin"}, {"name": "Bo", "age": 3}]

    result, _ = await run(doc, {"items": items})

    assert result.status == "succeeded"
    assert result.outputs["results"] == [
        {"text": "0:Ada", "whole": {"name": "Ada"}, "i": 0},
        {"text": "1:Lin", "whole": {"name": "Lin"}, "i": 1},
        {"text": "2:Bo", "whole": {"name": "Bo", "age": 3}, "i": 2},
    ]


async def test_body_references_outer_ancestors_beside_its_own_nodes():
    graph = body_of(
        template("t", "{{start.prefix}}-{{label.text}}-{{item}}"),
        outputs={"text": "{{t.text}}", "prefix": "{{start.prefix}}"},
    )
    nodes = [
        start({"items": "array", "prefix": "string"}),
        template("label", "L"),
        iteration("each", "{{start.items}}", graph),
        end({"results": "{{each.results}}"}),
    ]
    doc = flow(nodes, chain("start", "label", "each", "end"))

    result, _ = await run(doc, {"items": ["a", "b"], "prefix": "P"})

    assert result.status == "succeeded"
    assert result.outputs["results"] == [
        {"text": "P-L-a", "prefix": "P"},
        {"text": "P-L-b", "prefix": "P"},
    ]


async def test_body_with_branches_chooses_per_item():
    router = if_else("big", case("yes", cond("{{item}}", "gt", 10)))
    nodes = [
        node(BODY_START, "start"),
        router,
        template("large", "large {{item}}"),
        template("small", "small {{item}}"),
        node("merge", "aggregate", params={"sources": ["{{large.text}}", "{{small.text}}"]}),
        end({"v": "{{merge.value}}"}),
    ]
    edges = [
        edge(BODY_START, "big"),
        edge("big", "large", "yes"),
        edge("big", "small", "else"),
        edge("large", "merge"),
        edge("small", "merge"),
        edge("merge", "end"),
    ]
    doc = over_items(body(nodes, edges))

    result, events = await run(doc, {"items": [5, 50]})

    assert result.outputs["results"] == [{"v": "small 5"}, {"v": "large 50"}]
    skipped = [(e["data"]["node"], e["item"]) for e in events_of(events, "node.skipped")]
    assert skipped == [("large", 0), ("small", 1)]


async def test_empty_items_give_empty_results():
    result, events = await run(over_items(waiting_body()), {"items": []})

    assert result.status == "succeeded"
    assert result.outputs == {"results": []}
    assert body_events(events) == []


async def test_items_that_are_not_an_array_fail_with_type_mismatch():
    doc = over_items(waiting_body(), items="{{start.things}}", inputs={"things": "any"})

    for things in ["abc", {"a": 1}, 3, None]:
        result, events = await run(doc, {"items": [], "things": things})

        assert result.status == "failed", things
        assert result.error["code"] == "type_mismatch"
        assert result.error["node"] == "each"
        assert finished(events, "each")["data"]["status"] == "failed"
        assert body_events(events) == []


async def test_items_may_be_a_literal_array():
    doc = over_items(
        body_of(template("t", "<{{item}}>"), outputs={"t": "{{t.text}}"}), items=[1, "two", None]
    )

    result, _ = await run(doc, {"items": []})

    assert result.outputs["results"] == [{"t": "<1>"}, {"t": "<two>"}, {"t": "<>"}]


# --- events and the run's nodes ------------------------------------------------------------


async def test_body_events_carry_scope_and_item_and_top_level_events_do_not():
    doc = over_items(body_of(template("t", "{{item}}"), outputs={"t": "{{t.text}}"}))

    result, events = await run(doc, {"items": ["a", "b", "c"]})

    assert result.status == "succeeded"
    body_nodes = {BODY_START, "t", "end"}
    inside = [e for e in events if e["scope"] is not None]
    assert {e["scope"] for e in inside} == {"each"}
    for index in range(3):
        mine = [e for e in inside if e["item"] == index]
        assert [(e["type"], e["data"]["node"]) for e in mine] == [
            (kind, name)
            for name in (BODY_START, "t", "end")
            for kind in ("node.started", "node.finished")
        ]
        assert finished(mine, "t")["data"]["outputs"] == {"text": "abc"[index]}
    outside = [e for e in events if e["scope"] is None]
    assert all(e["item"] is None for e in outside)
    assert outside[0]["type"] == "run.started"
    assert outside[-1]["type"] == "run.finished"
    top = [(e["type"], e["data"].get("node")) for e in outside if e["type"].startswith("node.")]
    assert top == [
        ("node.started", "start"),
        ("node.finished", "start"),
        ("node.started", "each"),
        ("node.finished", "each"),
        ("node.started", "end"),
        ("node.finished", "end"),
    ]
    # Body events fall between the iteration node's own started and finished events.
    first_inside = events.index(inside[0])
    last_inside = events.index(inside[-1])
    assert position(events, "node.started", "each") < first_inside
    assert last_inside < position(events, "node.finished", "each")
    assert all(e["data"]["node"] in body_nodes for e in inside)


async def test_iteration_node_reports_its_results_as_outputs():
    doc = over_items(body_of(template("t", "{{item}}!"), outputs={"t": "{{t.text}}"}))

    _, events = await run(doc, {"items": ["x", "y"]})

    done = finished(events, "each")
    assert done["scope"] is None and done["item"] is None
    assert done["data"]["status"] == "succeeded"
    assert done["data"]["outputs"] == {"results": [{"t": "x!"}, {"t": "y!"}]}
    assert done["data"]["attempts"] == 1


async def test_run_nodes_show_the_iteration_node_not_body_executions():
    doc = over_items(body_of(template("t", "{{item}}"), outputs={"t": "{{t.text}}"}))

    result, _ = await run(doc, {"items": [1, 2]})

    assert set(result.nodes) == {"start", "each", "end"}
    each = result.nodes["each"]
    assert each.type == "iteration"
    assert each.status == "succeeded"
    assert each.outputs == {"results": [{"t": "1"}, {"t": "2"}]}


# --- concurrency -----------------------------------------------------------------------------


async def test_concurrency_caps_running_bodies():
    doc = over_items(waiting_body(0.03), concurrency=2)

    result, events = await run(doc, {"items": list(range(6))})

    assert result.status == "succeeded"
    assert len(events_of(events, "node.started", "w")) == 6
    assert max_overlap(events, {"w"}) == 2


async def test_concurrency_one_runs_items_one_after_another():
    doc = over_items(waiting_body(0.01))

    result, events = await run(doc, {"items": list(range(4))})

    assert result.status == "succeeded"
    assert max_overlap(events, {"w"}) == 1
    # One item's body ends before the next one starts.
    items = [e["item"] for e in events if e["scope"] == "each"]
    assert items == sorted(items)


async def test_bodies_really_run_in_parallel_up_to_concurrency():
    doc = over_items(waiting_body(0.2), concurrency=4)

    began = now()
    result, events = await run(doc, {"items": list(range(4))})
    took = now() - began

    assert result.status == "succeeded"
    starts = positions(events, "node.started", "w")
    ends = positions(events, "node.finished", "w")
    assert len(starts) == 4
    assert max(starts) < min(ends)
    assert took == pytest.approx(0.2)  # four waits of 0.2 s side by side, not 0.8 s


async def test_run_concurrency_setting_is_shared_with_body_nodes():
    doc = over_items(waiting_body(0.03), concurrency=8)
    doc["settings"] = {"concurrency": 2}

    result, events = await run(doc, {"items": list(range(8))})

    assert result.status == "succeeded"
    assert len(events_of(events, "node.started", "w")) == 8
    assert max_overlap(events, {"w"}) == 2


async def test_iteration_holds_no_slot_while_its_bodies_run():
    # With one slot for the whole run, a body could never run if the iteration kept it.
    doc = over_items(waiting_body(0.01), concurrency=2)
    doc["settings"] = {"concurrency": 1}

    result, events = await asyncio.wait_for(run(doc, {"items": [1, 2, 3]}), 5)

    assert result.status == "succeeded"
    assert max_overlap(events, {"w"}) == 1


# --- item errors -----------------------------------------------------------------------------

ITEMS_WITH_A_BAD_ONE = [{"name": "a"}, "oops", {"name": "c"}]


def naming_body():
    """`{{item.name}}` is a bad_path for an item that is a string."""
    return body_of(template("t", "{{item.name}}"), outputs={"t": "{{t.text}}"})


async def test_item_error_fails_the_node_and_run_by_default():
    result, events = await run(over_items(naming_body()), {"items": ITEMS_WITH_A_BAD_ONE})

    assert result.status == "failed"
    item_error = finished([e for e in events if e["item"] == 1], "t")["data"]["error"]
    assert item_error["code"] == "bad_path"
    node_error = finished(events, "each")["data"]["error"]
    assert finished(events, "each")["data"]["status"] == "failed"
    # "The node fails with the item's error": same code and message.
    assert node_error["code"] == item_error["code"]
    assert node_error["message"] == item_error["message"]
    assert node_error["node"] in {"each", "t"}
    assert result.error == node_error
    assert result.nodes["each"].status == "failed"
    assert events[-1]["type"] == "run.finished"
    assert events[-1]["data"]["status"] == "failed"
    # The item after the failing one never ran (concurrency 1).
    assert not [e for e in events if e["item"] == 2]


async def test_on_item_error_fail_is_the_explicit_default():
    doc = over_items(naming_body(), on_item_error="fail")

    result, _ = await run(doc, {"items": ITEMS_WITH_A_BAD_ONE})

    assert result.status == "failed"
    assert result.error["code"] == "bad_path"


async def test_item_failure_stops_other_running_items():
    graph = body_of(wait("w", "{{item.s}}"), outputs={"s": "{{item.s}}"})
    doc = over_items(graph, concurrency=2)

    began = now()
    result, events = await run(doc, {"items": [{"s": 5}, {"s": "soon"}]})

    assert now() - began == pytest.approx(0.0, abs=0.01)  # the 5 s wait was stopped
    assert result.status == "failed"
    assert result.error["code"] == "invalid_param"
    slow = [e for e in events_of(events, "node.finished", "w") if e["item"] == 0]
    assert [e["data"]["status"] for e in slow] == ["cancelled"]


async def test_on_item_error_skip_drops_the_slot():
    doc = over_items(naming_body(), on_item_error="skip")

    result, events = await run(doc, {"items": ITEMS_WITH_A_BAD_ONE})

    assert result.status == "succeeded"
    assert result.outputs["results"] == [{"t": "a"}, {"t": "c"}]
    assert finished(events, "each")["data"]["status"] == "succeeded"
    failed = [e for e in events_of(events, "node.finished", "t") if e["data"]["status"] == "failed"]
    assert [e["item"] for e in failed] == [1]


async def test_on_item_error_null_puts_null_in_the_slot():
    doc = over_items(naming_body(), on_item_error="null")

    result, _ = await run(doc, {"items": ITEMS_WITH_A_BAD_ONE})

    assert result.status == "succeeded"
    assert result.outputs["results"] == [{"t": "a"}, None, {"t": "c"}]


async def test_on_item_error_skip_with_every_item_failing_gives_empty_results():
    doc = over_items(naming_body(), on_item_error="skip", concurrency=3)

    result, _ = await run(doc, {"items": ["x", "y", "z"]})

    assert result.status == "succeeded"
    assert result.outputs["results"] == []


async def test_body_node_error_handling_recovers_inside_the_item():
    graph = body_of(
        template("t", "{{item.name}}", on_error="default", default={"text": "?"}),
        outputs={"t": "{{t.text}}"},
    )

    result, _ = await run(over_items(graph), {"items": ITEMS_WITH_A_BAD_ONE})

    assert result.status == "succeeded"
    assert result.outputs["results"] == [{"t": "a"}, {"t": "?"}, {"t": "c"}]
    # recovered counts top-level node executions only.
    assert result.recovered == 0


# --- limits and cancellation -------------------------------------------------------------


def ten_items_of_three_nodes(max_steps):
    doc = over_items(body_of(template("t", "{{item}}"), outputs={"t": "{{t.text}}"}))
    doc["settings"] = {"max_steps": max_steps}
    return doc


async def test_body_executions_count_against_max_steps():
    # start + each + 10 items x (bstart, t, end) + end = 33 steps.
    result, events = await run(ten_items_of_three_nodes(20), {"items": list(range(10))})

    assert result.status == "failed"
    assert result.error["code"] == "max_steps"
    assert result.error["node"] is None
    assert events[-1]["type"] == "run.finished"
    assert events[-1]["data"]["error"]["code"] == "max_steps"
    assert len(events_of(events, "node.started")) <= 20


async def test_max_steps_counts_each_body_node_exactly_once():
    ok, _ = await run(ten_items_of_three_nodes(33), {"items": list(range(10))})
    short, _ = await run(ten_items_of_three_nodes(32), {"items": list(range(10))})

    assert ok.status == "succeeded"
    assert ok.steps == 33
    assert short.status == "failed"
    assert short.error["code"] == "max_steps"


async def test_iteration_stopped_by_max_steps_ends_cancelled():
    result, events = await run(ten_items_of_three_nodes(20), {"items": list(range(10))})

    assert result.error["code"] == "max_steps"
    done = finished(events, "each")["data"]
    assert done["status"] == "cancelled"
    assert position(events, "node.finished", "each") < position(events, "run.finished")
    assert result.nodes["each"].status == "cancelled"
    assert result.nodes["each"].inputs == {}
    assert unended(events) == []


async def test_iteration_stopped_by_max_steps_at_concurrency_ends_every_body_execution():
    doc = over_items(waiting_body(0.05), concurrency=3)
    doc["settings"] = {"max_steps": 12}

    result, events = await run(doc, {"items": list(range(10))})

    assert result.error["code"] == "max_steps"
    assert finished(events, "each")["data"]["status"] == "cancelled"
    assert unended(events) == []


async def test_cancel_mid_iteration_stops_the_run_promptly():
    doc = over_items(waiting_body(30), concurrency=2)
    the_run, sink, task = launch(doc, {"items": [1, 2, 3, 4]})
    await until(lambda: len(events_of(sink.events, "node.started", "w")) == 2)

    began = now()
    the_run.cancel()
    result = await asyncio.wait_for(task, 5)

    assert now() - began == pytest.approx(0.0, abs=0.01)  # not after the 30 s waits
    assert result.status == "cancelled"
    assert result.error["code"] == "cancelled"
    waits = events_of(sink.events, "node.finished", "w")
    assert sorted(e["item"] for e in waits) == [0, 1]
    assert {e["data"]["status"] for e in waits} == {"cancelled"}
    assert finished(sink.events, "each")["data"]["status"] == "cancelled"
    assert result.nodes["each"].status == "cancelled"
    assert sink.events[-1]["type"] == "run.finished"
    assert sink.events[-1]["data"]["status"] == "cancelled"
    # No item after the cancel started.
    assert not [e for e in sink.events if e["item"] in (2, 3)]


async def test_run_timeout_stops_a_long_iteration():
    doc = over_items(waiting_body(30), concurrency=2)
    doc["settings"] = {"timeout_s": 1}

    result, events = await asyncio.wait_for(run(doc, {"items": [1, 2]}), 5)

    assert result.status == "failed"
    assert result.error["code"] == "run_timeout"
    assert {e["data"]["status"] for e in events_of(events, "node.finished", "w")} == {"cancelled"}


# --- nesting, size, samples -------------------------------------------------------------------


async def test_nested_iteration_item_and_index_mean_the_innermost():
    inner = body(
        [
            node("istart", "start"),
            template("t", "{{index}}={{item}}<{{outer.text}}"),
            end({"v": "{{t.text}}"}),
        ],
        chain("istart", "t", "end"),
    )
    outer = body(
        [
            node(BODY_START, "start"),
            template("outer", "o{{index}}"),
            iteration("inner_each", "{{item}}", inner),
            end({"inner": "{{inner_each.results}}", "whole": "{{item}}"}),
        ],
        chain(BODY_START, "outer", "inner_each", "end"),
    )
    doc = over_items(outer)

    result, events = await run(doc, {"items": [["a", "b"], ["c"]]})

    assert result.status == "succeeded"
    assert result.outputs["results"] == [
        {"inner": [{"v": "0=a<o0"}, {"v": "1=b<o0"}], "whole": ["a", "b"]},
        {"inner": [{"v": "0=c<o1"}], "whole": ["c"]},
    ]
    assert set(result.nodes) == {"start", "each", "end"}
    inner_templates = events_of(events, "node.finished", "t")
    assert len(inner_templates) == 3
    assert all(e["scope"] is not None for e in inner_templates)


async def test_ten_thousand_items_complete_in_order():
    doc = over_items(body_of(template("t", "{{index}}:{{item}}"), outputs={"t": "{{t.text}}"}))
    items = [f"w{n}" for n in range(10_000)]

    result, events = await asyncio.wait_for(run(doc, {"items": items}), 20)

    assert result.status == "succeeded"
    results = result.outputs["results"]
    assert len(results) == 10_000
    assert results == [{"t": f"{n}:w{n}"} for n in range(10_000)]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


async def test_batch_sample_with_a_template_body_keeps_order():
    doc = copy.deepcopy(load_sample("batch"))
    body_nodes = doc["nodes"][1]["params"]["body"]["nodes"]
    shout = next(n for n in body_nodes if n["id"] == "shout")
    shout["type"] = "template"
    shout["params"] = {"template": "{{i}}:{{word}}"}
    del shout["outputs"]
    body_nodes[-1]["inputs"] = {"word": "{{shout.text}}"}
    words = ["a", "bb", "ccc", "dddd", "eeeee", "f"]

    result, events = await run(doc, {"words": words})

    assert result.status == "succeeded"
    assert result.outputs == {"results": [{"word": f"{i}:{w}"} for i, w in enumerate(words)]}
    assert {e["scope"] for e in events_of(events, "node.finished", "shout")} == {"each"}
    assert sorted(e["item"] for e in events_of(events, "node.finished", "shout")) == list(
        range(len(words))
    )
