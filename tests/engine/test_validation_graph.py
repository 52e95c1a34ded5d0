"""Validation of the graph: edges, branches, cycles, start/end, reachability (docs/dsl.md §4)."""

from __future__ import annotations

import pytest

from engine import validate_document

from .flowfactory import (
    body,
    body_start,
    case,
    chain,
    check,
    code,
    codes,
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
)


def route(*case_ids: str, **kw) -> dict:
    return if_else(
        "route", *(case(c, cond("{{start.n}}", "gt", i)) for i, c in enumerate(case_ids)), **kw
    )


# --- edge structure --------------------------------------------------------------------------


def test_unknown_edge_key_is_unknown_field():
    doc = linear(template("a"))
    doc["edges"][0]["label"] = "go"
    assert check(doc) == {("/edges/0/label", "unknown_field")}


def test_edge_that_is_not_an_object_is_wrong_type():
    doc = linear(template("a"))
    doc["edges"].append("a->end")
    assert ("/edges/2", "wrong_type") in check(doc)


@pytest.mark.parametrize(("key", "value"), [("from", 5), ("to", ["end"]), ("branch", 1)])
def test_edge_key_of_wrong_json_type_is_wrong_type(key, value):
    doc = linear(template("a"))
    doc["edges"][1][key] = value
    assert (f"/edges/1/{key}", "wrong_type") in check(doc)


@pytest.mark.parametrize("key", ["from", "to"])
def test_edge_without_from_or_to_is_missing_field(key):
    doc = linear(template("a"))
    del doc["edges"][1][key]
    problems = validate_document(doc)
    assert has(problems, "missing_field", "/edges/1", f"/edges/1/{key}"), show(problems)


def test_edge_to_an_unknown_node_is_unknown_node():
    doc = linear(template("a"))
    doc["edges"].append(edge("a", "ghost"))
    assert ("/edges/2/to", "unknown_node") in check(doc)


def test_edge_from_an_unknown_node_is_unknown_node():
    doc = linear(template("a"))
    doc["edges"].append(edge("ghost", "a"))
    assert ("/edges/2/from", "unknown_node") in check(doc)


def test_body_edge_to_a_node_of_the_outer_graph_is_unknown_node():
    graph = simple_body()
    graph["edges"].append(edge("inner", "each"))
    assert ("/nodes/1/params/body/edges/2/to", "unknown_node") in check(iteration_flow(graph))


def test_repeated_edge_is_the_only_problem_reported_as_duplicate_edge():
    doc = linear(template("a"))
    doc["edges"].append(edge("start", "a"))
    assert check(doc) == {("/edges/2", "duplicate_edge")}


def test_repeated_branch_edge_is_duplicate_edge():
    doc = routed(route("long"))
    doc["edges"].append(edge("route", "to_long", "long"))
    assert ("/edges/5", "duplicate_edge") in check(doc)


def test_edges_between_the_same_nodes_with_different_branches_are_not_duplicates():
    nodes = [start(n="number"), route("long", "short"), template("a"), template("b"), end()]
    edges = [
        edge("start", "route"),
        edge("route", "a", "long"),
        edge("route", "a", "short"),
        edge("route", "b", "else"),
        edge("a", "end"),
        edge("b", "end"),
    ]
    assert check(flow(nodes, edges)) == set()


# --- branches --------------------------------------------------------------------------------


def test_edge_from_if_else_without_branch_is_missing_branch():
    doc = routed(route("long"))
    del doc["edges"][1]["branch"]
    problems = validate_document(doc)
    assert has(problems, "missing_branch", "/edges/1/branch", "/edges/1"), show(problems)


def test_edge_from_question_with_options_without_branch_is_missing_branch():
    doc = routed(question("ask", options=["yes", "no"]), handles=("yes", "no"))
    del doc["edges"][2]["branch"]
    problems = validate_document(doc)
    assert has(problems, "missing_branch", "/edges/2/branch", "/edges/2"), show(problems)


def test_edge_from_question_with_timeout_without_branch_is_missing_branch():
    ask = question("ask", params={"timeout_s": 60})
    doc = routed(ask, handles=("timeout",))
    doc["edges"].append(edge("ask", "end"))
    problems = validate_document(doc)
    assert has(problems, "missing_branch", "/edges/3/branch", "/edges/3"), show(problems)


def test_on_error_branch_without_error_edge_is_missing_branch():
    problems = validate_document(linear(code("risky", on_error="branch")))
    assert has(problems, "missing_branch", "/nodes/1", "/nodes/1/on_error"), show(problems)


def test_plain_node_edge_with_a_non_error_branch_is_unknown_branch():
    doc = linear(template("a"))
    doc["edges"][1]["branch"] = "long"
    assert ("/edges/1/branch", "unknown_branch") in check(doc)


@pytest.mark.parametrize("on_error", [None, "fail", "default"])
def test_error_branch_without_on_error_branch_is_unknown_branch(on_error):
    risky = code("risky")
    if on_error:
        risky["on_error"] = on_error
    if on_error == "default":
        risky["default"] = {"n": 0}
    assert ("/edges/2/branch", "unknown_branch") in check(error_branch_flow(risky))


def test_if_else_edge_naming_an_unknown_case_is_unknown_branch():
    doc = routed(route("long"), handles=("long", "short"))
    assert ("/edges/2/branch", "unknown_branch") in check(doc)


def test_if_else_edge_with_error_branch_without_on_error_branch_is_unknown_branch():
    doc = routed(route("long"), handles=("long", "error"))
    assert ("/edges/2/branch", "unknown_branch") in check(doc)


def test_question_edge_naming_an_unknown_option_is_unknown_branch():
    doc = routed(question("ask", options=["yes", "no"]), handles=("yes", "maybe"))
    assert ("/edges/2/branch", "unknown_branch") in check(doc)


def test_question_timeout_edge_without_timeout_s_is_unknown_branch():
    doc = routed(question("ask", options=["yes", "no"]), handles=("yes", "timeout"))
    assert ("/edges/2/branch", "unknown_branch") in check(doc)


def test_question_without_options_or_timeout_is_a_plain_node():
    assert check(linear(question("ask"))) == set()
    assert ("/edges/1/branch", "unknown_branch") in check(routed(question("ask"), handles=("yes",)))


def test_question_with_options_and_timeout_uses_option_ids_and_timeout_as_handles():
    ask = question("ask", options=["yes", "no"], params={"timeout_s": 3600})
    assert check(routed(ask, handles=("yes", "no", "timeout"))) == set()


def test_error_edge_from_node_with_on_error_branch_is_valid():
    assert check(error_branch_flow(code("risky", on_error="branch"))) == set()


def test_if_else_with_on_error_branch_may_use_the_error_handle():
    doc = routed(route("long", on_error="branch"), handles=("long", "else", "error"))
    assert check(doc) == set()


def test_node_with_on_error_branch_may_have_only_an_error_edge():
    nodes = [start(), code("risky", on_error="branch"), template("fix"), end()]
    edges = [edge("start", "risky"), edge("risky", "fix", "error"), edge("fix", "end")]
    assert check(flow(nodes, edges)) == set()


@pytest.mark.parametrize("handles", [("long",), ("else",), ("long", "else")])
def test_not_every_if_else_handle_needs_an_edge(handles):
    assert check(routed(route("long", "short"), handles=handles)) == set()


def test_not_every_question_handle_needs_an_edge():
    ask = question("ask", options=["yes", "no"], params={"timeout_s": 60})
    assert check(routed(ask, handles=("no",))) == set()


# --- cycles ----------------------------------------------------------------------------------


def cycle_problems(doc):
    return [p for p in validate_document(doc) if p.code == "cycle"]


def test_self_loop_is_a_cycle_naming_the_node():
    doc = linear(template("loopy"))
    doc["edges"].append(edge("loopy", "loopy"))
    found = cycle_problems(doc)
    assert [p.path for p in found] == ["/edges/2"]
    assert "loopy" in found[0].message


def test_three_node_cycle_is_one_cycle_problem_naming_its_nodes():
    nodes = [start(), template("alpha"), template("beta"), template("gamma"), end()]
    edges = chain("start", "alpha", "beta", "gamma", "end")
    edges.append(edge("gamma", "alpha"))
    doc = flow(nodes, edges)
    problems = validate_document(doc)
    assert codes(problems) == {"cycle"}, show(problems)
    assert len(problems) == 1
    assert problems[0].path in {"/edges/1", "/edges/2", "/edges/4"}
    for name in ("alpha", "beta", "gamma"):
        assert name in problems[0].message


def test_two_separate_cycles_are_two_cycle_problems():
    nodes = [start(), template("a1"), template("a2"), template("b1"), template("b2"), end()]
    edges = chain("start", "a1", "a2", "b1", "b2", "end")
    edges += [edge("a2", "a1"), edge("b2", "b1")]
    found = cycle_problems(flow(nodes, edges))
    assert len(found) == 2
    assert {p.path for p in found} <= {"/edges/1", "/edges/3", "/edges/5", "/edges/6"}


def test_cycle_whose_nodes_reference_each_other_is_reported_without_raising():
    nodes = [start(), template("a", "{{b.text}}"), template("b", "{{a.text}}"), end()]
    edges = [*chain("start", "a", "b", "end"), edge("b", "a")]
    found = cycle_problems(flow(nodes, edges))
    assert len(found) == 1
    assert found[0].path in {"/edges/1", "/edges/3"}


def test_cycle_inside_an_iteration_body_is_reported_with_a_body_path():
    graph = body(
        [body_start(), template("p"), template("q"), end()],
        [*chain("bstart", "p", "q", "end"), edge("q", "p")],
    )
    found = cycle_problems(iteration_flow(graph))
    assert len(found) == 1
    assert found[0].path in {"/nodes/1/params/body/edges/1", "/nodes/1/params/body/edges/3"}


# --- start and end ---------------------------------------------------------------------------


def test_flow_without_start_is_missing_start():
    doc = flow([template("a"), end()], [edge("a", "end")])
    assert ("/nodes", "missing_start") in check(doc)


def test_flow_with_two_starts_is_extra_start():
    nodes = [start(), start("start2"), template("a"), end()]
    edges = [edge("start", "a"), edge("start2", "a"), edge("a", "end")]
    assert ("/nodes", "extra_start") in check(flow(nodes, edges))


def test_flow_without_end_is_missing_end():
    doc = flow([start(), template("a")], [edge("start", "a")])
    assert ("/nodes", "missing_end") in check(doc)


def test_flow_with_two_ends_is_extra_end():
    nodes = [start(), template("a"), end(), end("end2")]
    edges = [edge("start", "a"), edge("a", "end"), edge("a", "end2")]
    assert ("/nodes", "extra_end") in check(flow(nodes, edges))


def test_empty_flow_is_missing_start_and_missing_end():
    found = check(flow([], []))
    assert {("/nodes", "missing_start"), ("/nodes", "missing_end")} <= found


def test_iteration_body_without_end_is_missing_end():
    graph = body([body_start(), template("inner")], [edge("bstart", "inner")])
    assert ("/nodes/1/params/body/nodes", "missing_end") in check(iteration_flow(graph))


def test_iteration_body_without_start_is_missing_start():
    graph = body([template("inner"), end()], [edge("inner", "end")])
    assert ("/nodes/1/params/body/nodes", "missing_start") in check(iteration_flow(graph))


def test_iteration_body_with_two_starts_is_extra_start():
    graph = simple_body()
    graph["nodes"].append(body_start("other"))
    graph["edges"].append(edge("other", "inner"))
    assert ("/nodes/1/params/body/nodes", "extra_start") in check(iteration_flow(graph))


# --- reachability ----------------------------------------------------------------------------


def test_node_without_a_path_from_start_is_the_only_problem_reported_as_unreachable():
    doc = linear(template("a"))
    doc["nodes"].append(template("lost"))
    doc["edges"].append(edge("lost", "end"))
    assert check(doc) == {("/nodes/3", "unreachable")}


def test_every_node_behind_an_unreachable_one_is_unreachable():
    doc = linear(template("a"))
    doc["nodes"] += [template("lost1"), template("lost2")]
    doc["edges"] += chain("lost1", "lost2", "end")
    found = check(doc)
    assert {("/nodes/3", "unreachable"), ("/nodes/4", "unreachable")} <= found


def test_node_without_a_path_to_end_is_the_only_problem_reported_as_dead_end():
    doc = linear(template("a"))
    doc["nodes"].append(template("stray"))
    doc["edges"].append(edge("start", "stray"))
    assert check(doc) == {("/nodes/3", "dead_end")}


def test_every_node_before_a_dead_end_only_is_dead_end():
    doc = linear(template("a"))
    doc["nodes"] += [template("stray1"), template("stray2")]
    doc["edges"] += chain("start", "stray1", "stray2")
    found = check(doc)
    assert {("/nodes/3", "dead_end"), ("/nodes/4", "dead_end")} <= found


def test_isolated_node_is_unreachable_and_dead_end():
    doc = linear(template("a"))
    doc["nodes"].append(template("alone"))
    assert check(doc) == {("/nodes/3", "unreachable"), ("/nodes/3", "dead_end")}


def test_unreachable_node_in_an_iteration_body_has_a_body_path():
    graph = simple_body()
    graph["nodes"].append(template("lost"))
    graph["edges"].append(edge("lost", "end"))
    assert ("/nodes/1/params/body/nodes/3", "unreachable") in check(iteration_flow(graph))


def test_dead_end_in_an_iteration_body_has_a_body_path():
    graph = simple_body()
    graph["nodes"].append(template("stray"))
    graph["edges"].append(edge("bstart", "stray"))
    assert ("/nodes/1/params/body/nodes/3", "dead_end") in check(iteration_flow(graph))


def test_node_reaching_end_only_through_an_error_edge_is_not_a_dead_end():
    nodes = [start(), code("risky", on_error="branch"), template("fix"), end()]
    edges = [edge("start", "risky"), edge("risky", "fix", "error"), edge("fix", "end")]
    assert "dead_end" not in codes(validate_document(flow(nodes, edges)))


def test_unknown_type_node_still_takes_part_in_the_graph():
    doc = linear(node("odd", "teleport", params={}))
    assert check(doc) == {("/nodes/1/type", "unknown_type")}
