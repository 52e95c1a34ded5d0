"""Validation of single nodes: their keys (unknown, missing, not allowed) and the JSON types of
their fields (docs/dsl.md §2, §5)."""

from __future__ import annotations

import pytest

from engine import validate_document

from .flowfactory import (
    case,
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
    long_case,
    node,
    question,
    routed,
    show,
    simple_body,
    start,
    template,
    wait,
)

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
