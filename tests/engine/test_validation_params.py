"""Validation of single nodes: their keys, ids, types, params, outputs, retry, timeout_s,
on_error and default (docs/dsl.md §2, §5), and integer/number typing of literal values."""

from __future__ import annotations

import json

import pytest

from engine import validate_document

from .flowfactory import (
    body,
    body_start,
    case,
    chain,
    check,
    code,
    cond,
    edge,
    end,
    error_branch_flow,
    flow,
    has,
    if_else,
    iteration_flow,
    linear,
    node,
    question,
    routed,
    show,
    simple_body,
    start,
    template,
    wait,
)


def long_case(**kw):
    return case("long", cond("{{start.n}}", "gt", 3), **kw)


# --- the example node of §2 ------------------------------------------------------------------


def test_the_example_code_node_of_the_dsl_is_valid():
    measure = {
        "id": "measure",
        "type": "code",
        "title": "Measure the text",
        "inputs": {"text": "{{start.text}}"},
        "params": {"code": "def main(text):\n    return {'length': len(text)}"},
        "outputs": {"length": {"type": "integer"}},
        "retry": {
            "max_attempts": 3,
            "backoff_ms": 200,
            "multiplier": 2.0,
            "max_backoff_ms": 5000,
            "jitter": True,
        },
        "timeout_s": 30,
        "on_error": "default",
        "default": {"length": 0},
    }
    problems = validate_document(linear(measure, start_node=start(text="string")))
    assert problems == [], show(problems)


# --- unknown keys ----------------------------------------------------------------------------


def test_unknown_node_key_is_unknown_field():
    assert check(linear(template("a", colour="red"))) == {("/nodes/1/colour", "unknown_field")}


def test_unknown_param_is_unknown_field():
    doc = linear(node("a", "template", params={"template": "x", "extra": 1}))
    assert check(doc) == {("/nodes/1/params/extra", "unknown_field")}


def test_unknown_retry_key_is_unknown_field():
    doc = linear(template("a", retry={"max_attempts": 2, "tries": 3}))
    assert check(doc) == {("/nodes/1/retry/tries", "unknown_field")}


def test_unknown_key_in_output_spec_is_unknown_field():
    doc = linear(code("a", outputs={"n": {"type": "integer", "desc": "typo"}}))
    assert check(doc) == {("/nodes/1/outputs/n/desc", "unknown_field")}


def test_unknown_key_in_start_input_declaration_is_unknown_field():
    doc = linear(template("a"), start_node=start(name={"type": "string", "requird": True}))
    assert ("/nodes/0/params/inputs/name/requird", "unknown_field") in check(doc)


def test_unknown_key_in_if_else_case_is_unknown_field():
    doc = routed(if_else("route", long_case(when="now")))
    assert ("/nodes/1/params/cases/0/when", "unknown_field") in check(doc)


def test_unknown_key_in_if_else_condition_is_unknown_field():
    condition = {**cond("{{start.n}}", "gt", 3), "negate": True}
    doc = routed(if_else("route", case("long", condition)))
    assert ("/nodes/1/params/cases/0/conditions/0/negate", "unknown_field") in check(doc)


def test_unknown_key_in_question_option_is_unknown_field():
    ask = question("ask", options=["yes", "no"])
    ask["params"]["options"][1]["colour"] = "red"
    doc = routed(ask, handles=("yes", "no"))
    assert ("/nodes/1/params/options/1/colour", "unknown_field") in check(doc)


def test_unknown_key_in_iteration_body_is_unknown_field():
    graph = {**simple_body(), "extra": []}
    assert ("/nodes/1/params/body/extra", "unknown_field") in check(iteration_flow(graph))


def test_unknown_key_in_iteration_body_is_reported_at_an_escaped_pointer():
    graph = {**simple_body(), "a/b": 1, "c~d": 2}
    found = check(iteration_flow(graph))
    assert found == {
        ("/nodes/1/params/body/a~1b", "unknown_field"),
        ("/nodes/1/params/body/c~0d", "unknown_field"),
    }


def test_unknown_end_param_is_unknown_field():
    doc = linear(end_node=node("end", "end", params={"answr": "typo"}))
    assert check(doc) == {("/nodes/1/params/answr", "unknown_field")}


def test_unknown_key_in_an_iteration_body_node_is_unknown_field():
    graph = simple_body()
    graph["nodes"][1]["colour"] = "red"
    assert check(iteration_flow(graph)) == {
        ("/nodes/1/params/body/nodes/1/colour", "unknown_field")
    }


def test_unknown_key_in_default_is_unknown_field():
    doc = linear(code("a", on_error="default", default={"n": 0, "zzz": 1}))
    assert ("/nodes/1/default/zzz", "unknown_field") in check(doc)


# --- missing keys ----------------------------------------------------------------------------


def test_node_without_id_is_missing_field():
    doc = flow(
        [start(), {"type": "template", "params": {"template": "x"}}, end()],
        [edge("start", "end")],
    )
    problems = validate_document(doc)
    assert has(problems, "missing_field", "/nodes/1", "/nodes/1/id"), show(problems)


def test_node_without_type_is_missing_field():
    doc = linear({"id": "a", "params": {"template": "x"}})
    problems = validate_document(doc)
    assert has(problems, "missing_field", "/nodes/1", "/nodes/1/type"), show(problems)


def test_code_node_without_outputs_is_missing_field():
    doc = linear(node("a", "code", params={"code": "def main():\n    return {}"}))
    problems = validate_document(doc)
    assert has(problems, "missing_field", "/nodes/1", "/nodes/1/outputs"), show(problems)


@pytest.mark.parametrize(
    ("type_", "params", "missing"),
    [
        ("template", {}, "template"),
        ("code", {"language": "python"}, "code"),
        ("http", {"method": "GET"}, "url"),
        ("subflow", {"version": "published"}, "flow"),
        ("aggregate", {}, "sources"),
        ("wait", {}, "seconds"),
        ("question", {"options": [{"id": "ok", "label": "Ok"}]}, "question"),
        ("iteration", {"items": "{{start.name}}"}, "body"),
        ("iteration", {"body": simple_body()}, "items"),
    ],
)
def test_missing_required_param_is_missing_field(type_, params, missing):
    extra = {"outputs": {"n": {"type": "integer"}}} if type_ == "code" else {}
    doc = linear(node("a", type_, params=params, **extra))
    problems = validate_document(doc)
    assert has(problems, "missing_field", "/nodes/1/params", f"/nodes/1/params/{missing}"), show(
        problems
    )


def test_start_input_declaration_without_type_is_missing_field():
    doc = linear(template("a"), start_node=start(name={"required": True}))
    problems = validate_document(doc)
    paths = ("/nodes/0/params/inputs/name", "/nodes/0/params/inputs/name/type")
    assert has(problems, "missing_field", *paths), show(problems)


def test_output_spec_without_type_is_missing_field():
    doc = linear(code("a", outputs={"n": {"description": "a number"}}))
    problems = validate_document(doc)
    assert has(problems, "missing_field", "/nodes/1/outputs/n", "/nodes/1/outputs/n/type"), show(
        problems
    )


def test_if_else_case_without_id_is_missing_field():
    doc = routed(if_else("route", {"conditions": []}))
    problems = validate_document(doc)
    paths = ("/nodes/1/params/cases/0", "/nodes/1/params/cases/0/id")
    assert has(problems, "missing_field", *paths), show(problems)


def test_if_else_condition_without_op_is_missing_field():
    doc = routed(if_else("route", case("long", {"left": 1, "right": 2})))
    problems = validate_document(doc)
    paths = ("/nodes/1/params/cases/0/conditions/0", "/nodes/1/params/cases/0/conditions/0/op")
    assert has(problems, "missing_field", *paths), show(problems)


def test_question_option_without_id_is_missing_field():
    ask = question("ask", options=["yes", "no"])
    del ask["params"]["options"][0]["id"]
    problems = validate_document(routed(ask, handles=("yes", "no")))
    paths = ("/nodes/1/params/options/0", "/nodes/1/params/options/0/id")
    assert has(problems, "missing_field", *paths), show(problems)


# --- not allowed -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [
        template("a"),
        wait("a"),
        node("a", "aggregate", params={"sources": ["{{start.name}}"]}),
        node("a", "llm", params={"provider": "echo", "model": "echo-1", "prompt": "hi"}),
    ],
    ids=["template", "wait", "aggregate", "llm"],
)
def test_outputs_on_a_non_code_node_is_not_allowed(subject):
    subject = {**subject, "outputs": {"text": {"type": "string"}}}
    assert ("/nodes/1/outputs", "not_allowed") in check(linear(subject))


def test_outputs_on_an_iteration_node_is_not_allowed():
    doc = iteration_flow(node_kw={"outputs": {"results": {"type": "array"}}})
    assert ("/nodes/1/outputs", "not_allowed") in check(doc)


def test_outputs_on_the_end_node_is_not_allowed():
    last = {**end(out="{{start.name}}"), "outputs": {"out": {"type": "string"}}}
    assert ("/nodes/1/outputs", "not_allowed") in check(linear(end_node=last))


def test_outputs_on_the_start_node_is_not_allowed():
    first = {**start(name="string"), "outputs": {"name": {"type": "string"}}}
    assert ("/nodes/0/outputs", "not_allowed") in check(linear(template("a"), start_node=first))


@pytest.mark.parametrize(
    "subject",
    [
        question("a", timeout_s=5),
        node("a", "subflow", params={"flow": "hello"}, timeout_s=5),
    ],
    ids=["question", "subflow"],
)
def test_timeout_s_on_question_or_subflow_is_not_allowed(subject):
    assert ("/nodes/1/timeout_s", "not_allowed") in check(linear(subject))


def test_timeout_s_on_iteration_is_not_allowed():
    doc = iteration_flow(node_kw={"timeout_s": 5})
    assert ("/nodes/1/timeout_s", "not_allowed") in check(doc)


@pytest.mark.parametrize(
    "subject",
    [template("a", timeout_s=5), wait("a", timeout_s=0.5), code("a", timeout_s=86_400)],
    ids=["template", "wait", "code"],
)
def test_timeout_s_on_other_nodes_is_valid(subject):
    assert check(linear(subject)) == set()


def test_inputs_on_start_is_not_allowed():
    first = {**start(name="string"), "inputs": {"x": "1"}}
    doc = linear(template("a"), start_node=first)
    assert check(doc) == {("/nodes/0/inputs", "not_allowed")}


def test_on_error_default_on_if_else_is_not_allowed():
    route = if_else("route", long_case(), on_error="default", default={"branch": "else"})
    assert ("/nodes/1/on_error", "not_allowed") in check(routed(route))


def test_on_error_default_on_question_with_options_is_not_allowed():
    ask = question(
        "ask", options=["yes", "no"], on_error="default", default={"answer": None, "option": None}
    )
    assert ("/nodes/1/on_error", "not_allowed") in check(routed(ask, handles=("yes", "no")))


def test_params_on_iteration_body_start_is_not_allowed():
    graph = simple_body()
    graph["nodes"][0]["params"] = {"inputs": {}}
    doc = iteration_flow(graph)
    assert ("/nodes/1/params/body/nodes/0/params", "not_allowed") in check(doc)


def test_on_error_default_on_a_plain_question_is_valid():
    ask = question("ask", on_error="default", default={"answer": None, "option": None})
    assert check(linear(ask)) == set()


@pytest.mark.parametrize("on_error", [None, "fail", "branch"])
def test_default_without_on_error_default_is_not_allowed(on_error):
    extra = {"on_error": on_error} if on_error else {}
    risky = code("risky", default={"n": 0}, **extra)
    doc = error_branch_flow(risky) if on_error == "branch" else linear(risky)
    assert ("/nodes/1/default", "not_allowed") in check(doc)


# --- wrong JSON types ------------------------------------------------------------------------


def test_node_that_is_not_an_object_is_wrong_type():
    doc = flow([start(), 5, end()], [edge("start", "end")])
    assert ("/nodes/1", "wrong_type") in check(doc)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("id", 5),
        ("type", ["template"]),
        ("title", 5),
        ("inputs", ["x"]),
        ("params", ["x"]),
        ("retry", 3),
        ("timeout_s", "30"),
        ("timeout_s", True),
        ("on_error", 5),
        ("title", None),
        ("retry", None),
        ("inputs", None),
    ],
)
def test_node_key_of_wrong_json_type_is_wrong_type(key, value):
    doc = linear(template("a"))
    doc["nodes"][1][key] = value
    assert (f"/nodes/1/{key}", "wrong_type") in check(doc)


def test_code_outputs_of_wrong_json_type_is_wrong_type():
    assert ("/nodes/1/outputs", "wrong_type") in check(linear(code("a", outputs=[])))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_attempts", "3"),
        ("max_attempts", True),
        ("backoff_ms", "1"),
        ("multiplier", "2"),
        ("max_backoff_ms", [1]),
        ("jitter", "yes"),
        ("jitter", 1),
    ],
)
def test_retry_key_of_wrong_json_type_is_wrong_type(key, value):
    doc = linear(template("a", retry={key: value}))
    assert (f"/nodes/1/retry/{key}", "wrong_type") in check(doc)


@pytest.mark.parametrize(
    ("subject", "param"),
    [
        (node("a", "template", params={"template": 5}), "template"),
        (code("a", source=["def main(): pass"]), "code"),
        (node("a", "aggregate", params={"sources": "{{start.name}}"}), "sources"),
        (
            node("a", "http", params={"url": "http://x.test", "fail_on_status": "no"}),
            "fail_on_status",
        ),
        (node("a", "http", params={"url": "http://x.test", "headers": ["a"]}), "headers"),
        (question("a", params={"options": "yes"}), "options"),
        (node("a", "if_else", params={"cases": "long"}), "cases"),
    ],
    ids=["template", "code", "aggregate", "fail_on_status", "headers", "options", "cases"],
)
def test_param_of_wrong_json_type_is_wrong_type(subject, param):
    assert (f"/nodes/1/params/{param}", "wrong_type") in check(linear(subject))


def test_iteration_concurrency_of_wrong_json_type_is_wrong_type():
    doc = iteration_flow(concurrency="4")
    assert ("/nodes/1/params/concurrency", "wrong_type") in check(doc)


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


# --- if_else ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case_id", ["else", "error", "timeout", "Long", "1st", "", "a-b", "long\n", "a" * 65]
)
def test_if_else_case_id_reserved_or_bad_pattern_is_invalid_param(case_id):
    doc = routed(if_else("route", case(case_id)), handles=("else",))
    assert ("/nodes/1/params/cases/0/id", "invalid_param") in check(doc)


def test_duplicate_if_else_case_id_is_invalid_param():
    doc = routed(if_else("route", long_case(), long_case()))
    assert ("/nodes/1/params/cases/1/id", "invalid_param") in check(doc)


@pytest.mark.parametrize("op", ["between", "==", "EQ", "matches", ""])
def test_unknown_if_else_operator_is_invalid_param(op):
    doc = routed(if_else("route", case("long", cond("{{start.n}}", op, 3))))
    assert ("/nodes/1/params/cases/0/conditions/0/op", "invalid_param") in check(doc)


def test_unknown_if_else_match_is_invalid_param():
    doc = routed(if_else("route", long_case(match="some")))
    assert ("/nodes/1/params/cases/0/match", "invalid_param") in check(doc)


@pytest.mark.parametrize(
    ("op", "right"),
    [
        ("eq", 1),
        ("ne", None),
        ("gt", 1),
        ("ge", 1.5),
        ("lt", "{{start.n}}"),
        ("le", 0),
        ("contains", "a"),
        ("not_contains", "a"),
        ("starts_with", "a"),
        ("ends_with", "a"),
        ("in", [1, 2]),
        ("not_in", ["a"]),
    ],
)
def test_every_binary_if_else_operator_is_valid(op, right):
    doc = routed(if_else("route", case("long", cond("{{start.n}}", op, right))))
    assert check(doc) == set()


@pytest.mark.parametrize("op", ["is_empty", "not_empty"])
def test_unary_if_else_operator_without_right_is_valid(op):
    doc = routed(if_else("route", case("long", {"left": "{{start.name}}", "op": op})))
    assert check(doc) == set()


def test_unary_if_else_operator_with_right_is_rejected():
    condition = {"left": "{{start.name}}", "op": "is_empty", "right": "x"}
    problems = validate_document(routed(if_else("route", case("long", condition))))
    path = "/nodes/1/params/cases/0/conditions/0/right"
    assert any(has(problems, c, path) for c in ("invalid_param", "unknown_field", "not_allowed")), (
        show(problems)
    )


def test_binary_if_else_operator_without_right_is_missing_field():
    condition = {"left": "{{start.name}}", "op": "eq"}
    problems = validate_document(routed(if_else("route", case("long", condition))))
    paths = ("/nodes/1/params/cases/0/conditions/0", "/nodes/1/params/cases/0/conditions/0/right")
    assert has(problems, "missing_field", *paths), show(problems)


@pytest.mark.parametrize("match", ["all", "any"])
def test_if_else_match_all_or_any_and_empty_conditions_are_valid(match):
    doc = routed(
        if_else("route", case("long", match=match), case("short", match=match)),
        handles=("long", "short", "else"),
    )
    assert check(doc) == set()


def test_output_named_error_with_on_error_branch_is_invalid_param():
    risky = code("risky", outputs={"error": {"type": "string"}}, on_error="branch")
    problems = validate_document(error_branch_flow(risky))
    paths = ("/nodes/1/outputs/error", "/nodes/1/outputs", "/nodes/1/on_error")
    assert has(problems, "invalid_param", *paths), show(problems)


def test_output_named_error_without_on_error_branch_is_valid():
    assert check(linear(code("a", outputs={"error": {"type": "string"}}))) == set()


# --- code ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "def helper():\n    return {'n': 1}",
        "def main(:\n    return {}",
        "def main():\n  return {'n': 1}\n    x = 2",
    ],
    ids=["no-main", "syntax-error", "indentation-error"],
)
def test_code_without_main_or_that_does_not_parse_is_invalid_param(source):
    assert ("/nodes/1/params/code", "invalid_param") in check(linear(code("a", source)))


def test_empty_code_is_rejected():
    problems = validate_document(linear(code("a", "")))
    path = "/nodes/1/params/code"
    assert has(problems, "invalid_param", path) or has(problems, "invalid_value", path), show(
        problems
    )


def test_code_is_a_literal_so_braces_in_it_are_not_references():
    source = "def main(text):\n    return {'n': len('{{ghost.x}} {{' + text)}"
    doc = linear(code("a", source, inputs={"text": "{{start.name}}"}))
    assert check(doc) == set()


@pytest.mark.parametrize("language", ["javascript", "Python", "python3"])
def test_code_language_other_than_python_is_invalid_param(language):
    subject = code("a")
    subject["params"]["language"] = language
    assert ("/nodes/1/params/language", "invalid_param") in check(linear(subject))


def test_code_language_python_is_valid():
    subject = code("a")
    subject["params"]["language"] = "python"
    assert check(linear(subject)) == set()


# --- http, llm, wait, question, iteration, subflow -------------------------------------------


def test_http_node_with_every_param_is_valid():
    params = {
        "method": "POST",
        "url": "https://api.example.com/{{start.name}}",
        "headers": {"X-Name": "{{start.name}}"},
        "query": {"q": "{{start.name}}"},
        "body": {"name": "{{start.name}}", "tags": ["a", 1]},
        "timeout_s": 10,
        "expect": "json",
        "fail_on_status": False,
    }
    assert check(linear(node("fetch", "http", params=params))) == set()


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_http_common_methods_are_valid(method):
    params = {"url": "https://api.example.com/", "method": method}
    assert check(linear(node("fetch", "http", params=params))) == set()


@pytest.mark.parametrize("expect", ["json", "text", "auto"])
def test_http_expect_values_are_valid(expect):
    params = {"url": "https://api.example.com/", "expect": expect}
    assert check(linear(node("fetch", "http", params=params))) == set()


@pytest.mark.parametrize(("param", "value"), [("method", "FETCH"), ("expect", "xml")])
def test_http_enumeration_param_with_unknown_value_is_invalid_param(param, value):
    params = {"url": "https://api.example.com/", param: value}
    doc = linear(node("fetch", "http", params=params))
    assert (f"/nodes/1/params/{param}", "invalid_param") in check(doc)


def test_llm_node_with_every_param_is_valid():
    params = {
        "provider": "echo",
        "model": "echo-1",
        "system": "Be brief about {{start.name}}.",
        "prompt": "Summary: {{start.name}}",
        "temperature": 0.2,
        "max_tokens": 100,
    }
    assert check(linear(node("ask", "llm", params=params))) == set()


@pytest.mark.parametrize("seconds", [0, 0.5, 86_400, "{{start.n}}", "{{ start.n }}"])
def test_wait_seconds_number_or_whole_reference_is_valid(seconds):
    assert check(linear(wait("w", seconds), start_node=start(n="number"))) == set()


@pytest.mark.parametrize("seconds", [-1, 86_401])
def test_wait_seconds_out_of_range_is_invalid_value(seconds):
    doc = linear(wait("w", seconds), start_node=start(n="number"))
    assert ("/nodes/1/params/seconds", "invalid_value") in check(doc)


@pytest.mark.parametrize("seconds", [True, [1], {"s": 1}])
def test_wait_seconds_of_wrong_json_type_is_wrong_type(seconds):
    doc = linear(wait("w", seconds), start_node=start(n="number"))
    assert ("/nodes/1/params/seconds", "wrong_type") in check(doc)


@pytest.mark.parametrize("seconds", ["soon", "5", "{{start.n}}s", "wait {{start.n}}"])
def test_wait_seconds_string_that_is_not_one_whole_reference_is_invalid_param(seconds):
    doc = linear(wait("w", seconds), start_node=start(n="number"))
    assert ("/nodes/1/params/seconds", "invalid_param") in check(doc)


@pytest.mark.parametrize("option_id", ["else", "error", "timeout", "Yes", "1", ""])
def test_question_option_id_reserved_or_bad_pattern_is_invalid_param(option_id):
    ask = question("ask", options=["yes", "no"])
    ask["params"]["options"][1]["id"] = option_id
    doc = routed(ask, handles=("yes",))
    assert ("/nodes/1/params/options/1/id", "invalid_param") in check(doc)


def test_duplicate_question_option_id_is_invalid_param():
    ask = question("ask", options=["yes", "yes"])
    doc = routed(ask, handles=("yes",))
    assert ("/nodes/1/params/options/1/id", "invalid_param") in check(doc)


def test_question_timeout_over_30_days_is_invalid_value():
    ask = question("ask", params={"timeout_s": 30 * 86_400 + 1})
    assert ("/nodes/1/params/timeout_s", "invalid_value") in check(
        routed(ask, handles=("timeout",))
    )


def test_question_timeout_of_30_days_is_valid():
    ask = question("ask", params={"timeout_s": 30 * 86_400})
    assert check(routed(ask, handles=("timeout",))) == set()


@pytest.mark.parametrize("concurrency", [0, 33])
def test_iteration_concurrency_out_of_range_is_invalid_value(concurrency):
    doc = iteration_flow(concurrency=concurrency)
    assert ("/nodes/1/params/concurrency", "invalid_value") in check(doc)


@pytest.mark.parametrize(
    "params",
    [
        {"concurrency": 1, "on_item_error": "fail"},
        {"concurrency": 32, "on_item_error": "skip"},
        {"on_item_error": "null"},
    ],
)
def test_iteration_params_within_range_are_valid(params):
    assert check(iteration_flow(**params)) == set()


def test_unknown_iteration_on_item_error_is_invalid_param():
    doc = iteration_flow(on_item_error="ignore")
    assert ("/nodes/1/params/on_item_error", "invalid_param") in check(doc)


@pytest.mark.parametrize("version", ["published", 1, 12])
def test_subflow_version_published_or_a_number_is_valid(version):
    sub = node("sub", "subflow", params={"flow": "hello", "version": version})
    assert check(linear(sub)) == set()


def test_subflow_version_that_is_another_word_is_invalid_param():
    sub = node("sub", "subflow", params={"flow": "hello", "version": "latest"})
    assert ("/nodes/1/params/version", "invalid_param") in check(linear(sub))
