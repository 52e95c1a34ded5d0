"""The `llm` node and its providers (docs/dsl.md §5.8, docs/llm.md).

The OpenAI-compatible provider is tested against a real HTTP/1.1 server on 127.0.0.1 that
speaks the chat completions streaming protocol (server-sent events), driven per request by
the test.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any

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
from engine.ports import ChatRequest, Services, Usage

from .runflows import (
    edge,
    end,
    events_of,
    finished,
    flow,
    if_else,
    launch,
    load_sample,
    node,
    position,
    positions,
    run,
    start,
    template,
    until,
    until_event,
)

KEY = "sk-test-5f3a9c1e-THE-SECRET-KEY"


def llm(id="ask", **params):
    params.setdefault("provider", "echo")
    params.setdefault("prompt", "{{start.text}}")
    extra = {k: params.pop(k) for k in ("retry", "timeout_s", "on_error", "default")
             if k in params}
    return node(id, "llm", params=params, **extra)


def llm_flow(*, inputs=None, **params):
    nodes = [start(inputs or {"text": "string"}), llm(**params),
             end({"text": "{{ask.text}}", "usage": "{{ask.usage}}"})]
    return flow(nodes, [edge("start", "ask"), edge("ask", "end")])


def chunks_of(events, node_id="ask"):
    return [e["data"]["text"] for e in events_of(events, "node.chunk", node_id)]


def assert_key_absent(events, *more):
    for event in events:
        assert KEY not in json.dumps(event), event
    for thing in more:
        assert KEY not in str(thing)


async def collect(provider, request):
    return [piece async for piece in provider.stream(request)]


# --- echo ------------------------------------------------------------------------------------


async def test_echo_streams_word_chunks_between_started_and_finished():
    text = "the  quick\tbrown\n fox "
    result, events = await run(llm_flow(), {"text": text})
    assert result.status == "succeeded", result.error
    assert result.outputs["text"] == text
    chunks = events_of(events, "node.chunk", "ask")
    assert [c["data"]["text"] for c in chunks] == ["the  ", "quick\t", "brown\n ", "fox "]
    assert all(c["data"] == {"node": "ask", "text": c["data"]["text"]} for c in chunks)
    started, done = position(events, "node.started", "ask"), position(events, "node.finished", "ask")
    assert all(started < i < done for i in positions(events, "node.chunk", "ask"))
    assert finished(events, "ask")["data"]["outputs"]["text"] == text


async def test_echo_usage_counts_words_of_system_and_prompt():
    doc = llm_flow(system="You are  terse.", prompt="Summary: {{start.text}}")
    result, events = await run(doc, {"text": "one two three"})
    assert result.outputs["text"] == "Summary: one two three"  # the system prompt is not echoed
    assert result.outputs["usage"] == {"prompt_tokens": 3 + 4, "completion_tokens": 4}
    assert "".join(chunks_of(events)) == "Summary: one two three"


async def test_echo_provider_pieces_join_back_exactly():
    echo = EchoProvider()
    pieces = await collect(echo, ChatRequest(model=None, prompt="  lead\r\nand trail  "))
    assert pieces[:-1] == ["  ", "lead\r\n", "and ", "trail  "]
    assert pieces[-1] == Usage(prompt_tokens=3, completion_tokens=3)
    assert await collect(echo, ChatRequest(model="m", prompt="", system="sys words")) == [
        Usage(prompt_tokens=2, completion_tokens=0)]


async def test_empty_prompt_gives_empty_text_and_no_chunks():
    result, events = await run(llm_flow(), {"text": ""})
    assert result.outputs == {"text": "", "usage": {"prompt_tokens": 0, "completion_tokens": 0}}
    assert chunks_of(events) == []


@pytest.mark.parametrize("providers", [{}, {"other": EchoProvider()}])
async def test_echo_is_always_there(providers):
    result, _ = await run(llm_flow(), {"text": "hi there"},
                          services=Services(llm_providers=providers))
    assert result.outputs["text"] == "hi there"


async def test_configured_echo_is_used():
    slow = EchoProvider(word_delay_s=0.02)
    began = time.monotonic()
    result, _ = await run(llm_flow(), {"text": "a b c d e f"},
                          services=Services(llm_providers={"echo": slow}))
    assert result.outputs["text"] == "a b c d e f"
    assert time.monotonic() - began >= 5 * 0.02


async def test_echo_word_delay_is_cancelled_by_the_node_timeout():
    began = time.monotonic()
    result, events = await run(llm_flow(timeout_s=0.1), {"text": "a b c d"},
                               services=Services(llm_providers={"echo": EchoProvider(10)}))
    assert result.status == "failed" and result.error["code"] == "timeout"
    assert time.monotonic() - began < 2
    assert chunks_of(events) == ["a "]


async def test_unknown_provider_is_invalid_param_listing_configured_names():
    doc = llm_flow(provider="gpt", retry={"max_attempts": 3, "backoff_ms": 0})
    result, events = await run(doc, {"text": "x"},
                               services=Services(llm_providers={"local": EchoProvider()}))
    assert result.status == "failed"
    error = result.error
    assert error["code"] == "invalid_param" and error["node"] == "ask"
    assert '"gpt"' in error["message"] and "echo, local" in error["message"]
    assert error["details"]["configured"] == ["echo", "local"]
    assert finished(events, "ask")["data"]["attempts"] == 1  # not transient: no retry


# --- the sample router flow ------------------------------------------------------------------


LONG = "Rivers carve valleys over thousands of years, carrying sediment to the sea."


async def _code_unavailable(services) -> str | None:
    probe = flow([start(), node("c", "code", params={"code": "def main():\n    return {'n': 1}"},
                                outputs={"n": {"type": "integer"}}),
                  end({"n": "{{c.n}}"})], [edge("start", "c"), edge("c", "end")])
    result, _ = await run(probe, {}, services=services)
    return None if result.status == "succeeded" else f"code execution unavailable: {result.error}"


async def test_router_sample_summarises_long_text_with_echo():
    services = Services(llm_providers={"echo": EchoProvider()})
    reason = await _code_unavailable(services)
    if reason:
        pytest.skip(reason)
    result, events = await run(load_sample("router"), {"text": LONG}, services=services)
    assert result.status == "succeeded", result.error
    assert result.outputs == {"answer": f"Summary: {LONG}", "length": len(LONG)}
    assert events_of(events, "node.skipped", "echo")
    assert "".join(chunks_of(events, "summarize")) == f"Summary: {LONG}"


def _router_without_code():
    """router.json's shape with the `code` measurement replaced by a boolean input."""
    nodes = [
        start({"text": {"type": "string", "required": True}, "long": "boolean"}),
        if_else("route", {"id": "long", "conditions": [
            {"left": "{{start.long}}", "op": "eq", "right": True}]}),
        llm("summarize", model="echo-1", system="Be brief.", prompt="Summary: {{start.text}}"),
        template("echo", "Short: {{start.text}}"),
        node("merge", "aggregate", params={"sources": ["{{summarize.text}}", "{{echo.text}}"]}),
        end({"answer": "{{merge.value}}"}),
    ]
    edges = [edge("start", "route"), edge("route", "summarize", "long"),
             edge("route", "echo", "else"), edge("summarize", "merge"), edge("echo", "merge"),
             edge("merge", "end")]
    return flow(nodes, edges)


async def test_router_shape_long_branch_echoes_and_skips_short_branch():
    result, events = await run(_router_without_code(), {"text": LONG, "long": True})
    assert result.status == "succeeded", result.error
    assert result.outputs == {"answer": f"Summary: {LONG}"}
    assert events_of(events, "node.skipped", "echo")
    assert "".join(chunks_of(events, "summarize")) == f"Summary: {LONG}"
    result, events = await run(_router_without_code(), {"text": "hi", "long": False})
    assert result.outputs == {"answer": "Short: hi"}
    assert events_of(events, "node.skipped", "summarize")


# --- a real chat completions server ----------------------------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class Responder:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    async def start(self, status=200, content_type="text/event-stream"):
        self.writer.write(f"HTTP/1.1 {status} Whatever\r\nContent-Type: {content_type}\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n".encode())
        await self.writer.drain()

    async def send(self, data: str | bytes):
        data = data.encode() if isinstance(data, str) else data
        self.writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await self.writer.drain()

    async def event(self, payload):
        await self.send(f"data: {json.dumps(payload)}\n\n")

    async def finish(self):
        self.writer.write(b"0\r\n\r\n")
        await self.writer.drain()

    async def whole(self, status, body, content_type="application/json"):
        data = (json.dumps(body) if not isinstance(body, str) else body).encode()
        self.writer.write(f"HTTP/1.1 {status} Whatever\r\nContent-Type: {content_type}\r\n"
                          f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        await self.writer.drain()


def delta(text, finish=None):
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "model": "m",
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


def usage(prompt, completion):
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion}}


async def stream_answer(resp, pieces, *, delay=0.01, prompt_tokens=11):
    await resp.start()
    await resp.event({**delta(""), "choices": [{"index": 0, "delta": {"role": "assistant"},
                                                "finish_reason": None}]})
    for piece in pieces:
        await asyncio.sleep(delay)
        await resp.event(delta(piece))
    await resp.send(": keep-alive comment\n\n")
    await resp.event(delta("", finish="stop"))
    await resp.event(usage(prompt_tokens, len(pieces)))
    await resp.send("data: [DONE]\n\n")
    await resp.finish()


class ChatServer:
    """HTTP/1.1 on 127.0.0.1 with keep-alive; `handler(request, responder)` answers each request."""

    def __init__(self, handler):
        self.handler = handler
        self.requests: list[Received] = []
        self.connections = 0
        self.disconnected = asyncio.Event()  # a client closed a connection mid-answer
        self._tasks: set[asyncio.Task] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        for task in list(self._tasks):
            task.cancel()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.server.wait_closed()

    def provider(self, key=KEY, default_model="default-model", **kw):
        return OpenAICompatibleProvider(self.base_url, key, default_model, name="local", **kw)

    async def _serve(self, reader, writer):
        task = asyncio.current_task()
        self._tasks.add(task)
        self._writers.append(writer)
        self.connections += 1
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode().split(" ", 2)
                headers = {}
                while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = header.decode().partition(":")
                    headers[name.strip().lower()] = value.strip()
                raw = await reader.readexactly(int(headers.get("content-length", 0)))
                request = Received(method, path, headers, json.loads(raw) if raw else None)
                self.requests.append(request)
                await self.handler(request, Responder(reader, writer))
        except (ConnectionError, asyncio.IncompleteReadError):
            self.disconnected.set()
        finally:
            self._tasks.discard(task)
            writer.close()


def doc_for(**params):
    params.setdefault("provider", "local")
    return llm_flow(**params)


async def run_with(provider, doc, inputs=None):
    services = Services(llm_providers={"echo": EchoProvider(), "local": provider})
    try:
        return await run(doc, inputs or {"text": "Hello there"}, services=services)
    finally:
        await close_providers(services.llm_providers)


async def test_openai_provider_sends_the_request_and_streams_the_answer(caplog):
    caplog.set_level(logging.DEBUG)
    pieces = ["Rivers ", "carve ", "valleys", "."]

    async def handler(request, resp):
        await stream_answer(resp, pieces, prompt_tokens=13)

    async with ChatServer(handler) as server:
        provider = server.provider()
        doc = doc_for(model="gpt-test", system="Be brief.", prompt="Summary: {{start.text}}",
                      temperature=0.2, max_tokens=50)
        result, events = await run_with(provider, doc, {"text": "long text"})
    assert result.status == "succeeded", result.error
    assert result.outputs == {"text": "Rivers carve valleys.",
                              "usage": {"prompt_tokens": 13, "completion_tokens": 4}}
    assert chunks_of(events) == pieces
    started, done = position(events, "node.started", "ask"), position(events, "node.finished", "ask")
    assert all(started < i < done for i in positions(events, "node.chunk", "ask"))
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {
        "model": "gpt-test",
        "messages": [{"role": "system", "content": "Be brief."},
                     {"role": "user", "content": "Summary: long text"}],
        "stream": True, "stream_options": {"include_usage": True},
        "temperature": 0.2, "max_tokens": 50,
    }
    assert_key_absent(events, repr(provider), caplog.text)


async def test_openai_chunks_are_passed_on_as_they_arrive():
    release = asyncio.Event()

    async def handler(request, resp):
        await resp.start()
        await resp.event(delta("first "))
        await release.wait()  # nothing more until the test has seen the first chunk
        await resp.event(delta("second", finish="stop"))
        await resp.send("data: [DONE]\n\n")
        await resp.finish()

    async with ChatServer(handler) as server:
        provider = server.provider()
        _, sink, task = launch(doc_for(), {"text": "x"},
                               services=Services(llm_providers={"local": provider}))
        await until_event(sink, "node.chunk", "ask")
        assert chunks_of(sink.events) == ["first "]
        release.set()
        result = await asyncio.wait_for(task, 3)
        await provider.aclose()
    assert result.outputs["text"] == "first second"
    # No usage object in the stream: 0/0.
    assert result.outputs["usage"] == {"prompt_tokens": 0, "completion_tokens": 0}


async def test_openai_defaults_model_and_leaves_out_unset_params():
    async def handler(request, resp):
        await stream_answer(resp, ["ok"])

    async with ChatServer(handler) as server:
        result, _ = await run_with(server.provider(default_model="fallback-model"), doc_for())
        no_key = OpenAICompatibleProvider(server.base_url, None, "m", name="local")
        result2, _ = await run_with(no_key, doc_for())
    assert result.status == result2.status == "succeeded"
    first, second = server.requests
    assert first.body == {"model": "fallback-model",
                          "messages": [{"role": "user", "content": "Hello there"}],
                          "stream": True, "stream_options": {"include_usage": True}}
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert "authorization" not in second.headers


async def test_openai_without_any_model_is_invalid_param():
    async def handler(request, resp):
        raise AssertionError("no request should be sent")

    async with ChatServer(handler) as server:
        provider = server.provider(default_model=None)
        result, _ = await run_with(provider, doc_for(retry={"max_attempts": 3, "backoff_ms": 0}))
    assert result.error["code"] == "invalid_param"
    assert "default_model" in result.error["message"]
    assert server.requests == []


async def test_openai_reuses_one_pooled_connection():
    async def handler(request, resp):
        await stream_answer(resp, ["a ", "b"], delay=0)

    async with ChatServer(handler) as server:
        provider = server.provider()
        request = ChatRequest(model=None, prompt="p")
        for _ in range(3):
            assert await collect(provider, request) == ["a ", "b", Usage(11, 2)]
        await provider.aclose()
    assert len(server.requests) == 3 and server.connections == 1


async def test_openai_json_answer_without_streaming_is_accepted():
    async def handler(request, resp):
        await resp.whole(200, {"choices": [{"index": 0, "message": {"role": "assistant",
                                                                    "content": "all at once"}}],
                               "usage": {"prompt_tokens": 2, "completion_tokens": 3}})

    async with ChatServer(handler) as server:
        result, events = await run_with(server.provider(), doc_for())
    assert result.outputs == {"text": "all at once",
                              "usage": {"prompt_tokens": 2, "completion_tokens": 3}}
    assert chunks_of(events) == ["all at once"]


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
    began = time.monotonic()
    result, events = await run_with(provider, doc)
    assert time.monotonic() - began < 5
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
        began = time.monotonic()
        result, events = await run_with(server.provider(), doc_for(timeout_s=0.3))
        assert time.monotonic() - began < 2
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
