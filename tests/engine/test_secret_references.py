"""`{{secrets.NAME}}` (docs/dsl.md §3): allowed only where a value is sent with a request,
resolved from the run's secrets, and replaced by `[secret:NAME]` in whatever the run records."""

from __future__ import annotations

import json

import pytest

from engine import compile_plan
from engine.ports import Services
from engine.redaction import Redactor

from .flowfactory import chain, check, end, flow, iteration, node, start, template
from .runflows import run


def http(id: str = "call", **params) -> dict:
    return node(id, "http", params={"url": "https://api.example/v1", **params})


def around(*middle: dict) -> dict:
    return flow([start(), *middle, end()], chain("start", *[m["id"] for m in middle], "end"))


@pytest.mark.parametrize("params", [
    {"headers": {"Authorization": "Bearer {{secrets.API_KEY}}"}},
    {"url": "https://api.example/v1?key={{secrets.API_KEY}}"},
    {"query": {"key": "{{secrets.API_KEY}}"}},
    {"body": {"auth": {"key": "{{secrets.API_KEY}}"}}},
])
def test_secrets_are_allowed_in_the_params_of_an_http_node(params):
    assert check(around(http(**params))) == set()


def test_and_as_an_llm_nodes_api_key():
    llm = node("ask", "llm", params={"provider": "echo", "prompt": "hi",
                                     "api_key": "{{secrets.OPENAI_KEY}}"})
    assert check(around(llm)) == set()


@pytest.mark.parametrize("doc, path", [
    (around(template("t", "key: {{secrets.API_KEY}}")), "/nodes/1/params/template"),
    (around(node("c", "code", params={"code": "def main(k):\n    return {'k': k}"},
                 inputs={"k": "{{secrets.API_KEY}}"}, outputs={"k": {"type": "string"}})),
     "/nodes/1/inputs/k"),
    (around(http()), None),
    (around(node("call", "http", params={"url": "https://a.example"},
                 inputs={"k": "{{secrets.API_KEY}}"})), "/nodes/1/inputs/k"),
    (around(node("ask", "llm", params={"provider": "echo",
                                       "prompt": "{{secrets.API_KEY}}"})), "/nodes/1/params/prompt"),
    (flow([start(), end(key="{{secrets.API_KEY}}")], chain("start", "end")), "/nodes/1/inputs/key"),
    (flow([start(), node("end", "end", params={"answer": "{{secrets.API_KEY}}"})],
          chain("start", "end")), "/nodes/1/params/answer"),
])
def test_anywhere_else_a_secret_is_secret_not_allowed_with_its_path(doc, path):
    if path is None:  # the control: the same flow without a secret is valid
        assert check(doc) == set()
        return
    assert check(doc) == {(path, "secret_not_allowed")}


def test_inside_an_iteration_body_the_same_rule_holds():
    body = flow([node("bstart", "start"),
                 http("fetch", headers={"X-Key": "{{secrets.API_KEY}}"}),
                 template("show", "{{secrets.API_KEY}}"),
                 node("bend", "end", inputs={"r": "{{show.text}}"})],
                chain("bstart", "fetch", "show", "bend"))
    body.pop("dsl"), body.pop("name")
    doc = flow([start(items="array"), iteration("each", "{{start.items}}", body),
                end(results="{{each.results}}")], chain("start", "each", "end"))
    assert check(doc) == {("/nodes/1/params/body/nodes/2/params/template", "secret_not_allowed")}


@pytest.mark.parametrize("text", ["{{secrets}}", "{{secrets.api_key}}", "{{secrets.KEY.x}}",
                                  "{{secrets.KEY[0]}}"])
def test_a_malformed_secret_reference_is_a_bad_reference(text):
    assert check(around(http(headers={"X": text}))) == {("/nodes/1/params/headers/X",
                                                          "bad_reference")}


def test_a_node_called_secrets_keeps_its_outputs():
    doc = flow([start(), template("secrets", "hi"), template("t", "{{secrets.text}}"), end()],
               chain("start", "secrets", "t", "end"))
    assert check(doc) == set()


def test_the_plan_knows_which_secrets_the_flow_names():
    doc = around(http(headers={"A": "{{secrets.B_KEY}} {{secrets.A_KEY}}"},
                      query={"k": "{{secrets.B_KEY}}"}))
    assert compile_plan(doc).secret_names == ("A_KEY", "B_KEY")
    assert compile_plan(around(http())).secret_names == ()


async def test_a_secret_resolves_from_the_runs_secrets_and_is_recorded_as_its_mark(server,
                                                                                    client):
    doc = around(http(url=server.url("/echo"), headers={"X-Key": "{{secrets.API_KEY}}"}),
                 template("show", "{{call.body}}"))
    secrets = {"API_KEY": "tok-123456"}
    result, events = await run(doc, services=Services(
        http=client, secrets=secrets, redactor=Redactor(named=secrets)))
    assert result.status == "succeeded", result.error
    [request] = server.requests
    assert request["headers"]["x-key"] == "tok-123456"  # sent for real
    recorded = json.dumps(events)
    assert "tok-123456" not in recorded and "[secret:API_KEY]" in recorded


async def test_a_secret_gone_before_the_node_runs_fails_it_with_missing_secret(server, client):
    doc = around(http(url=server.url("/echo"), headers={"X": "{{secrets.GONE}}"}))
    result, _events = await run(doc, services=Services(http=client))
    assert result.status == "failed"
    assert result.error["code"] == "missing_secret"
    assert server.requests == []


def test_a_short_secret_never_breaks_a_mark_and_redaction_is_idempotent():
    redactor = Redactor(named={"LONG_NAME": "abcdefgh", "S": "secret"})
    once = redactor.text("abcdefgh and secret")
    assert once == "[secret:LONG_NAME] and [secret:S]"
    assert redactor.text(once) == once


def test_a_secret_is_found_escaped_in_json_and_encoded_in_urls():
    value = 'p@ss "word"/+'
    redactor = Redactor(named={"PW": value})
    assert redactor.text(json.dumps({"x": value})) == '{"x": "[secret:PW]"}'
    assert redactor.text("https://a.example/?pw=p%40ss%20%22word%22%2F%2B") == \
        "https://a.example/?pw=[secret:PW]"
    assert "p@ss" not in repr(redactor)


async def test_an_llm_nodes_api_key_from_a_secret_replaces_the_providers_key():
    from engine.llm.echo import EchoProvider

    from .llm_support import KEY, ChatServer, doc_for, stream_answer

    async def handler(request, resp):
        await stream_answer(resp, ["the key is ", request.headers["authorization"][7:]])

    async with ChatServer(handler) as server:
        provider = server.provider()
        doc = doc_for(model="m", prompt="hi", api_key="{{secrets.MODEL_KEY}}")
        secrets = {"MODEL_KEY": "sk-node-own-key-4242"}
        services = Services(llm_providers={"echo": EchoProvider(), "local": provider},
                            secrets=secrets, redactor=Redactor([KEY], named=secrets))
        try:
            result, events = await run(doc, {"text": "x"}, services=services)
        finally:
            await provider.aclose()
    assert result.status == "succeeded", result.error
    [request] = server.requests
    assert request.headers["authorization"] == "Bearer sk-node-own-key-4242"
    assert result.outputs["text"] == "the key is [secret:MODEL_KEY]"  # echoed, and hidden
    assert "sk-node-own-key-4242" not in json.dumps(events)
