"""Validation of the document as a whole: root keys, settings, size and depth limits, the
problem objects themselves, the sample flows, the JSON Schema, and scale (docs/dsl.md §1, §7)."""

from __future__ import annotations

import json

import pytest

from engine import Problem, document_json_schema, validate_document

from .flowfactory import (
    chain,
    codes,
    codes_at,
    edge,
    end,
    flow,
    has,
    linear,
    load_flow,
    node,
    sample_flow_names,
    show,
    start,
    template,
    wait,
)

MIB = 1024 * 1024


def compact_size(doc) -> int:
    return len(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


# --- the sample flows ------------------------------------------------------------------------


def test_sample_flows_are_present():
    assert {"hello.json", "router.json", "batch.json", "resilient.json"} <= set(sample_flow_names())


@pytest.mark.parametrize("name", sample_flow_names())
def test_sample_flow_is_valid(name):
    problems = validate_document(load_flow(name))
    assert problems == [], show(problems)


def test_minimal_linear_flow_is_valid():
    doc = linear(template("greet", "Hello, {{start.name}}!"))
    assert validate_document(doc) == []


# --- problem objects -------------------------------------------------------------------------


def test_problem_has_path_code_message_and_to_dict():
    problems = validate_document(linear(template("a", "{{ghost.text}}")))
    assert problems, "an unknown reference must be reported"
    for p in problems:
        assert isinstance(p, Problem)
        assert isinstance(p.message, str) and p.message
        assert p.to_dict() == {"path": p.path, "code": p.code, "message": p.message}
        json.dumps(p.to_dict())


@pytest.mark.parametrize("value", [[], "astron/v1", None, 42, True, 1.5])
def test_non_object_document_is_a_wrong_type_problem_not_an_exception(value):
    problems = validate_document(value)
    assert ("", "wrong_type") in codes_at(problems), show(problems)


# --- dsl -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dsl", ["astron/v2", "astron/v1 ", "Astron/v1", "astron", ""])
def test_other_dsl_value_is_unsupported_dsl(dsl):
    problems = validate_document(linear(template("a"), dsl=dsl))
    assert ("/dsl", "unsupported_dsl") in codes_at(problems), show(problems)


def test_unsupported_dsl_is_the_only_problem_reported():
    doc = {"dsl": "astron/v9", "name": "", "nodes": 3, "bogus": True}
    assert codes_at(validate_document(doc)) == {("/dsl", "unsupported_dsl")}


def test_missing_dsl_is_missing_field():
    doc = linear(template("a"))
    del doc["dsl"]
    problems = validate_document(doc)
    assert has(problems, "missing_field", "", "/dsl"), show(problems)
    assert "unsupported_dsl" not in codes(problems)


# --- root keys -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["name", "nodes", "edges"])
def test_missing_required_root_key_is_missing_field(key):
    doc = linear(template("a"))
    del doc[key]
    problems = validate_document(doc)
    assert has(problems, "missing_field", "", f"/{key}"), show(problems)


def test_optional_root_keys_may_be_left_out():
    doc = linear(template("a"))
    assert "description" not in doc and "settings" not in doc
    assert validate_document(doc) == []


def test_unknown_root_key_is_the_only_problem_reported():
    doc = linear(template("a"), nmae="typo")
    assert codes_at(validate_document(doc)) == {("/nmae", "unknown_field")}


def test_unknown_settings_key_is_unknown_field():
    doc = linear(template("a"), settings={"timeout_s": 60, "retries": 3})
    assert codes_at(validate_document(doc)) == {("/settings/retries", "unknown_field")}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("name", 5),
        ("name", None),
        ("description", ["x"]),
        ("description", None),
        ("nodes", {}),
        ("edges", "none"),
        ("settings", []),
    ],
)
def test_root_key_of_wrong_json_type_is_wrong_type(key, value):
    doc = linear(template("a"))
    doc[key] = value
    problems = validate_document(doc)
    assert (f"/{key}", "wrong_type") in codes_at(problems), show(problems)


@pytest.mark.parametrize("name", ["", "n" * 201])
def test_name_empty_or_over_200_characters_is_invalid_value(name):
    problems = validate_document(linear(template("a"), name=name))
    assert ("/name", "invalid_value") in codes_at(problems), show(problems)


@pytest.mark.parametrize("name", ["x", "n" * 200, "Ünïcödé flow ✓"])
def test_name_of_1_to_200_characters_is_valid(name):
    assert validate_document(linear(template("a"), name=name)) == []


def test_description_over_10000_characters_is_invalid_value():
    problems = validate_document(linear(template("a"), description="d" * 10_001))
    assert ("/description", "invalid_value") in codes_at(problems), show(problems)


def test_description_of_10000_characters_or_empty_is_valid():
    assert validate_document(linear(template("a"), description="d" * 10_000)) == []
    assert validate_document(linear(template("a"), description="")) == []


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("timeout_s", 0),
        ("timeout_s", 0.5),
        ("timeout_s", -1),
        ("timeout_s", 86_401),
        ("max_steps", 0),
        ("max_steps", 1_000_001),
        ("concurrency", 0),
        ("concurrency", 1025),
    ],
)
def test_setting_out_of_range_is_invalid_value(key, value):
    problems = validate_document(linear(template("a"), settings={key: value}))
    assert (f"/settings/{key}", "invalid_value") in codes_at(problems), show(problems)


@pytest.mark.parametrize(
    "settings",
    [
        {"timeout_s": 1, "max_steps": 1, "concurrency": 1},
        {"timeout_s": 86_400, "max_steps": 1_000_000, "concurrency": 1024},
        {"timeout_s": 2.5},
        {},
    ],
)
def test_settings_within_range_are_valid(settings):
    assert validate_document(linear(template("a"), settings=settings)) == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("timeout_s", "600"),
        ("timeout_s", True),
        ("max_steps", "10"),
        ("max_steps", False),
        ("concurrency", [16]),
        ("concurrency", True),
    ],
)
def test_setting_of_wrong_json_type_is_wrong_type(key, value):
    problems = validate_document(linear(template("a"), settings={key: value}))
    assert (f"/settings/{key}", "wrong_type") in codes_at(problems), show(problems)


# --- size ------------------------------------------------------------------------------------


def test_document_over_1_mib_is_only_too_large():
    doc = linear(template("big", "x" * (MIB + 10)))
    del doc["name"]  # not reported: size is checked before anything else
    assert compact_size(doc) > MIB
    assert codes_at(validate_document(doc)) == {("", "too_large")}


def test_document_just_under_1_mib_is_not_too_large():
    doc = linear(template("big", "x" * 1_000_000))
    assert compact_size(doc) < MIB
    assert "too_large" not in codes(validate_document(doc))


def test_more_than_10000_nodes_is_too_large():
    nodes = [start(), *(wait(f"w{i}") for i in range(9_999)), end()]
    doc = flow(nodes, [edge("start", "end")])
    assert len(nodes) == 10_001 and compact_size(doc) < MIB
    problems = validate_document(doc)
    assert has(problems, "too_large", "", "/nodes"), show(problems)[:5]


def test_node_count_limit_counts_iteration_body_nodes():
    inner = [node("bstart", "start"), *(wait(f"b{i}") for i in range(5_000)), end()]
    body = {"nodes": inner, "edges": [edge("bstart", "end")]}
    each = node("each", "iteration", params={"items": [], "body": body})
    outer = [start(), each, *(wait(f"w{i}") for i in range(5_000)), end()]
    doc = flow(outer, chain("start", "each", "end"))
    assert compact_size(doc) < MIB
    problems = validate_document(doc)
    assert "too_large" in codes(problems), show(problems)[:5]


def test_chain_of_exactly_10000_nodes_is_valid():
    ids = ["start", *(f"w{i}" for i in range(9_998)), "end"]
    nodes = [start(), *(wait(i) for i in ids[1:-1]), end()]
    doc = flow(nodes, chain(*ids))
    assert len(nodes) == 10_000 and compact_size(doc) < MIB
    assert validate_document(doc) == []


def test_100k_node_document_is_refused_as_too_large():
    nodes = [start(), *(wait(f"w{i}") for i in range(100_000)), end()]
    doc = flow(nodes, [edge("start", "end")])
    assert codes_at(validate_document(doc)) == {("", "too_large")}  # time: bench/engine.py (d)


# --- depth -----------------------------------------------------------------------------------


def nested(levels: int, kind: str = "list"):
    """`levels` containers nested inside each other, built without recursion."""
    value: object = [] if kind == "list" else {}
    for _ in range(levels - 1):
        value = [value] if kind == "list" else {"k": value}
    return value


def deep_flow(levels: int, kind: str = "list") -> dict:
    """A valid-looking flow whose containers nest `levels` deep, root object included:
    root, /nodes, /nodes/2, /nodes/2/inputs, then the nested value."""
    return linear(template("a"), end_node=end(deep=nested(levels - 4, kind)))


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_document_nested_70_levels_is_only_too_deep(kind):
    doc = deep_flow(70, kind)
    del doc["name"]  # not reported: depth is checked before anything else
    assert codes_at(validate_document(doc)) == {("", "too_deep")}


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_document_nested_60_levels_is_not_too_deep(kind):
    assert validate_document(deep_flow(60, kind)) == []


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_document_nested_64_levels_is_valid_and_65_levels_is_too_deep(kind):
    assert validate_document(deep_flow(64, kind)) == []
    assert codes_at(validate_document(deep_flow(65, kind))) == {("", "too_deep")}


@pytest.mark.parametrize("kind", ["list", "dict"])
def test_document_nested_100000_levels_is_too_deep_without_raising(kind):
    doc = deep_flow(100_000, kind)
    assert codes_at(validate_document(doc)) == {("", "too_deep")}  # time: bench/engine.py (d)


# --- several problems at once ----------------------------------------------------------------


def test_three_unrelated_mistakes_are_all_listed():
    doc = linear(template("a", colour="red"), name="")
    doc["edges"].append(edge("a", "ghost"))
    found = codes_at(validate_document(doc))
    assert {
        ("/name", "invalid_value"),
        ("/nodes/1/colour", "unknown_field"),
        ("/edges/2/to", "unknown_node"),
    } <= found, found


def test_validation_goes_on_after_a_broken_node():
    doc = linear(
        node("mystery", "teleport"),
        template("b", "{{ghost.text}}"),
        template("c", retry={"max_attempts": 0}),
        settings={"concurrency": 0},
    )
    found = codes_at(validate_document(doc))
    assert {
        ("/nodes/1/type", "unknown_type"),
        ("/nodes/2/params/template", "unknown_reference"),
        ("/nodes/3/retry/max_attempts", "invalid_value"),
        ("/settings/concurrency", "invalid_value"),
    } <= found, found


def test_every_problem_of_the_same_kind_is_listed():
    doc = linear(template("a", "{{ghost.text}}"), template("b", "{{phantom.text}}"))
    found = codes_at(validate_document(doc))
    assert {
        ("/nodes/1/params/template", "unknown_reference"),
        ("/nodes/2/params/template", "unknown_reference"),
    } <= found, found


# --- scale -----------------------------------------------------------------------------------


def test_1000_node_chain_with_references_is_valid():
    ids = ["start", *(f"t{i}" for i in range(998)), "end"]
    middle = [template("t0", "{{start.name}}")]
    middle += [
        template(f"t{i}", f"{{{{t{i - 1}.text}}}} {{{{start.name}}}}") for i in range(1, 998)
    ]
    last = end(first="{{t0.text}}", last="{{t997.text}}", name="{{start.name}}")
    doc = flow([start(name="string"), *middle, last], chain(*ids))
    assert validate_document(doc) == []  # linear, not per path: bench/engine.py (d) times it


def test_1000_node_fan_out_and_join_is_valid():
    branches = [template(f"p{i}", "{{start.name}}") for i in range(998)]
    last = end(**{f"o{i}": f"{{{{p{i}.text}}}}" for i in range(998)})
    edges = [edge("start", f"p{i}") for i in range(998)] + [
        edge(f"p{i}", "end") for i in range(998)
    ]
    doc = flow([start(name="string"), *branches, last], edges)
    assert validate_document(doc) == []  # linear, not per path: bench/engine.py (d) times it


def diamonds(count: int) -> dict:
    nodes, edges, prev = [start(name="string")], [], "start"
    for i in range(count):
        nodes += [
            template(f"l{i}", f"{{{{{prev}.text}}}}" if prev != "start" else "{{start.name}}"),
            template(f"r{i}", "right"),
            template(f"j{i}", f"{{{{l{i}.text}}}}{{{{r{i}.text}}}}{{{{start.name}}}}"),
        ]
        edges += [edge(prev, f"l{i}"), edge(prev, f"r{i}")]
        edges += [edge(f"l{i}", f"j{i}"), edge(f"r{i}", f"j{i}")]
        prev = f"j{i}"
    nodes.append(end(out=f"{{{{{prev}.text}}}}", first="{{l0.text}}", name="{{start.name}}"))
    edges.append(edge(prev, "end"))
    return flow(nodes, edges)


def test_chain_of_30_diamonds_is_valid():
    assert validate_document(diamonds(30)) == []  # 2^30 paths, never walked (bench/engine.py)


def test_sibling_reference_in_the_last_of_30_diamonds_is_not_an_ancestor():
    doc = diamonds(30)
    index = next(i for i, n in enumerate(doc["nodes"]) if n["id"] == "r29")
    doc["nodes"][index]["params"]["template"] = "{{l29.text}}"
    found = codes_at(validate_document(doc))
    assert found == {(f"/nodes/{index}/params/template", "not_an_ancestor")}


# --- JSON Schema -----------------------------------------------------------------------------


def test_document_json_schema_is_a_serialisable_draft_2020_12_schema():
    schema = document_json_schema()
    assert isinstance(schema, dict)
    assert "2020-12" in schema["$schema"]
    json.dumps(schema)


def test_document_json_schema_accepts_the_sample_flows():
    jsonschema = pytest.importorskip("jsonschema")
    schema = document_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for name in sample_flow_names():
        errors = [e.message for e in validator.iter_errors(load_flow(name))]
        assert errors == [], (name, errors)


def test_document_json_schema_rejects_a_node_of_unknown_type():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(document_json_schema())
    doc = load_flow("hello.json")
    assert validator.is_valid(doc)
    doc["nodes"][1]["type"] = "teleport"
    assert not validator.is_valid(doc)


def test_document_json_schema_rejects_an_unknown_root_key():
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(document_json_schema())
    doc = load_flow("hello.json")
    doc["nmae"] = "typo"
    assert not validator.is_valid(doc)


# --- the editor's positions (ui) -------------------------------------------------------------


def test_node_position_is_valid_and_changes_nothing_but_the_document():
    doc = linear(template("t", ui={"x": -40.5, "y": 3e9}))
    assert validate_document(doc) == []


@pytest.mark.parametrize("ui, code, path", [
    ({"x": 1}, "missing_field", "/nodes/1/ui/y"),
    ({"x": "1", "y": 2}, "wrong_type", "/nodes/1/ui/x"),
    ({"x": 1, "y": 2, "zoom": 1}, "unknown_field", "/nodes/1/ui/zoom"),
    ({"x": 1, "y": True}, "wrong_type", "/nodes/1/ui/y"),
    ([1, 2], "wrong_type", "/nodes/1/ui"),
])
def test_bad_node_position_is_reported_at_its_pointer(ui, code, path):
    problems = validate_document(linear(template("t", ui=ui)))
    assert (path, code) in codes_at(problems), show(problems)


def test_schema_describes_the_node_position():
    node_schema = document_json_schema()["$defs"]["node"]
    assert node_schema["properties"]["ui"]["required"] == ["x", "y"]


def test_schema_says_what_each_node_type_does_and_outputs():
    """Editors read these annotations (docs/editor.md): a summary per type, and the outputs
    every node of it has, null where each node declares its own."""
    from engine.nodes import shared_default_registry

    registry = shared_default_registry()
    checks = document_json_schema()["$defs"]["node"]["allOf"]
    by_type = {check["if"]["properties"]["type"]["const"]: check["then"] for check in checks}
    assert set(by_type) == set(registry.names())
    for name, then in by_type.items():
        assert then["description"].endswith("."), name
        fixed = registry[name].fixed_outputs
        assert then["x-outputs"] == (None if fixed is None else list(fixed)), name
    assert by_type["code"]["x-outputs"] is None
    assert by_type["http"]["x-outputs"] == ["status", "headers", "body"]
