"""Validation of node ids and names, node-level values (outputs, retry, timeout_s, on_error,
default) and integer/number typing of literal values (docs/dsl.md §2, §5)."""

from __future__ import annotations

import json

import pytest

from engine import validate_document

from .flowfactory import (
    body,
    body_start,
    chain,
    check,
    code,
    edge,
    end,
    flow,
    has,
    iteration_flow,
    linear,
    node,
    show,
    start,
    template,
    wait,
)

# --- ids and names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    ["Upper", "1st", "with-dash", "a b", "", "é", "_a", "a\n", "a" * 65, "sys", "item", "index"],
)
def test_node_id_breaking_the_pattern_or_reserved_is_bad_id(bad):
    doc = linear(template(bad))
    assert ("/nodes/1/id", "bad_id") in check(doc)


@pytest.mark.parametrize("good", ["a", "a" * 64, "a1_b2", "x_", "system", "items"])
def test_node_id_matching_the_pattern_is_valid(good):
    assert check(linear(template(good))) == set()


@pytest.mark.parametrize("name", ["Text", "1x", "t-x", "t\n", "a" * 65])
def test_bad_input_name_is_bad_id(name):
    doc = linear(template("a", inputs={name: "{{start.name}}"}))
    assert (f"/nodes/1/inputs/{name}", "bad_id") in check(doc)


def test_bad_start_input_name_is_bad_id():
    doc = linear(template("a"), start_node=start(**{"Bad": "string"}))
    assert ("/nodes/0/params/inputs/Bad", "bad_id") in check(doc)


def test_bad_end_input_name_is_bad_id():
    doc = linear(end_node=end(**{"my-out": "{{start.name}}"}))
    assert ("/nodes/1/inputs/my-out", "bad_id") in check(doc)


@pytest.mark.parametrize("name", ["Len", "n\n", "_n"])
def test_bad_output_name_is_bad_id(name):
    doc = linear(code("a", outputs={name: {"type": "integer"}}))
    assert (f"/nodes/1/outputs/{name}", "bad_id") in check(doc)


def test_reserved_id_in_iteration_body_is_bad_id():
    graph = body([body_start(), template("item"), end()], chain("bstart", "item", "end"))
    doc = iteration_flow(graph)
    assert ("/nodes/1/params/body/nodes/1/id", "bad_id") in check(doc)


def test_duplicate_node_id_is_duplicate_id():
    doc = flow(
        [start(), template("a"), template("a"), end()],
        [edge("start", "a"), edge("a", "end")],
    )
    problems = validate_document(doc)
    assert has(problems, "duplicate_id", "/nodes/2/id", "/nodes/2"), show(problems)


def test_duplicate_node_id_in_iteration_body_is_duplicate_id():
    graph = body(
        [body_start(), template("twin"), template("twin"), end()],
        chain("bstart", "twin", "end"),
    )
    problems = validate_document(iteration_flow(graph))
    paths = ("/nodes/1/params/body/nodes/2/id", "/nodes/1/params/body/nodes/2")
    assert has(problems, "duplicate_id", *paths), show(problems)


@pytest.mark.parametrize(
    "bad", ["A", "1st", "with-dash", "", "a" * 65, "sys", "item", "index"]
)
def test_bad_id_is_the_only_problem_of_a_node_that_is_otherwise_fine(bad):
    # The node still takes part under the id it was given: its edges, its place in the
    # graph and its references are as good as they would be with a valid id.
    doc = linear(template(bad, "{{start.name}}"))
    assert check(doc) == {("/nodes/1/id", "bad_id")}


def test_bad_id_node_still_gets_its_real_graph_problems():
    doc = flow(
        [start(name="string"), template("A", "{{start.name}}"), template("b"), end()],
        [edge("start", "b"), edge("b", "end"), edge("A", "end")],
    )
    assert check(doc) == {("/nodes/1/id", "bad_id"), ("/nodes/1", "unreachable"),
                          ("/nodes/1/params/template", "not_an_ancestor")}


def test_duplicate_id_is_the_only_problem_when_both_nodes_are_otherwise_fine():
    doc = flow(
        [start(name="string"), template("a", "{{start.name}}"), template("a", "{{start.name}}"),
         end()],
        [edge("start", "a"), edge("a", "end")],
    )
    assert check(doc) == {("/nodes/2/id", "duplicate_id")}


def test_duplicate_keeps_the_reference_problems_it_would_have_in_the_first_ones_place():
    doc = flow(
        [start(name="string"), template("a", "{{start.name}}"),
         template("a", "{{ghost.text}} {{end.x}} {{start.nme}}"), end()],
        [edge("start", "a"), edge("a", "end")],
    )
    assert check(doc) == {
        ("/nodes/2/id", "duplicate_id"),
        ("/nodes/2/params/template", "unknown_reference"),
        ("/nodes/2/params/template", "not_an_ancestor"),
        ("/nodes/2/params/template", "unknown_output"),
    }


def test_duplicate_iteration_node_has_its_body_checked():
    graph = body([body_start(), template("inner", "{{start.name}} {{nosuch.x}}"), end()],
                 chain("bstart", "inner", "end"))
    doc = flow(
        [start(name="string"), template("each"), node("each", "iteration",
                                                      params={"items": [1], "body": graph}),
         end()],
        [edge("start", "each"), edge("each", "end")],
    )
    assert check(doc) == {
        ("/nodes/2/id", "duplicate_id"),
        ("/nodes/2/params/body/nodes/1/params/template", "unknown_reference"),
    }


@pytest.mark.parametrize("node_id", [None, 5, ["a"]])
def test_node_without_a_usable_id_gets_no_reference_problems_from_its_place(node_id):
    # Such a node cannot be on any edge, so it is no node's descendant: saying so would
    # only repeat its id problem. References that are wrong wherever it stands still count.
    broken = template("x", "{{start.name}} {{ghost.text}}")
    if node_id is None:
        del broken["id"]
    else:
        broken["id"] = node_id
    doc = flow([start(name="string"), broken, template("b"), end()], chain("start", "b", "end"))
    found = check(doc)
    assert ("/nodes/1/params/template", "not_an_ancestor") not in found
    assert ("/nodes/1/params/template", "unknown_reference") in found
    assert {code for _, code in found} == {
        "missing_field" if node_id is None else "wrong_type", "unknown_reference"}


@pytest.mark.parametrize("type_", ["teleport", "Template", "", "subFlow"])
def test_unknown_node_type_is_unknown_type(type_):
    doc = linear(node("a", type_, params={}))
    assert ("/nodes/1/type", "unknown_type") in check(doc)


# --- node-level values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_attempts", 0),
        ("max_attempts", 21),
        ("backoff_ms", -1),
        ("backoff_ms", 600_001),
        ("multiplier", 0.5),
        ("multiplier", 11),
    ],
)
def test_retry_value_out_of_range_is_invalid_value(key, value):
    doc = linear(template("a", retry={key: value}))
    assert check(doc) == {(f"/nodes/1/retry/{key}", "invalid_value")}


@pytest.mark.parametrize(
    "retry",
    [
        {"max_attempts": 1, "backoff_ms": 0, "multiplier": 1},
        {"max_attempts": 20, "backoff_ms": 600_000, "multiplier": 10, "max_backoff_ms": 0},
        {"multiplier": 1.5, "jitter": False},
        {},
    ],
)
def test_retry_within_range_is_valid(retry):
    assert check(linear(template("a", retry=retry))) == set()


@pytest.mark.parametrize("value", [0, -1, 86_401])
def test_node_timeout_s_out_of_range_is_invalid_value(value):
    assert check(linear(template("a", timeout_s=value))) == {
        ("/nodes/1/timeout_s", "invalid_value")
    }


@pytest.mark.parametrize("value", ["explode", "", "Fail"])
def test_unknown_on_error_is_invalid_value(value):
    assert ("/nodes/1/on_error", "invalid_value") in check(linear(template("a", on_error=value)))


def test_title_over_200_characters_is_invalid_value():
    assert ("/nodes/1/title", "invalid_value") in check(linear(template("a", title="t" * 201)))


def test_title_of_200_characters_is_valid():
    assert check(linear(template("a", title="t" * 200))) == set()


@pytest.mark.parametrize("type_", ["float", "int", "str", "null", "String", ""])
def test_unknown_output_type_is_invalid_value(type_):
    doc = linear(code("a", outputs={"n": {"type": type_}}))
    assert ("/nodes/1/outputs/n/type", "invalid_value") in check(doc)


def test_unknown_array_item_type_is_invalid_value():
    doc = linear(code("a", outputs={"n": {"type": "array", "items": {"type": "float"}}}))
    assert ("/nodes/1/outputs/n/items/type", "invalid_value") in check(doc)


@pytest.mark.parametrize(
    "type_", ["string", "integer", "number", "boolean", "object", "array", "any"]
)
def test_each_of_the_seven_output_types_is_valid(type_):
    spec = {"type": type_, "description": "a value"}
    assert check(linear(code("a", outputs={"v": spec}))) == set()


def test_array_output_with_item_type_is_valid():
    spec = {"type": "array", "items": {"type": "object"}}
    assert check(linear(code("a", outputs={"v": spec}))) == set()


def test_unknown_start_input_type_is_reported():
    doc = linear(template("a"), start_node=start(name="float"))
    problems = validate_document(doc)
    path = "/nodes/0/params/inputs/name/type"
    assert has(problems, "invalid_value", path) or has(problems, "invalid_param", path), show(
        problems
    )


def test_start_input_required_of_wrong_json_type_is_wrong_type():
    doc = linear(template("a"), start_node=start(name={"type": "string", "required": "yes"}))
    assert ("/nodes/0/params/inputs/name/required", "wrong_type") in check(doc)


# --- on_error: default -----------------------------------------------------------------------


def test_on_error_default_without_default_is_missing_default():
    problems = validate_document(linear(code("a", on_error="default")))
    assert has(problems, "missing_default", "/nodes/1", "/nodes/1/default"), show(problems)


def test_default_missing_a_declared_output_is_missing_default():
    outputs = {"a": {"type": "integer"}, "b": {"type": "string"}}
    doc = linear(code("c", outputs=outputs, on_error="default", default={"a": 1}))
    problems = validate_document(doc)
    assert has(problems, "missing_default", "/nodes/1/default", "/nodes/1/default/b"), show(
        problems
    )


def test_default_that_is_not_an_object_is_wrong_type():
    doc = linear(code("a", on_error="default", default=0))
    assert ("/nodes/1/default", "wrong_type") in check(doc)


@pytest.mark.parametrize("value", ["fallback", None])
def test_default_for_a_fixed_output_type_is_valid(value):
    doc = linear(template("a", on_error="default", default={"text": value}))
    assert check(doc) == set()


def test_default_for_a_fixed_output_type_needs_its_outputs():
    problems = validate_document(linear(template("a", on_error="default", default={})))
    assert has(problems, "missing_default", "/nodes/1/default", "/nodes/1/default/text"), show(
        problems
    )


def test_default_for_a_node_without_outputs_is_an_empty_object():
    assert check(linear(wait("a", on_error="default", default={}))) == set()


# --- integer, number and the other types in literal values -----------------------------------

VALID_VALUES = [
    ("integer", 3),
    ("integer", -7),
    ("integer", None),
    ("number", 3),
    ("number", 2.5),
    ("number", 2.0),
    ("number", None),
    ("string", ""),
    ("boolean", False),
    ("object", {"a": [1]}),
    ("array", [1, "x", None]),
    ("any", 3.5),
    ("any", {"k": [None]}),
]
INVALID_VALUES = [
    ("integer", 3.0),
    ("integer", json.loads("1e2")),
    ("integer", 2.5),
    ("integer", True),
    ("integer", False),
    ("integer", "3"),
    ("number", True),
    ("number", "2"),
    ("string", 1),
    ("string", True),
    ("boolean", 1),
    ("boolean", 0),
    ("boolean", "true"),
    ("object", []),
    ("array", {}),
    ("array", "abc"),
]


@pytest.mark.parametrize(("type_", "value"), VALID_VALUES)
def test_default_value_matching_its_output_type_is_valid(type_, value):
    doc = linear(
        code("a", outputs={"v": {"type": type_}}, on_error="default", default={"v": value})
    )
    assert check(doc) == set()


@pytest.mark.parametrize(("type_", "value"), INVALID_VALUES)
def test_default_value_not_matching_its_output_type_is_wrong_type(type_, value):
    doc = linear(
        code("a", outputs={"v": {"type": type_}}, on_error="default", default={"v": value})
    )
    assert ("/nodes/1/default/v", "wrong_type") in check(doc)


def test_default_array_item_not_matching_item_type_is_wrong_type():
    spec = {"type": "array", "items": {"type": "integer"}}
    doc = linear(code("a", outputs={"v": spec}, on_error="default", default={"v": [1, 2.5]}))
    problems = validate_document(doc)
    assert has(problems, "wrong_type", "/nodes/1/default/v", "/nodes/1/default/v/1"), show(problems)


@pytest.mark.parametrize(("type_", "value"), VALID_VALUES)
def test_start_input_default_matching_its_type_is_valid(type_, value):
    first = start(x={"type": type_, "default": value})
    assert check(linear(template("a"), start_node=first)) == set()


@pytest.mark.parametrize(("type_", "value"), INVALID_VALUES)
def test_start_input_default_not_matching_its_type_is_wrong_type(type_, value):
    first = start(x={"type": type_, "default": value})
    doc = linear(template("a"), start_node=first)
    assert ("/nodes/0/params/inputs/x/default", "wrong_type") in check(doc)


def test_start_input_array_default_with_wrong_item_is_wrong_type():
    first = start(x={"type": "array", "items": {"type": "integer"}, "default": [1, 3.0]})
    problems = validate_document(linear(template("a"), start_node=first))
    paths = ("/nodes/0/params/inputs/x/default", "/nodes/0/params/inputs/x/default/1")
    assert has(problems, "wrong_type", *paths), show(problems)


def test_start_input_declaration_with_every_key_is_valid():
    decl = {"type": "string", "required": False, "default": "hi", "description": "greeting"}
    assert check(linear(template("a"), start_node=start(x=decl))) == set()
