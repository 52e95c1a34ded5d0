"""Validation of the params of each node type: if_else, code, http, llm, wait, question, iteration,
subflow (docs/dsl.md §5)."""

from __future__ import annotations

import pytest

from engine import validate_document

from .flowfactory import (
    case,
    check,
    code,
    cond,
    error_branch_flow,
    has,
    if_else,
    iteration_flow,
    linear,
    long_case,
    node,
    question,
    routed,
    show,
    start,
    wait,
)

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
