"""Compiled plans: identity by content hash, plain-data round trips, immutability, linear cost."""

import dataclasses
import hashlib
import json

import msgpack
import pytest

from engine import Plan, compile_plan
from engine.testing import run_document

from .runflows import load_sample


def diamonds(count):
    nodes = [{"id": "start", "type": "start"}]
    edges = []
    previous = "start"
    for i in range(count):
        nodes += [
            {"id": f"l{i}", "type": "template", "params": {"template": "l"}},
            {"id": f"r{i}", "type": "template", "params": {"template": "r"}},
            {"id": f"j{i}", "type": "template",
             "params": {"template": f"{{{{l{i}.text}}}}{{{{r{i}.text}}}}"}},
        ]
        edges += [{"from": previous, "to": f"l{i}"}, {"from": previous, "to": f"r{i}"},
                  {"from": f"l{i}", "to": f"j{i}"}, {"from": f"r{i}", "to": f"j{i}"}]
        previous = f"j{i}"
    nodes.append({"id": "end", "type": "end", "inputs": {"last": f"{{{{{previous}.text}}}}"}})
    edges.append({"from": previous, "to": "end"})
    return {"dsl": "astron/v1", "name": "diamonds", "nodes": nodes, "edges": edges}


def test_digest_is_sha256_of_the_canonical_json_of_the_document():
    doc = load_sample("hello")
    canonical = json.dumps(doc, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    expected = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    assert compile_plan(doc).digest == expected


def test_key_order_does_not_change_the_digest_but_content_does():
    doc = load_sample("hello")
    reordered = json.loads(json.dumps(doc, sort_keys=True))
    assert compile_plan(reordered).digest == compile_plan(doc).digest
    changed = json.loads(json.dumps(doc))
    changed["nodes"][1]["params"]["template"] = "Hi, {{start.name}}!"
    assert compile_plan(changed).digest != compile_plan(doc).digest


@pytest.mark.parametrize("sample", ["hello", "fanout", "router", "approval", "batch"])
def test_plan_survives_json_and_messagepack_round_trips(sample):
    plan = compile_plan(load_sample(sample))
    data = plan.to_dict()
    via_json = Plan.from_dict(json.loads(json.dumps(data)))
    via_msgpack = Plan.from_dict(msgpack.unpackb(msgpack.packb(data)))
    for copy in (via_json, via_msgpack):
        assert copy == plan
        assert hash(copy) == hash(plan)
        assert copy.to_dict() == data


async def test_a_plan_rebuilt_from_data_runs_like_the_original():
    plan = compile_plan(load_sample("hello"))
    from engine import Run

    rebuilt = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    result = await Run(rebuilt, {"name": "Lin"}).execute()
    assert result.outputs == {"greeting": "Hello, Lin!"}


def test_plans_are_immutable_and_usable_as_keys():
    plan = compile_plan(load_sample("hello"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.graph.nodes[0].on_error = "branch"  # type: ignore[misc]
    assert {plan: 1}[compile_plan(load_sample("hello"))] == 1


def test_order_is_topological():
    plan = compile_plan(diamonds(5))
    position = {node_index: i for i, node_index in enumerate(plan.graph.order)}
    for edge in plan.graph.edges:
        assert position[edge.source] < position[edge.target]


async def test_thirty_diamonds_compile_and_run_without_enumerating_paths():
    # 2^30 paths: any path enumeration would never finish.
    result, events = await run_document(diamonds(30))
    assert result.status == "succeeded"
    assert result.outputs == {"last": "lr"}
    assert sum(e["type"] == "node.finished" for e in events) == 92


def test_a_plan_from_an_unknown_format_is_refused():
    data = compile_plan(load_sample("hello")).to_dict()
    data["format"] = 999
    with pytest.raises(ValueError, match="plan format"):
        Plan.from_dict(data)
