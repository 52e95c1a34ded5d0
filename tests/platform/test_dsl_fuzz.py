"""A DSL fuzzer: documents built from the published JSON Schema, then mutated, go through
`POST /api/flows/validate/`; every one found valid is saved and run, with small limits.

Whatever the document: no 5xx, no hang (each run ends, or waits for a person, within its
2 s `timeout_s`), no crash of the process. Node params come from each node type's own part
of the schema (`GET /api/dsl/schema/`, read by `values_of` below); the mutations then
drop keys, put random values and references anywhere, and add edges that may close cycles.

FUZZ_EXAMPLES documents (default 40; CI sets more).
"""

from __future__ import annotations

import copy
import os
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine import document_json_schema
from flows.execution.executor import executor
from flows.models import Run
from tests.platform import factories

pytestmark = pytest.mark.django_db(transaction=True)

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or 40)
SCHEMA = document_json_schema()
RUN_LIMITS = {"timeout_s": 2, "max_steps": 200, "concurrency": 4}
ENDED = {"succeeded", "failed", "cancelled", "waiting"}

# What a node's params may refer to: the other nodes' outputs, iteration variables, run
# facts, and things that do not exist or do not parse.
REFERENCES = ["{{start.x}}", "{{n1.text}}", "{{n2.value}}", "{{n1.branch}}", "{{item}}",
              "{{index}}", "{{sys.run_id}}", "{{nowhere.x}}", "{{n1}}", "{{ n2.body.a[0] }}",
              "{{'{{'}}", "{{", "}}", "{{start.x}}{{start.x}}", "a {{n3.text}} b"]
TINY_BODY = {"nodes": [{"id": "bstart", "type": "start"},
                       {"id": "bend", "type": "end", "inputs": {"v": "{{item}}"}}],
             "edges": [{"from": "bstart", "to": "bend"}]}


def params_schemas() -> dict[str, dict]:
    """Each node type's params schema, from the document schema's per-type rules. An
    iteration's body (the schema's one recursion) is a small valid graph, for the mutations
    to work on."""
    found = {}
    for rule in SCHEMA["$defs"]["node"]["allOf"]:
        kind = rule["if"]["properties"]["type"]["const"]
        params = copy.deepcopy(rule["then"]["properties"].get("params", {"type": "object"}))
        if "body" in params.get("properties", {}):
            params["properties"]["body"] = {"const": TINY_BODY}
        found[kind] = params
    return found


JSON = st.recursive(st.none() | st.booleans() | st.integers(-10, 10) | st.text(max_size=8)
                    | st.sampled_from(REFERENCES),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["a", "x", "text", "v"]), inner,
                                      max_size=3),
                    max_leaves=8)
TEMPLATES = st.lists(st.text(max_size=6) | st.sampled_from(REFERENCES), max_size=3).map("".join)


def values_of(schema: dict) -> st.SearchStrategy:
    """Values a JSON Schema accepts, for the keywords the DSL's schema uses. A schema that
    only describes (a value expression) takes any JSON or a reference; a string described as
    a template mixes text and references."""
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "anyOf" in schema:
        return st.one_of([values_of(option) for option in schema["anyOf"]])
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        optional = sorted(set(properties) - required)
        extra = schema.get("additionalProperties", True)

        @st.composite
        def objects(draw):
            value = {name: draw(values_of(properties[name])) for name in sorted(required)}
            for name in draw(st.lists(st.sampled_from(optional), unique=True)) if optional \
                    else ():
                value[name] = draw(values_of(properties[name]))
            if isinstance(extra, dict):
                for name in draw(st.lists(st.sampled_from(["a", "x", "text"]), unique=True,
                                          max_size=2)):
                    value[name] = draw(values_of(extra))
            return value

        return objects()
    if kind == "array":
        return st.lists(values_of(schema.get("items", {})), max_size=3)
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(
                lambda text: len(text) <= schema.get("maxLength", 64))
        if "template" in schema.get("description", ""):
            return TEMPLATES
        return st.text(min_size=schema.get("minLength", 0), max_size=12)
    if kind in ("number", "integer"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        high = min(schema.get("maximum", 100), 100)  # small numbers: short waits, few tokens
        numbers = st.integers(int(low), int(high)) if kind == "integer" else \
            st.floats(low, high, exclude_min="exclusiveMinimum" in schema)
        return numbers
    if kind == "boolean":
        return st.booleans()
    return JSON


PARAMS = {kind: values_of(schema) for kind, schema in params_schemas().items()}


@st.composite
def nodes_of_every_type(draw) -> dict[str, Any]:
    count = draw(st.integers(1, 4))
    middle = []
    for number in range(1, count + 1):
        kind = draw(st.sampled_from(sorted(set(PARAMS) - {"start", "end"})))
        node = {"id": f"n{number}", "type": kind, "params": draw(PARAMS[kind])}
        if kind == "code":
            node["outputs"] = {"text": {"type": "string"}}
        if draw(st.booleans()):
            node["on_error"] = draw(st.sampled_from(["fail", "default", "branch"]))
        middle.append(node)
    start = {"id": "start", "type": "start",
             "params": {"inputs": {"x": {"type": "string", "required": False}}}}
    end = {"id": "end", "type": "end", "inputs": {"out": draw(st.sampled_from(REFERENCES))}}
    ids = ["start", *(node["id"] for node in middle), "end"]
    edges = [{"from": a, "to": b} for a, b in pairwise(ids)]
    return {"dsl": "astron/v1", "name": "Fuzzed", "nodes": [start, *middle, end],
            "edges": edges}


def places(value: Any, path: tuple = ()) -> list[tuple]:
    """Every path into a JSON value (for the mutations to pick from)."""
    found = [path]
    if isinstance(value, dict):
        for key, inner in value.items():
            found += places(inner, (*path, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found += places(inner, (*path, index))
    return found


def mutate(document: dict, draw) -> dict:
    document = copy.deepcopy(document)
    for _ in range(draw(st.integers(0, 3))):
        spots = [path for path in places(document) if path]
        path = draw(st.sampled_from(spots))
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "reference", "drop", "edge"]))
        if action == "replace":
            parent[path[-1]] = draw(JSON)
        elif action == "reference":
            parent[path[-1]] = draw(st.sampled_from(REFERENCES))
        elif action == "drop":
            del parent[path[-1]]
        elif isinstance(document.get("nodes"), list) and isinstance(document.get("edges"), list):
            ids = [node.get("id") for node in document["nodes"] if isinstance(node, dict)]
            if ids:  # possibly backwards: a cycle
                document["edges"].append({"from": draw(st.sampled_from(ids)),
                                          "to": draw(st.sampled_from(ids)),
                                          **({"branch": draw(st.sampled_from(
                                              ["else", "error", "timeout", "c1"]))}
                                             if draw(st.booleans()) else {})})
    return document


@st.composite
def fuzzed_documents(draw) -> dict:
    return mutate(draw(nodes_of_every_type()), draw)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=bool(os.environ.get("CI")),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture])
@given(document=fuzzed_documents())
def test_any_document_is_validated_and_run_without_a_server_error_or_a_hang(document, owner):
    api = factories.api_client(owner)
    checked = api.post("/api/flows/validate/", {"dsl": document}, format="json")
    assert checked.status_code in (200, 400), checked.content[:2000]
    if checked.status_code != 200 or not checked.json()["valid"]:
        event("refused by validate")
        return

    document = {**document, "settings": RUN_LIMITS}
    created = api.post("/api/flows/", {"dsl": document}, format="json")
    assert created.status_code == 201, created.content[:2000]
    slug = created.json()["slug"]
    started = api.post(f"/api/flows/{slug}/runs/",
                       {"inputs": {"x": "fuzz"}, "version": "draft", "wait": 3}, format="json")
    assert started.status_code < 500, started.content[:2000]
    if started.status_code >= 400:
        event(f"start answered {started.status_code}")
        return
    run_id = started.json()["id"]
    executor.wait(run_id, 15)
    run = Run.objects.get(pk=run_id)
    assert run.status in ENDED, f"{run.status} after its 2 s timeout: {document}"
    event(f"ran: {run.status}")
    if run.status == "failed":
        assert run.error["code"] != "internal_error", run.error
