"""A chat provider speaking the OpenAI-compatible chat completions protocol, streaming.

`POST {base_url}/chat/completions` with `"stream": true`; the answer is a server-sent event
stream of `data: {json}` events ending with `data: [DONE]` (docs/llm.md). Text pieces are
yielded as they arrive, then one `Usage`. Every failure is a `NodeError("provider_error")`:
`details.status` carries the HTTP status when the server answered one, else
`details.reason` says what went wrong (`timeout`, `connection`, `malformed_stream`,
`incomplete_stream`, `server_error`).

The API key goes only into the `Authorization` header. It is never logged, never part of
`repr`, and scrubbed from anything the server says that ends up in an error message.

Provider endpoints are configured by the operator, not by flow authors, so they are not
subject to the `http` node's refusal of private addresses (a local model server is fine).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import weakref
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx

from engine.errors import NodeError
from engine.ports import ChatRequest, Usage

logger = logging.getLogger(__name__)

# Time to first byte can be long for big models; the node's own timeout_s bounds the whole.
DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=300.0, write=30.0, pool=30.0)
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)
_ERROR_BODY_LIMIT = 64 * 1024  # bytes of an error answer read to find the server's message
_JSON_BODY_LIMIT = 16 * 1024 * 1024  # a non-streamed (application/json) answer
_MESSAGE_LIMIT = 500  # characters of the server's message kept in an error


class OpenAICompatibleProvider:
    """One configured OpenAI-compatible endpoint.

    `client`: an `httpx.AsyncClient` to use (the caller owns and closes it). Without one the
    provider creates its own pooled client lazily, one per event loop (a client's connections
    belong to the loop that opened them), and `aclose()` closes it.
    """

    def __init__(self, base_url: str, api_key: str | None, default_model: str | None = None,
                 client: httpx.AsyncClient | None = None, *, name: str = "openai",
                 timeout: httpx.Timeout | float | None = DEFAULT_TIMEOUT):
        if api_key is not None and (not api_key or any(c.isspace() or ord(c) < 32 or ord(c) == 127
                                                       for c in api_key)):
            # Never echo the key itself.
            raise ValueError(f'the API key of provider "{name}" is empty or contains blanks '
                             "or control characters")
        self.name = name
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self.default_model = default_model or None
        self.__api_key = api_key
        self._timeout = timeout
        self._given_client = client
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = \
            weakref.WeakKeyDictionary()

    def __repr__(self) -> str:
        return (f"OpenAICompatibleProvider(name={self.name!r}, base_url={self.base_url!r}, "
                f"default_model={self.default_model!r})")

    # -- the client -------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self._given_client is not None:
            return self._given_client
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            self._forget_closed_loops()
            client = httpx.AsyncClient(timeout=self._timeout, limits=DEFAULT_LIMITS,
                                       follow_redirects=False)
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the pooled client this provider created for the running loop.

        Clients of other loops cannot be closed from here; those of loops already closed
        are dropped (their connections died with their loop). A client passed in by the
        caller is left alone.
        """
        loop = asyncio.get_running_loop()
        client = self._clients.pop(loop, None)
        self._forget_closed_loops()
        if client is not None:
            await client.aclose()

    def _forget_closed_loops(self) -> None:
        # A client may hold its loop alive (so the weak keys alone do not free it); its
        # connections died with the loop, so dropping it is all there is to do.
        for loop in list(self._clients):
            if loop.is_closed():
                del self._clients[loop]

    # -- streaming --------------------------------------------------------------------------

    async def stream(self, request: ChatRequest) -> AsyncIterator[str | Usage]:
        model = request.model or self.default_model
        if not model:
            raise NodeError("invalid_param", f'the node sets no model and provider "{self.name}" '
                                             "has no default_model")
        messages = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": request.prompt})
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": True,
                                "stream_options": {"include_usage": True}}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        headers = {"Accept": "text/event-stream"}
        key = request.api_key or self.__api_key
        if key:
            if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in key):
                raise NodeError("invalid_param", "the api_key holds spaces or control characters")
            headers["Authorization"] = f"Bearer {key}"
        logger.debug("llm provider %s: POST %s (model %s)", self.name, self.url, model)
        client = self._client()
        try:
            # Leaving this block for any reason — the end, an error, the consuming task being
            # cancelled — closes the response, and with it a connection still streaming.
            async with client.stream("POST", self.url, json=body, headers=headers) as response:
                if not response.is_success:
                    raise await self._status_error(response)
                content_type = response.headers.get("content-type", "").lower()
                if content_type.startswith("application/json"):
                    pieces = self._read_json(response)
                else:
                    pieces = self._read_events(response)
                async with aclosing(pieces):
                    async for piece in pieces:
                        yield piece
        except httpx.TimeoutException as error:
            raise self._error(f"timed out ({_timeout_kind(error)})", reason="timeout") from None
        except httpx.HTTPError as error:
            raise self._error(f"could not be reached or broke the connection "
                              f"({type(error).__name__}{_errno_text(error)})",
                              reason="connection") from None

    async def _read_events(self, response: httpx.Response) -> AsyncIterator[str | Usage]:
        """Parse a server-sent event stream: `data:` lines, a blank line ends each event."""
        state = _StreamState()
        data: list[str] = []
        async for line in response.aiter_lines():
            if state.done:
                continue  # read to the end so the connection can go back to the pool
            if line:
                if line.startswith(":"):
                    continue  # a comment (keep-alive)
                field, _, value = line.partition(":")
                if field == "data":
                    data.append(value[1:] if value.startswith(" ") else value)
                continue  # `event:`, `id:`, `retry:` are not used by this protocol
            if data:
                for piece in self._event("\n".join(data), state):
                    yield piece
                data = []
        if data and not state.done:  # the last event had no blank line after it
            for piece in self._event("\n".join(data), state):
                yield piece
        if not (state.done or state.finished):
            raise self._error("ended its stream before the answer was complete",
                              reason="incomplete_stream")
        yield state.usage or Usage(0, 0)

    def _event(self, data: str, state: _StreamState) -> list[str]:
        if data.strip() == "[DONE]":
            state.done = True
            return []
        try:
            payload = json.loads(data)
        except ValueError:
            raise self._malformed("an event is not JSON") from None
        if not isinstance(payload, dict):
            raise self._malformed("an event is not a JSON object")
        if payload.get("error"):
            raise self._error(f"reported an error: {self._server_message(payload, '')}",
                              reason="server_error")
        pieces: list[str] = []
        choices = payload.get("choices")
        if choices is not None and not isinstance(choices, list):
            raise self._malformed("`choices` is not an array")
        for choice in choices or []:
            if not isinstance(choice, dict):
                raise self._malformed("a choice is not an object")
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if delta is not None and not isinstance(delta, dict):
                raise self._malformed("`delta` is not an object")
            content = (delta or {}).get("content")
            if content is not None and not isinstance(content, str):
                raise self._malformed("`delta.content` is not a string")
            if content:
                pieces.append(content)
            if choice.get("finish_reason"):
                state.finished = True
        usage = payload.get("usage")
        if isinstance(usage, dict):
            state.usage = _usage(usage)
        return pieces

    async def _read_json(self, response: httpx.Response) -> AsyncIterator[str | Usage]:
        """A server that ignored `stream` and answered one JSON completion."""
        body = await _read_capped(response, _JSON_BODY_LIMIT + 1)
        if len(body) > _JSON_BODY_LIMIT:
            raise self._malformed("the answer is too large")
        try:
            payload = json.loads(body)
        except ValueError:
            raise self._malformed("the answer is not JSON") from None
        if not isinstance(payload, dict):
            raise self._malformed("the answer is not a JSON object")
        if payload.get("error"):
            raise self._error(f"reported an error: {self._server_message(payload, '')}",
                              reason="server_error")
        try:
            content = payload["choices"][0]["message"].get("content") or ""
        except (KeyError, IndexError, TypeError, AttributeError):
            raise self._malformed("the answer has no choices[0].message") from None
        if not isinstance(content, str):
            raise self._malformed("`message.content` is not a string")
        if content:
            yield content
        usage = payload.get("usage")
        yield _usage(usage) if isinstance(usage, dict) else Usage(0, 0)

    # -- errors -----------------------------------------------------------------------------

    async def _status_error(self, response: httpx.Response) -> NodeError:
        status = response.status_code
        try:
            body = await _read_capped(response, _ERROR_BODY_LIMIT)
        except httpx.HTTPError:
            body = b""
        try:
            payload: Any = json.loads(body)
        except ValueError:
            payload = body.decode("utf-8", "replace")
        said = self._server_message(payload, response.reason_phrase)
        return self._error(f"answered HTTP {status}" + (f": {said}" if said else ""),
                           status=status)

    def _server_message(self, payload: Any, fallback: str) -> str:
        """What the server said went wrong, short, with the key scrubbed out."""
        message: Any = payload
        if isinstance(payload, dict):
            error = payload.get("error")
            if isinstance(error, dict):
                message = error.get("message") or error.get("code") or ""
            elif isinstance(error, str):
                message = error
            else:
                message = payload.get("message") or payload.get("detail") or ""
        if not isinstance(message, str):
            message = json.dumps(message)
        message = " ".join(message.split()) or fallback
        if len(message) > _MESSAGE_LIMIT:
            message = message[:_MESSAGE_LIMIT] + "…"
        return self._scrub(message)

    def secrets(self) -> tuple[str, ...]:
        """What must never be recorded (engine/redaction.py): the key."""
        return (self.__api_key,) if self.__api_key else ()

    def _scrub(self, text: str) -> str:
        key = self.__api_key
        return text.replace(key, "[redacted]") if key else text

    def _malformed(self, why: str) -> NodeError:
        return self._error(f"sent a malformed stream: {why}", reason="malformed_stream")

    def _error(self, what: str, *, status: int | None = None,
               reason: str | None = None) -> NodeError:
        details = {"status": status} if status is not None else {"reason": reason}
        # `what` is this module's own text plus, at most, the server's scrubbed message.
        return NodeError("provider_error", f'provider "{self.name}" {what}', details=details)


class _StreamState:
    __slots__ = ("done", "finished", "usage")

    def __init__(self) -> None:
        self.done = False  # saw data: [DONE]
        self.finished = False  # saw a finish_reason
        self.usage: Usage | None = None


def _usage(data: dict[str, Any]) -> Usage:
    def count(name: str) -> int:
        value = data.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 \
            else 0
    return Usage(prompt_tokens=count("prompt_tokens"),
                 completion_tokens=count("completion_tokens"))


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def _timeout_kind(error: httpx.TimeoutException) -> str:
    return {httpx.ConnectTimeout: "connecting", httpx.ReadTimeout: "waiting for data",
            httpx.WriteTimeout: "sending the request",
            httpx.PoolTimeout: "waiting for a free connection"}.get(type(error), "timeout")


def _errno_text(error: httpx.HTTPError) -> str:
    """The OS error behind a transport error ("connection refused"), never the request."""
    cause: BaseException | None = error.__cause__ or error.__context__
    while cause is not None:
        if isinstance(cause, OSError) and (cause.errno or cause.strerror):
            text = os.strerror(cause.errno) if cause.errno else cause.strerror
            return f": {text[:1].lower()}{text[1:]}"
        cause = cause.__cause__ or cause.__context__
    return ""
