"""The `llm` node when things go wrong: provider errors, cancellation mid-stream, and provider
configuration (docs/dsl.md §5.8, §7; docs/llm.md). The API key must never appear in events or
errors."""

from __future__ import annotations

import asyncio
import json
import logging
import socket

import httpx
import pytest

from engine.errors import NodeError
from engine.llm import (
    EchoProvider,
    OpenAICompatibleProvider,
    ProviderConfigError,
    close_providers,
    providers_from_config,
)
from engine.ports import ChatRequest, Services

from .llm_support import (
    KEY,
    ChatServer,
    assert_key_absent,
    chunks_of,
    collect,
    delta,
    doc_for,
    run_with,
    stream_answer,
)
from .runflows import (
    events_of,
    finished,
    launch,
    run,
    until,
)

# --- errors ----------------------------------------------------------------------------------


async def test_status_500_is_provider_error_with_status_and_is_retried():
    async def handler(request, resp):
        if len(server.requests) <= 2:
            await resp.whole(500, {"error": {"message": "overloaded, try again",
                                             "type": "server_error"}})
        else:
            await stream_answer(resp, ["fine"])

    async with ChatServer(handler) as server:
        doc = doc_for(retry={"max_attempts": 3, "backoff_ms": 0, "jitter": False})
        result, events = await run_with(server.provider(), doc)
    assert result.status == "succeeded", result.error
    assert result.outputs["text"] == "fine"
    retrying = events_of(events, "node.retrying", "ask")
    assert [e["data"]["attempt"] for e in retrying] == [1, 2]
    for e in retrying:
        error = e["data"]["error"]
        assert error["code"] == "provider_error" and error["details"] == {"status": 500}
        assert "HTTP 500" in error["message"] and "overloaded, try again" in error["message"]
    assert finished(events, "ask")["data"]["attempts"] == 3
    assert len(server.requests) == 3
    assert_key_absent(events)


async def test_status_error_without_retry_fails_the_run():
    async def handler(request, resp):
        await resp.whole(503, "upstream unavailable", content_type="text/plain")

    async with ChatServer(handler) as server:
        result, _ = await run_with(server.provider(), doc_for())
    assert result.status == "failed"
    assert result.error["code"] == "provider_error"
    assert result.error["details"] == {"status": 503}
    assert result.error["node"] == "ask" and result.error["attempt"] == 1
    assert "upstream unavailable" in result.error["message"]


async def test_key_echoed_by_the_server_is_scrubbed(caplog):
    caplog.set_level(logging.DEBUG)

    async def handler(request, resp):
        token = request.headers["authorization"].removeprefix("Bearer ")
        await resp.whole(401, {"error": {"message": f"Incorrect API key provided: {token}"}})

    async with ChatServer(handler) as server:
        result, events = await run_with(server.provider(), doc_for())
    assert result.error["code"] == "provider_error"
    assert result.error["details"] == {"status": 401}
    assert "Incorrect API key provided: [redacted]" in result.error["message"]
    assert_key_absent(events, result.error, caplog.text)


@pytest.mark.parametrize(("body", "why"), [
    ("data: {not json\n\n", "not JSON"),
    ("data: [1, 2]\n\n", "not a JSON object"),
    ('data: {"choices": {"delta": {}}}\n\n', "`choices` is not an array"),
    ('data: {"choices": [{"index": 0, "delta": {"content": 7}}]}\n\n', "not a string"),
])
async def test_malformed_stream_is_provider_error(body, why):
    async def handler(request, resp):
        await resp.start()
        await resp.event(delta("partial "))
        await resp.send(body)
        await resp.send("data: [DONE]\n\n")
        await resp.finish()

    async with ChatServer(handler) as server:
        result, events = await run_with(server.provider(), doc_for())
    assert result.error["code"] == "provider_error"
    assert result.error["details"] == {"reason": "malformed_stream"}
    assert why in result.error["message"] and '"local"' in result.error["message"]
    assert chunks_of(events) == ["partial "]  # what arrived before the fault was streamed
    assert_key_absent(events)


async def test_stream_that_stops_early_is_provider_error():
    async def handler(request, resp):
        await resp.start()
        await resp.event(delta("half an ans"))
        await resp.finish()  # no finish_reason, no [DONE]

    async with ChatServer(handler) as server:
        result, _ = await run_with(server.provider(), doc_for())
    assert result.error["code"] == "provider_error"
    assert result.error["details"] == {"reason": "incomplete_stream"}


async def test_error_event_in_the_stream_is_provider_error():
    async def handler(request, resp):
        await resp.start()
        await resp.event({"error": {"message": "context length exceeded"}})
        await resp.finish()

    async with ChatServer(handler) as server:
        result, _ = await run_with(server.provider(), doc_for())
    assert result.error["code"] == "provider_error"
    assert "context length exceeded" in result.error["message"]


async def test_connection_refused_is_provider_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = OpenAICompatibleProvider(f"http://127.0.0.1:{port}/v1", KEY, "m", name="local")
    doc = doc_for(retry={"max_attempts": 2, "backoff_ms": 0})
    result, events = await asyncio.wait_for(run_with(provider, doc), 5)  # no hang
    assert result.error["code"] == "provider_error"
    assert result.error["details"] == {"reason": "connection"}
    assert "refused" in result.error["message"]
    assert finished(events, "ask")["data"]["attempts"] == 2  # transient: retried
    assert_key_absent(events)


async def test_read_timeout_of_the_connection_is_provider_error():
    async def handler(request, resp):
        await resp.start()
        await asyncio.sleep(30)

    async with ChatServer(handler) as server:
        provider = server.provider(timeout=httpx.Timeout(5, read=0.2))
        result, _ = await run_with(provider, doc_for())
    assert result.error["code"] == "provider_error"
    assert result.error["details"] == {"reason": "timeout"}


# --- cancellation ----------------------------------------------------------------------------


async def _forever(request, resp, server):
    await resp.start()
    closed = asyncio.ensure_future(resp.reader.read(1))  # b"" once the client hangs up
    try:
        while not closed.done():
            await resp.event(delta("tick "))
            await asyncio.wait([closed], timeout=0.05)
    except ConnectionError:
        pass
    finally:
        closed.cancel()
    server.disconnected.set()


async def test_cancelling_the_run_mid_stream_closes_the_connection():
    async def handler(request, resp):
        await _forever(request, resp, server)

    async with ChatServer(handler) as server:
        provider = server.provider()
        the_run, sink, task = launch(doc_for(), {"text": "x"},
                                     services=Services(llm_providers={"local": provider}))
        await until(lambda: len(chunks_of(sink.events)) >= 3)
        the_run.cancel()
        result = await asyncio.wait_for(task, 1)
        await asyncio.wait_for(server.disconnected.wait(), 1)
        await provider.aclose()
    assert result.status == "cancelled"
    assert finished(sink.events, "ask")["data"]["status"] == "cancelled"
    assert_key_absent(sink.events)


async def test_node_timeout_mid_stream_closes_the_connection():
    async def handler(request, resp):
        await _forever(request, resp, server)

    async with ChatServer(handler) as server:
        result, events = await asyncio.wait_for(
            run_with(server.provider(), doc_for(timeout_s=0.3)), 2)  # cut at 0.3 s, not 30
        await asyncio.wait_for(server.disconnected.wait(), 1)
    assert result.error["code"] == "timeout"
    assert chunks_of(events)[:2] == ["tick ", "tick "]


# --- configuration ---------------------------------------------------------------------------


def test_config_always_has_echo():
    for config in (None, {}, "", "{}"):
        providers = providers_from_config(config, {})
        assert list(providers) == ["echo"] and isinstance(providers["echo"], EchoProvider)


def test_config_builds_openai_compatible_providers():
    config = {"openai": {"base_url": "https://api.openai.com/v1/", "api_key_env": "OPENAI_KEY",
                         "default_model": "gpt-4o-mini"},
              "local": {"base_url": "http://127.0.0.1:11434/v1"}}
    providers = providers_from_config(json.dumps(config), {"OPENAI_KEY": KEY})
    assert list(providers) == ["echo", "openai", "local"]
    openai = providers["openai"]
    assert isinstance(openai, OpenAICompatibleProvider)
    assert openai.url == "https://api.openai.com/v1/chat/completions"
    assert openai.default_model == "gpt-4o-mini" and openai.name == "openai"
    assert KEY not in repr(openai) and KEY not in repr(providers)
    assert providers["local"].default_model is None


def test_config_reads_key_from_file(tmp_path):
    path = tmp_path / "key"
    path.write_text(KEY + "\n")
    config = {"p": {"base_url": "https://x.example/v1", "api_key_env": "P_KEY"}}
    assert providers_from_config(config, {"P_KEY_FILE": str(path)})["p"].name == "p"


@pytest.mark.parametrize(("config", "environ", "message"), [
    ({"p": {"base_url": "https://x.example/v1", "api_key_env": "P_KEY"}}, {},
     "P_KEY, which is not set"),
    ({"p": {"base_url": "https://x.example/v1", "api_key_env": "P_KEY"}}, {"P_KEY": "  "},
     "P_KEY, which is not set"),
    ({"p": {"base_url": "https://x.example/v1", "api_key_env": "P_KEY"}},
     {"P_KEY": "a", "P_KEY_FILE": "/k"}, "set P_KEY or P_KEY_FILE, not both"),
    ({"p": {"base_url": "https://x.example/v1", "api_key_env": "P_KEY"}},
     {"P_KEY_FILE": "/nonexistent/key"}, "P_KEY_FILE: cannot read"),
    ({"p": {"base_url": "https://x.example/v1", "api_key_env": "P_KEY"}},
     {"P_KEY": f"{KEY[:8]} {KEY[8:]}"}, "contains blanks or control characters"),
    ([], {}, "must be a JSON object"),
    ("{nope", {}, "LLM_PROVIDERS is not valid JSON"),
    ({"echo": {"base_url": "https://x.example/v1"}}, {}, "'echo' is built in"),
    ({"bad name!": {"base_url": "https://x.example/v1"}}, {}, "provider names are"),
    ({"p": "https://x.example/v1"}, {}, 'provider "p" must be an object'),
    ({"p": {"base_url": "https://x.example/v1", "apikey": "K"}}, {}, "unknown field(s) apikey"),
    ({"p": {}}, {}, "base_url is required"),
    ({"p": {"base_url": "ftp://x.example/v1"}}, {}, "must be an http:// or https:// URL"),
    ({"p": {"base_url": "https://u:pw@x.example/v1"}}, {}, "must not carry credentials"),
    ({"p": {"base_url": "https://x.example:99999/v1"}}, {}, "not a valid URL"),
    ({"p": {"base_url": "https://x.example/v1", "default_model": ""}}, {},
     "default_model must be a non-empty string"),
    ({"p": {"base_url": "https://x.example/v1", "api_key_env": "1-bad"}}, {},
     "api_key_env must name an environment variable"),
])
def test_config_errors_are_clear(config, environ, message):
    with pytest.raises(ProviderConfigError) as raised:
        providers_from_config(config, environ)
    assert message in str(raised.value)
    assert str(raised.value).startswith("LLM_PROVIDERS")
    assert KEY[8:] not in str(raised.value)


async def test_configured_provider_runs_end_to_end():
    async def handler(request, resp):
        assert request.headers["authorization"] == f"Bearer {KEY}"
        await stream_answer(resp, ["configured"])

    async with ChatServer(handler) as server:
        providers = providers_from_config(
            {"mine": {"base_url": server.base_url, "api_key_env": "MINE_KEY",
                      "default_model": "m1"}}, {"MINE_KEY": KEY})
        try:
            result, events = await run(doc_for(provider="mine"), {"text": "x"},
                                       services=Services(llm_providers=providers))
        finally:
            await close_providers(providers)
    assert result.outputs["text"] == "configured"
    assert server.requests[0].body["model"] == "m1"
    assert_key_absent(events)


async def test_provider_errors_are_node_errors():
    provider = OpenAICompatibleProvider("http://127.0.0.1:9/v1", KEY, None, name="p")
    with pytest.raises(NodeError) as raised:
        await collect(provider, ChatRequest(model=None, prompt="x"))
    assert raised.value.code == "invalid_param"
    with pytest.raises(ValueError, match="blanks or control characters"):
        OpenAICompatibleProvider("http://x/v1", "a\nb")
