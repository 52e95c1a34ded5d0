"""Validation of references in value expressions and templates, and of iteration scopes
(docs/dsl.md §3, §5.9)."""

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
    cond,
    edge,
    end,
    error_branch_flow,
    flow,
    has,
    if_else,
    iteration,
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


def fork(left: dict, right: dict) -> dict:
    """start -> left -> end and start -> right -> end: left (/nodes/1) and right (/nodes/2)
    are siblings."""
    nodes = [start(name="string"), left, right, end()]
    edges = [edge("start", left["id"]), edge("start", right["id"])]
    edges += [edge(left["id"], "end"), edge(right["id"], "end")]
    return flow(nodes, edges)


# --- where a reference is found --------------------------------------------------------------

GHOST = "{{ghost.value}}"

LOCATIONS = {
    "template": (lambda: linear(template("a", f"Hi {GHOST}")), "/nodes/1/params/template"),
    "node input": (lambda: linear(template("a", inputs={"x": GHOST})), "/nodes/1/inputs/x"),
    "nested input": (
        lambda: linear(end_node=end(x={"a": ["ok", GHOST]})),
        "/nodes/1/inputs/x/a/1",
    ),
    "escaped keys": (
        lambda: linear(end_node=end(x={"a/b": {"c~d": GHOST}})),
        "/nodes/1/inputs/x/a~1b/c~0d",
    ),
    "condition left": (
        lambda: routed(if_else("route", case("long", cond(GHOST, "gt", 1)))),
        "/nodes/1/params/cases/0/conditions/0/left",
    ),
    "condition right": (
        lambda: routed(if_else("route", case("long", cond(1, "lt", GHOST)))),
        "/nodes/1/params/cases/0/conditions/0/right",
    ),
    "aggregate source": (
        lambda: linear(node("m", "aggregate", params={"sources": ["{{start.name}}", GHOST]})),
        "/nodes/1/params/sources/1",
    ),
    "http url": (
        lambda: linear(node("h", "http", params={"url": f"https://x.test/{GHOST}"})),
        "/nodes/1/params/url",
    ),
    "http header": (
        lambda: linear(
            node("h", "http", params={"url": "https://x.test/", "headers": {"X-A": GHOST}})
        ),
        "/nodes/1/params/headers/X-A",
    ),
    "http query": (
        lambda: linear(node("h", "http", params={"url": "https://x.test/", "query": {"q": GHOST}})),
        "/nodes/1/params/query/q",
    ),
    "http body": (
        lambda: linear(
            node("h", "http", params={"url": "https://x.test/", "body": {"u": [GHOST]}})
        ),
        "/nodes/1/params/body/u/0",
    ),
    "llm prompt": (
        lambda: linear(
            node("l", "llm", params={"provider": "echo", "model": "m", "prompt": GHOST})
        ),
        "/nodes/1/params/prompt",
    ),
    "llm system": (
        lambda: linear(
            node(
                "l",
                "llm",
                params={"provider": "echo", "model": "m", "prompt": "p", "system": GHOST},
            )
        ),
        "/nodes/1/params/system",
    ),
    "question": (lambda: linear(question("q", GHOST)), "/nodes/1/params/question"),
    "wait seconds": (lambda: linear(wait("w", GHOST)), "/nodes/1/params/seconds"),
    "subflow input": (
        lambda: linear(node("s", "subflow", inputs={"name": GHOST}, params={"flow": "hello"})),
        "/nodes/1/inputs/name",
    ),
    "iteration items": (
        lambda: flow(
            [start(items="array"), iteration("each", GHOST, simple_body()), end()],
            chain("start", "each", "end"),
        ),
        "/nodes/1/params/items",
    ),
    "end answer": (
        lambda: linear(end_node=node("end", "end", params={"answer": GHOST})),
        "/nodes/1/params/answer",
    ),
}


@pytest.mark.parametrize("where", list(LOCATIONS))
def test_reference_problem_path_points_at_the_string_holding_it(where):
    build, path = LOCATIONS[where]
    assert (path, "unknown_reference") in check(build())


def test_reference_to_a_missing_node_is_the_only_problem_reported_as_unknown_reference():
    doc = linear(template("a", "{{ghost.text}}"))
    assert check(doc) == {("/nodes/1/params/template", "unknown_reference")}


@pytest.mark.parametrize("text", ["{{item}}", "{{index}}", "{{item.name}}", "{{ item }}"])
def test_item_or_index_outside_an_iteration_body_is_unknown_reference(text):
    assert ("/nodes/1/params/template", "unknown_reference") in check(linear(template("a", text)))


def test_reference_to_an_input_name_of_another_node_is_rejected():
    doc = linear(template("a", inputs={"text": "{{start.name}}"}), template("b", "{{text}}"))
    problems = validate_document(doc)
    path = "/nodes/2/params/template"
    assert has(problems, "unknown_reference", path) or has(problems, "bad_reference", path), show(
        problems
    )


# --- ancestors -------------------------------------------------------------------------------


def test_reference_to_a_sibling_branch_is_the_only_problem_reported_as_not_an_ancestor():
    doc = fork(template("a"), template("b", "{{a.text}}"))
    assert check(doc) == {("/nodes/2/params/template", "not_an_ancestor")}


def test_input_reference_to_a_sibling_branch_is_not_an_ancestor():
    doc = fork(template("a"), template("b", inputs={"x": "{{a.text}}"}))
    assert ("/nodes/2/inputs/x", "not_an_ancestor") in check(doc)


def test_reference_to_a_downstream_node_is_not_an_ancestor():
    doc = linear(template("a", "{{b.text}}"), template("b"))
    assert check(doc) == {("/nodes/1/params/template", "not_an_ancestor")}


def test_reference_of_a_node_to_itself_is_not_an_ancestor():
    doc = linear(template("a", "{{a.text}}"))
    assert check(doc) == {("/nodes/1/params/template", "not_an_ancestor")}


def test_reference_to_the_end_node_is_not_an_ancestor():
    doc = linear(template("a", "{{end.x}}"), end_node=end(x="{{start.name}}"))
    assert ("/nodes/1/params/template", "not_an_ancestor") in check(doc)


def test_end_node_may_reference_nodes_on_exclusive_branches():
    doc = routed(if_else("route", case("long", cond("{{start.n}}", "gt", 3))))
    doc["nodes"][-1] = end(
        long="{{to_long.text}}", short="{{to_else.text}}", branch="{{route.branch}}"
    )
    assert check(doc) == set()


def test_join_may_reference_every_branch_and_what_lies_before_them():
    doc = fork(template("a"), template("b"))
    doc["nodes"].insert(3, template("join", "{{a.text}}{{b.text}}{{start.name}}"))
    doc["edges"] = [*doc["edges"][:2], *chain("a", "join"), *chain("b", "join", "end")]
    assert check(doc) == set()


def test_node_after_an_error_edge_may_reference_the_error_output():
    doc = error_branch_flow(code("risky", on_error="branch"))
    doc["nodes"][2] = template("ok", "{{risky.n}} {{risky.error}}")
    assert check(doc) == set()


# --- outputs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "ref"),
    [
        (template("s"), "{{s.text}}"),
        (node("s", "aggregate", params={"sources": ["{{start.name}}"]}), "{{s.value}}"),
        (code("s", outputs={"n": {"type": "object"}}), "{{s.n.deep[3].x}}"),
        (node("s", "http", params={"url": "https://x.test/"}), "{{s.status}}"),
        (node("s", "http", params={"url": "https://x.test/"}), "{{s.headers}}"),
        (node("s", "http", params={"url": "https://x.test/"}), "{{s.body.items[0].title}}"),
        (node("s", "llm", params={"provider": "echo", "model": "m", "prompt": "p"}), "{{s.text}}"),
        (
            node("s", "llm", params={"provider": "echo", "model": "m", "prompt": "p"}),
            "{{s.usage.prompt_tokens}}",
        ),
        (question("s"), "{{s.answer}}"),
        (question("s"), "{{s.option}}"),
        (node("s", "subflow", params={"flow": "hello"}), "{{s.outputs.greeting}}"),
    ],
)
def test_reference_to_a_fixed_output_is_valid(subject, ref):
    assert check(linear(subject, template("use", ref))) == set()


def test_reference_to_if_else_branch_output_is_valid():
    doc = routed(if_else("route", case("long", cond("{{start.n}}", "gt", 3))))
    doc["nodes"][2] = template("to_long", "{{route.branch}}")
    assert check(doc) == set()


def test_reference_to_iteration_results_is_valid():
    assert check(iteration_flow()) == set()


@pytest.mark.parametrize(
    ("subject", "ref"),
    [
        (template("s"), "{{s.txt}}"),
        (code("s", outputs={"n": {"type": "integer"}}), "{{s.m}}"),
        (code("s"), "{{s.error}}"),
        (wait("s"), "{{s.done}}"),
        (question("s"), "{{s.branch}}"),
        (node("s", "subflow", params={"flow": "hello"}), "{{s.greeting}}"),
    ],
)
def test_reference_to_an_undeclared_output_is_unknown_output(subject, ref):
    doc = linear(subject, template("use", ref))
    assert check(doc) == {("/nodes/2/params/template", "unknown_output")}


def test_reference_to_an_undeclared_start_input_is_unknown_output():
    assert check(linear(template("a", "{{start.nope}}"))) == {
        ("/nodes/1/params/template", "unknown_output")
    }


def test_reference_to_an_undeclared_if_else_output_is_unknown_output():
    doc = routed(if_else("route", case("long", cond("{{start.n}}", "gt", 3))))
    doc["nodes"][2] = template("to_long", "{{route.case}}")
    assert ("/nodes/2/params/template", "unknown_output") in check(doc)


# --- syntax ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "{{start}}",
        "{{ start }}",
        "{{}}",
        "{{ }}",
        "{{start..name}}",
        "{{a..b}}",
        "{{start.}}",
        "{{.name}}",
        "{{start.name",
        "Hi {{start.name",
        "{{start.name}} and {{",
        "{{start.name | upper}}",
        "{{ start.name + 1 }}",
        "{{upper(start.name)}}",
        "{{start.name[0}}",
        "{{start name}}",
    ],
)
def test_reference_that_does_not_parse_is_bad_reference(text):
    assert ("/nodes/1/params/template", "bad_reference") in check(linear(template("a", text)))


@pytest.mark.parametrize("text", ["{{start}}", "{{a..b}}", "{{start.name"])
def test_bad_reference_in_a_value_expression_is_bad_reference(text):
    doc = linear(template("a", inputs={"x": text}))
    assert ("/nodes/1/inputs/x", "bad_reference") in check(doc)


@pytest.mark.parametrize(
    "text",
    [
        "{{'{{'}}",
        "Write {{'{{'}}name}} for a name, {{start.name}}",
        "a }} b",
        "{single} braces {}",
        "{{ start.name }}",
        "{{start.name }}",
        "{{  start.name}}",
        "no references at all",
    ],
)
def test_text_that_is_not_a_bad_reference_is_valid(text):
    assert check(linear(template("a", text))) == set()


def test_literal_double_brace_in_a_value_expression_is_valid():
    assert check(linear(template("a", inputs={"x": "{{'{{'}}"}))) == set()


@pytest.mark.parametrize("path", ["b", "b.items", "b.items[0].title", "b[2]", "b.items[10].x[0]"])
def test_reference_with_a_path_after_the_output_is_valid(path):
    src = code("src", outputs={"b": {"type": "any"}})
    assert check(linear(src, template("use", f"{{{{src.{path}}}}}"))) == set()


@pytest.mark.parametrize("key", ["run_id", "flow", "flow_version", "started_at"])
def test_sys_reference_is_valid(key):
    doc = linear(template("a", f"{{{{sys.{key}}}}}", inputs={"k": f"{{{{ sys.{key} }}}}"}))
    assert check(doc) == set()


def test_bare_sys_reference_is_bad_reference():
    doc = linear(template("a", "{{sys}}"))
    assert check(doc) == {("/nodes/1/params/template", "bad_reference")}


def test_unknown_sys_key_is_rejected():
    problems = validate_document(linear(template("a", "{{sys.nope}}")))
    path = "/nodes/1/params/template"
    assert has(problems, "unknown_output", path) or has(problems, "unknown_reference", path), show(
        problems
    )


def test_value_expressions_may_hold_any_json_value():
    last = end(n=1, f=2.5, b=True, z=None, s="", o={"k": [1, "{{start.name}}", {"d": None}]})
    assert check(linear(end_node=last)) == set()


def test_literal_values_are_not_scanned_for_references():
    ask = question("ask", options=["yes", "no"])
    ask["params"]["options"][0]["label"] = "{{ghost.label}}"
    doc = routed(ask, handles=("yes", "no"))
    doc["nodes"][0] = start(
        name="string", n="number", x={"type": "string", "default": "{{ghost.x}} {{"}
    )
    doc["nodes"][2] = template("to_yes", on_error="default", default={"text": "{{ghost.t}}"})
    assert check(doc) == set()


def test_braces_in_title_and_description_are_not_references():
    doc = linear(template("a", title="{{ghost.text}}"), description="Use {{start.nope}} {{")
    assert check(doc) == set()


# --- a template's own inputs -----------------------------------------------------------------


def test_template_may_use_its_own_input_names():
    subject = template(
        "a",
        "{{text}} / {{ user.name }} / {{user.tags[0]}} / {{start.name}}",
        inputs={"text": "{{start.name}}", "user": {"name": "{{start.name}}", "tags": ["x"]}},
    )
    assert check(linear(subject)) == set()


def test_end_answer_may_use_the_end_inputs():
    last = node(
        "end", "end", inputs={"greeting": "{{greet.text}}"}, params={"answer": "{{greeting}}!"}
    )
    assert check(linear(template("greet"), end_node=last)) == set()


@pytest.mark.parametrize(
    "subject",
    [
        node("h", "http", inputs={"q": "{{start.name}}"}, params={"url": "https://x.test/{{q}}"}),
        node(
            "h",
            "http",
            inputs={"q": "{{start.name}}"},
            params={"url": "https://x.test/", "headers": {"X-Q": "{{q}}"}, "query": {"q": "{{q}}"}},
        ),
        node(
            "l",
            "llm",
            inputs={"t": "{{start.name}}"},
            params={"provider": "echo", "model": "m", "prompt": "{{t}}", "system": "{{t}}"},
        ),
        question("q", "Is {{t}} ok?", inputs={"t": "{{start.name}}"}),
    ],
    ids=["http url", "http headers and query", "llm", "question"],
)
def test_other_template_params_may_use_own_input_names(subject):
    assert check(linear(subject)) == set()


def test_template_input_name_equal_to_a_referenced_node_id_is_ambiguous_reference():
    doc = linear(template("a"), template("b", "{{a.text}}", inputs={"a": "{{start.name}}"}))
    problems = validate_document(doc)
    paths = ("/nodes/2/params/template", "/nodes/2/inputs/a")
    assert has(problems, "ambiguous_reference", *paths), show(problems)


def test_end_input_name_equal_to_a_node_id_used_in_answer_is_ambiguous_reference():
    last = node("end", "end", inputs={"greet": "{{greet.text}}"}, params={"answer": "{{greet}}"})
    problems = validate_document(linear(template("greet"), end_node=last))
    paths = ("/nodes/2/params/answer", "/nodes/2/inputs/greet")
    assert has(problems, "ambiguous_reference", *paths), show(problems)


def test_end_input_named_like_a_node_is_valid_without_an_answer():
    assert check(linear(template("greet"), end_node=end(greet="{{greet.text}}"))) == set()


# --- iteration scopes ------------------------------------------------------------------------


def outer_flow(graph: dict, before: list[dict] = (), after: list[dict] = ()) -> dict:
    """start(items, name) -> *before -> each(graph) -> *after -> end."""
    nodes = [start(items="array", name="string"), *before]
    nodes += [iteration("each", "{{start.items}}", graph), *after, end(r="{{each.results}}")]
    return flow(nodes, chain(*(n["id"] for n in nodes)))


def body_of(*middle: dict, first: str = "bstart") -> dict:
    nodes = [body_start(first), *middle, end(out="{{item}}")]
    return body(nodes, chain(*(n["id"] for n in nodes)))


def test_body_may_reference_its_own_nodes_outer_ancestors_item_and_index():
    graph = body_of(
        template("one", "{{item}} #{{index}} {{item.name}} {{ item.tags[0] }} {{item[1]}}"),
        template("two", "{{one.text}} {{prep.text}} {{start.name}}"),
        code("three", inputs={"i": "{{index}}", "x": "{{item}}", "p": "{{prep.text}}"}),
    )
    doc = outer_flow(graph, before=[template("prep", "{{start.name}}")])
    assert check(doc) == set()


def test_body_node_ids_only_need_to_be_unique_within_the_body():
    graph = body_of(template("prep", "inner"), template("after", "{{item}}"))
    doc = outer_flow(graph, before=[template("prep")], after=[template("after")])
    assert check(doc) == set()


def test_body_node_id_equal_to_a_referenced_outer_ancestor_is_ambiguous_reference():
    graph = body_of(template("prep", "inner"), template("use", "{{prep.text}}"))
    doc = outer_flow(graph, before=[template("prep", "outer")])
    problems = validate_document(doc)
    paths = ("/nodes/2/params/body/nodes/2/params/template", "/nodes/2/params/body/nodes/1/id")
    assert has(problems, "ambiguous_reference", *paths), show(problems)


def test_body_start_named_start_referencing_the_outer_start_is_ambiguous_reference():
    graph = body_of(template("use", "{{start.name}}"), first="start")
    problems = validate_document(outer_flow(graph))
    paths = ("/nodes/1/params/body/nodes/1/params/template", "/nodes/1/params/body/nodes/0/id")
    assert has(problems, "ambiguous_reference", *paths), show(problems)


def test_body_start_named_start_is_valid_when_the_outer_start_is_not_referenced():
    graph = body_of(template("use", "{{item}}"), first="start")
    assert check(outer_flow(graph)) == set()


def test_body_reference_to_an_outer_node_that_is_not_an_ancestor_is_not_an_ancestor():
    graph = body_of(template("use", "{{side.text}}"))
    doc = outer_flow(graph)
    doc["nodes"].insert(2, template("side"))
    doc["edges"] += [edge("start", "side"), edge("side", "end")]
    assert ("/nodes/1/params/body/nodes/1/params/template", "not_an_ancestor") in check(doc)


def test_body_reference_to_a_node_after_the_iteration_is_not_an_ancestor():
    graph = body_of(template("use", "{{after.text}}"))
    doc = outer_flow(graph, after=[template("after")])
    assert ("/nodes/1/params/body/nodes/1/params/template", "not_an_ancestor") in check(doc)


def test_body_reference_to_the_iteration_node_itself_is_rejected():
    graph = body_of(template("use", "{{each.results}}"))
    problems = validate_document(outer_flow(graph))
    path = "/nodes/1/params/body/nodes/1/params/template"
    assert has(problems, "not_an_ancestor", path) or has(problems, "unknown_reference", path), show(
        problems
    )


def test_body_reference_to_a_later_body_node_is_not_an_ancestor():
    graph = body_of(template("one", "{{two.text}}"), template("two"))
    doc = outer_flow(graph)
    assert ("/nodes/1/params/body/nodes/1/params/template", "not_an_ancestor") in check(doc)


def test_outer_reference_to_a_body_node_is_unknown_reference():
    graph = body_of(template("inner"))
    doc = outer_flow(graph, after=[template("peek", "{{inner.text}}")])
    assert ("/nodes/2/params/template", "unknown_reference") in check(doc)


def test_iteration_items_may_not_use_item():
    doc = flow(
        [start(items="array"), iteration("each", "{{item}}", body_of()), end()],
        chain("start", "each", "end"),
    )
    assert ("/nodes/1/params/items", "unknown_reference") in check(doc)


def nested_flow(leaf_text: str) -> dict:
    inner = body(
        [body_start("s2"), template("leaf", leaf_text), end(out="{{leaf.text}}")],
        chain("s2", "leaf", "end"),
    )
    outer = body(
        [
            body_start("s1"),
            template("mid", "{{item.name}}"),
            iteration("inner", "{{item.children}}", inner),
            end(out="{{inner.results}}"),
        ],
        chain("s1", "mid", "inner", "end"),
    )
    nodes = [start(items="array", name="string"), iteration("outer", "{{start.items}}", outer)]
    nodes.append(end(results="{{outer.results}}"))
    return flow(nodes, chain("start", "outer", "end"))


def test_nested_iteration_bodies_see_every_enclosing_scope():
    doc = nested_flow("{{item}} #{{index}} of {{mid.text}} for {{start.name}}")
    assert check(doc) == set()


def test_nested_iteration_body_problem_has_a_path_through_both_bodies():
    doc = nested_flow("{{ghost.text}}")
    path = "/nodes/1/params/body/nodes/2/params/body/nodes/1/params/template"
    assert check(doc) == {(path, "unknown_reference")}


def test_nested_iteration_body_structure_problem_has_a_path_through_both_bodies():
    doc = nested_flow("{{item}}")
    inner = doc["nodes"][1]["params"]["body"]["nodes"][2]["params"]["body"]
    inner["edges"].append(edge("leaf", "nowhere"))
    path = "/nodes/1/params/body/nodes/2/params/body/edges/2/to"
    assert (path, "unknown_node") in check(doc)
