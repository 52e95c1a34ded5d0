"""Values and references at run time (docs/dsl.md §3)."""

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from .runflows import (
    aggregate,
    case,
    chain,
    edge,
    end,
    finished,
    flow,
    if_else,
    linear,
    run,
    start,
    template,
)


async def resolve(expression, value):
    """What the value expression resolves to, with `{{start.v}}` holding `value`."""
    doc = linear(inputs={"v": "any"}, outputs={"x": expression})
    result, _ = await run(doc, {"v": value})
    assert result.status == "succeeded", result.error
    return result.outputs["x"]


async def render(text, value):
    """What a template node renders, with `{{start.v}}` holding `value`."""
    doc = linear(template("t", text), inputs={"v": "any"}, outputs={"x": "{{t.text}}"})
    result, _ = await run(doc, {"v": value})
    assert result.status == "succeeded", result.error
    return result.outputs["x"]


# --- a whole reference keeps the value's type ----------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        6,
        2.0,
        -0.5,
        12345678901234567890,
        "text",
        "",
        True,
        False,
        None,
        [1, "a", None, {"k": [2.0]}],
        {"b": 1, "a": {"d": [1, 2], "c": None}},
        {},
        [],
    ],
)
async def test_whole_reference_keeps_value_and_type(value):
    resolved = await resolve("{{start.v}}", value)
    assert resolved == value
    assert type(resolved) is type(value)


async def test_integer_stays_integer_and_float_stays_float():
    assert type(await resolve("{{start.v}}", 6)) is int
    two = await resolve("{{start.v}}", 2.0)
    assert two == 2.0 and type(two) is float


async def test_whole_reference_with_spaces_inside_braces_keeps_type():
    assert await resolve("{{ start.v }}", 6) == 6
    assert await resolve("{{start.v   }}", {"a": 1}) == {"a": 1}
    assert type(await resolve("{{  start.v}}", 6)) is int


async def test_references_inside_nested_values_are_resolved_with_their_types():
    expression = {"k": "{{start.v}}", "l": ["{{start.v}}", "n={{start.v}}", 7, None, True]}
    assert await resolve(expression, 6) == {"k": 6, "l": [6, "n=6", 7, None, True]}


async def test_literal_values_without_references_pass_through_unchanged():
    literal = {"a": [1, 2.5, "x", None, False], "b": "no braces here"}
    assert await resolve(literal, 0) == literal


async def test_node_started_records_resolved_inputs_with_their_types():
    doc = linear(
        template("t", "{{v}}", inputs={"v": "{{start.v}}", "lit": 3, "txt": "v={{start.v}}"}),
        inputs={"v": "any"},
    )
    _, events = await run(doc, {"v": {"z": 2.0, "a": 6}})
    started = [e for e in events if e["type"] == "node.started" and e["data"]["node"] == "t"]
    assert started[0]["data"]["inputs"] == {
        "v": {"z": 2.0, "a": 6},
        "lit": 3,
        "txt": 'v={"a":6,"z":2.0}',
    }


# --- text rendering --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("abc", "abc"),
        ("", ""),
        ('say "hi"\n', 'say "hi"\n'),
        (None, ""),
        (6, "6"),
        (2.0, "2.0"),
        (-0.5, "-0.5"),
        (1e-07, "1e-07"),
        (12345678901234567890, "12345678901234567890"),
        (True, "true"),
        (False, "false"),
        ([1, "a", None], '[1,"a",null]'),
        ({"b": 1, "a": 2}, '{"a":2,"b":1}'),
        ({"b": [1, {"d": 1, "c": 2}], "a": "é"}, '{"a":"é","b":[1,{"c":2,"d":1}]}'),
        ({"é": "ü 漢字"}, '{"é":"ü 漢字"}'),
        ([], "[]"),
        ({}, "{}"),
    ],
)
async def test_template_renders_values_as_text(value, text):
    assert await render("{{start.v}}", value) == text
    assert await render("<{{start.v}}>", value) == f"<{text}>"


@pytest.mark.parametrize("value", [6, 2.0, True, None, {"a": 1}, [1]])
async def test_template_with_one_reference_is_always_a_string(value):
    rendered = await render("{{start.v}}", value)
    assert isinstance(rendered, str)


@pytest.mark.parametrize(
    ("expression", "value", "expected"),
    [
        ("n={{start.v}}", 6, "n=6"),
        (" {{start.v}}", 6, " 6"),
        ("{{start.v}} ", 2.0, "2.0 "),
        ("{{start.v}}{{start.v}}", 6, "66"),
        ("x{{start.v}}", None, "x"),
        (
            "{{start.v}}!",
            {"b": [1, {"d": 1, "c": 2}], "a": "é"},
            '{"a":"é","b":[1,{"c":2,"d":1}]}!',
        ),
        ("[{{start.v}}]", "plain", "[plain]"),
    ],
)
async def test_value_expression_with_text_around_references_renders_a_string(
    expression, value, expected
):
    assert await resolve(expression, value) == expected


async def test_no_url_or_html_escaping_is_applied():
    raw = "<b>Tom & Jerry</b> a/b?c=d e+f %20 'q' \"dq\""
    doc = linear(
        template("t", "[{{start.v}}]"),
        inputs={"v": "string"},
        outputs={"t": "{{t.text}}", "mixed": "={{start.v}}"},
        answer="{{start.v}}",
    )
    result, _ = await run(doc, {"v": raw})
    assert result.outputs == {"t": f"[{raw}]", "mixed": f"={raw}"}
    assert result.answer == raw


# --- paths -----------------------------------------------------------------------------

DOC = {
    "a": {"b": {"items": [{"title": "T0"}, {"title": "T1", "tags": ["x", "y"]}]}},
    "s": "str",
    "n": 5,
    "f": True,
    "z": None,
    "m": [[1, 2], [3]],
}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a.b.items[0].title", "T0"),
        ("a.b.items[1].title", "T1"),
        ("a.b.items[1]", {"title": "T1", "tags": ["x", "y"]}),
        ("a.b.items[1].tags[1]", "y"),
        ("m[1][0]", 3),
        ("m[0]", [1, 2]),
        ("s", "str"),
        ("n", 5),
        ("f", True),
        ("z", None),
    ],
)
async def test_path_steps_into_objects_and_arrays(path, expected):
    assert await resolve("{{start.v." + path + "}}", DOC) == expected


@pytest.mark.parametrize(
    "path",
    [
        "missing",
        "missing.deeper",
        "missing.deeper[3].x",
        "a.b.items[2]",
        "a.b.items[5].title",
        "a.b.items[0].missing",
        "m[1][7]",
        "z.x",
        "z[0]",
        "z.x.y[2]",
    ],
)
async def test_missing_key_out_of_range_index_or_step_into_null_resolves_to_null(path):
    assert await resolve("{{start.v." + path + "}}", DOC) is None


async def test_null_from_a_path_renders_as_empty_text():
    assert await resolve("<{{start.v.missing.x}}>", DOC) == "<>"


@pytest.mark.parametrize(
    "path",
    ["s.x", "s[0]", "n.x", "n[0]", "f.x", "a.b.items[0].title.x", "a.b.items[1].tags[0].y"],
)
async def test_step_into_string_number_or_boolean_fails_the_node_with_bad_path(path):
    doc = linear(
        template("t", "{{v}}", inputs={"v": "{{start.v." + path + "}}"}),
        inputs={"v": "any"},
        outputs={"out": "{{t.text}}"},
    )
    result, events = await run(doc, {"v": DOC})
    assert result.status == "failed"
    assert result.nodes["t"].status == "failed"
    error = result.error
    assert (error["code"], error["node"], error["attempt"]) == ("bad_path", "t", 1)
    assert error == result.nodes["t"].error
    assert events[-1]["type"] == "run.finished"
    assert events[-1]["data"]["status"] == "failed"
    assert events[-1]["data"]["error"]["code"] == "bad_path"
    assert not [e for e in events if e["type"] == "node.started" and e["data"]["node"] == "end"]


async def test_bad_path_inside_a_template_param_fails_that_node():
    doc = linear(template("t", "len {{start.v.s.length}}"), inputs={"v": "any"})
    result, _ = await run(doc, {"v": DOC})
    assert result.status == "failed"
    assert result.error["code"] == "bad_path"
    assert result.error["node"] == "t"
    assert result.error["attempt"] == 1


# --- skipped nodes -----------------------------------------------------------------------


def _flow_with_skipped_node(outputs, answer=None):
    """`check` always chooses `yes`, so `b` (on `else`) is skipped."""
    nodes = [
        start({"v": "any"}),
        if_else("check", case("yes")),
        template("a", "A"),
        template("b", "B"),
        end(outputs, answer=answer),
    ]
    edges = [
        edge("start", "check"),
        edge("check", "a", "yes"),
        edge("check", "b", "else"),
        edge("a", "end"),
        edge("b", "end"),
    ]
    return flow(nodes, edges)


async def test_reference_to_a_skipped_node_resolves_to_null():
    doc = _flow_with_skipped_node(
        {"out_a": "{{a.text}}", "out_b": "{{b.text}}", "b_text": "[{{b.text}}]"},
        answer="a={{a.text}} b={{b.text}}",
    )
    result, _ = await run(doc, {"v": 1})
    assert result.status == "succeeded"
    assert result.nodes["b"].status == "skipped"
    assert result.outputs == {"out_a": "A", "out_b": None, "b_text": "[]"}
    assert result.answer == "a=A b="


async def test_aggregate_takes_first_non_null_source_with_its_type():
    nodes = [
        start({"v": "any"}),
        if_else("check", case("yes")),
        template("a", "A"),
        template("b", "B"),
        aggregate("merge", ["{{b.text}}", "{{start.v}}", "{{a.text}}"]),
        end({"value": "{{merge.value}}"}),
    ]
    edges = [
        edge("start", "check"),
        edge("check", "a", "yes"),
        edge("check", "b", "else"),
        *chain("a", "merge", "end"),
        edge("b", "merge"),
    ]
    result, _ = await run(flow(nodes, edges), {"v": {"x": 2.0}})
    assert result.outputs == {"value": {"x": 2.0}}
    result, _ = await run(flow(nodes, edges), {"v": None})
    assert result.outputs == {"value": "A"}
    result, _ = await run(flow(nodes, edges), {"v": False})
    assert result.outputs == {"value": False}


# --- literal braces and spaces -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{'{{'}}", "{{"),
        ("a {{'{{'}} b", "a {{ b"),
        ("{{'{{'}}start.v}}", "{{start.v}}"),
        ("{{'{{'}}{{start.v}}}}", "{{Ada}}"),
        ("}} and { and }", "}} and { and }"),
        ("{{ start.v }}", "Ada"),
        ("{{start.v }}/{{   start.v}}", "Ada/Ada"),
    ],
)
async def test_literal_braces_and_spaces_inside_braces(text, expected):
    assert await render(text, "Ada") == expected
    assert await resolve(text, "Ada") == expected


# --- sys -------------------------------------------------------------------------------


def _sys_flow():
    return linear(
        template("t", "{{sys.run_id}}|{{sys.flow}}|{{sys.flow_version}}|{{sys.started_at}}"),
        outputs={
            "run_id": "{{sys.run_id}}",
            "flow": "{{sys.flow}}",
            "version": "{{sys.flow_version}}",
            "started_at": "{{sys.started_at}}",
            "text": "{{t.text}}",
        },
    )


async def test_sys_run_id_is_the_id_the_run_was_given():
    run_id = str(uuid.uuid4())
    result, events = await run(_sys_flow(), run_id=run_id)
    assert result.outputs["run_id"] == run_id
    assert result.outputs["text"].startswith(run_id + "|")
    assert {e["run"] for e in events} == {run_id}


async def test_sys_run_id_without_one_given_is_a_uuid_matching_the_events():
    result, events = await run(_sys_flow())
    uuid.UUID(result.outputs["run_id"])
    assert {e["run"] for e in events} == {result.outputs["run_id"]}


async def test_sys_flow_and_numbered_version():
    result, _ = await run(_sys_flow(), flow="length-router", version=3)
    assert result.outputs["flow"] == "length-router"
    assert result.outputs["version"] == 3
    assert type(result.outputs["version"]) is int
    assert result.outputs["text"].split("|")[1:3] == ["length-router", "3"]


async def test_sys_flow_version_of_a_draft_is_draft():
    result, _ = await run(_sys_flow(), flow="hello")
    assert result.outputs["version"] == "draft"
    assert result.outputs["text"].split("|")[2] == "draft"


async def test_sys_started_at_is_iso_8601_utc_ending_in_z():
    before = datetime.now(UTC)
    result, _ = await run(_sys_flow())
    started_at = result.outputs["started_at"]
    assert isinstance(started_at, str)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", started_at), started_at
    moment = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    assert before - timedelta(seconds=2) <= moment <= datetime.now(UTC)
    assert result.outputs["text"].split("|")[3] == started_at


# --- own input names in templates and the answer ----------------------------------------


async def test_template_reads_its_own_inputs_by_name_and_ancestors_by_id():
    doc = linear(
        template(
            "t",
            "Hi {{who}} ({{user.name}}, {{user.tags[1]}}) from {{start.city}}",
            inputs={"who": "{{start.user.name}}", "user": "{{start.user}}"},
        ),
        inputs={"user": "object", "city": "string"},
        outputs={"text": "{{t.text}}"},
    )
    result, _ = await run(doc, {"user": {"name": "Ada", "tags": ["a", "b"]}, "city": "Oslo"})
    assert result.outputs == {"text": "Hi Ada (Ada, b) from Oslo"}


async def test_end_answer_uses_end_inputs_by_name_and_ancestors():
    doc = linear(
        template("greet", "Hello, {{start.name}}!"),
        inputs={"name": "string", "user": "object"},
        outputs={"name": "{{start.name}}", "user": "{{start.user}}", "n": "{{start.user.n}}"},
        answer="Dear {{name}} ({{user.name}}, {{n}}): {{greet.text}} {{user}}",
    )
    result, events = await run(doc, {"name": "Ada", "user": {"name": "Lovelace", "n": 2.0}})
    assert result.status == "succeeded"
    expected = 'Dear Ada (Lovelace, 2.0): Hello, Ada! {"n":2.0,"name":"Lovelace"}'
    assert result.answer == expected
    assert events[-1]["data"]["answer"] == expected
    assert result.outputs == {
        "name": "Ada",
        "user": {"name": "Lovelace", "n": 2.0},
        "n": 2.0,
    }
    assert finished(events, "end")["data"]["status"] == "succeeded"
