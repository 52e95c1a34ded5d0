"""Flows, providers and a local chat-completions server for the llm tests (test_llm_node.py,
test_llm_errors.py)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from engine.llm import (
    EchoProvider,
    OpenAICompatibleProvider,
    close_providers,
)
from engine.ports import Services

from .runflows import (
    edge,
    end,
    events_of,
    flow,
    if_else,
    node,
    run,
    start,
    template,
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


LONG = "Rivers carve valleys over thousands of years, carrying sediment to the sea."


async def _code_unavailable(services) -> str | None:
    probe = flow([start(), node("c", "code", params={"code": "def main():\n    return {'n': 1}"},
                                outputs={"n": {"type": "integer"}}),
                  end({"n": "{{c.n}}"})], [edge("start", "c"), edge("c", "end")])
    result, _ = await run(probe, {}, services=services)
    return None if result.status == "succeeded" else f"code execution unavailable: {result.error}"


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
