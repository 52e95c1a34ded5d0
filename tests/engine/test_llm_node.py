"""The `llm` node: the echo provider, the sample router flow, and a real chat-completions server
streaming over HTTP (docs/dsl.md §5.8; docs/llm.md)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from engine.llm import (
    EchoProvider,
    OpenAICompatibleProvider,
)
from engine.ports import ChatRequest, Services, Usage

from .llm_support import (
    KEY,
    LONG,
    ChatServer,
    _code_unavailable,
    _router_without_code,
    assert_key_absent,
    chunks_of,
    collect,
    delta,
    doc_for,
    llm_flow,
    run_with,
    stream_answer,
)
from .runflows import (
    events_of,
    finished,
    launch,
    load_sample,
    now,
    position,
    positions,
    run,
    until_event,
)

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


@pytest.mark.virtual_time
async def test_configured_echo_is_used():
    slow = EchoProvider(word_delay_s=0.02)
    began = now()
    result, _ = await run(llm_flow(), {"text": "a b c d e f"},
                          services=Services(llm_providers={"echo": slow}))
    assert result.outputs["text"] == "a b c d e f"
    assert now() - began == pytest.approx(5 * 0.02)  # a delay between each of six words


@pytest.mark.virtual_time
async def test_echo_word_delay_is_cancelled_by_the_node_timeout():
    began = now()
    result, events = await run(llm_flow(timeout_s=0.1), {"text": "a b c d"},
                               services=Services(llm_providers={"echo": EchoProvider(10)}))
    assert result.status == "failed" and result.error["code"] == "timeout"
    assert now() - began == pytest.approx(0.1)  # cut at the timeout, not after 10 s a word
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
