"""`GET /api/runs/{id}/stream/`: a run's events as server-sent events (docs/api.md), for
clients that cannot hold a websocket (serverless functions, `curl`, proxies).

An async view: the stream is an async generator iterated on the server's event loop, so no
thread and no database connection is held while it waits. Its events come from a
`RunFollower` (flows/follow.py), the websocket's own, so both show the same sequence: the
stored events after `?after=N` (or `Last-Event-ID: N`, which a reconnecting EventSource
sends and which wins), then the live tail, each once, in order; it ends after `run.finished`.
A comment line goes out at least every `HEARTBEAT_S` seconds so that proxies keep the
connection open. Credentials and 404s are the API's: a token (`Token` or `Bearer`) or the
session; someone else's run, or no such run, answers 404.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from asgiref.sync import sync_to_async
from django.http import JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import AuthenticationFailed

from engine.events import MAX_SEQ, Event
from flows import services
from flows.api.authentication import TokenAuthentication
from flows.errors import ServiceError, error_body
from flows.follow import RunFollower, frame_text

HEARTBEAT_S = 15.0
BUFFERED = 256  # events waiting for a slow client before the follower waits too
_END = object()


@csrf_exempt  # reads only; other methods answer 405 in the API's shape
async def run_stream(request: Any, run_id: str) -> Any:
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse(error_body("method_not_allowed",
                                           f'method "{request.method}" not allowed'), status=405)
        response["Allow"] = "GET, HEAD"
        return response
    user, refusal = await _user_of(request)
    if refusal is not None:
        return refusal
    try:
        run = await sync_to_async(services.run_of)(user, run_id)
    except ServiceError as error:
        return JsonResponse(error.body(), status=error.status)
    after = _after(request)
    if after is None:
        return JsonResponse(error_body(
            "invalid_request", "after (or Last-Event-ID) must be a sequence number",
            [{"path": "after", "code": "invalid_value", "message": "not a whole number >= 0"}]),
            status=400)
    response = StreamingHttpResponse(events_of(run.pk, after),
                                     content_type="text/event-stream; charset=utf-8")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


async def events_of(run_id: Any, after: int) -> AsyncIterator[str]:
    """The stream's text: a comment first (headers out at once), then each event."""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=BUFFERED)

    async def send(event: Event) -> None:
        await queue.put(event)

    async def finished() -> None:
        await queue.put(_END)

    follower = RunFollower(run_id, after, send, finished)
    starting = asyncio.get_running_loop().create_task(follower.start())
    try:
        yield f": events of run {run_id} after {after}\n\n"
        while True:
            if queue.empty():
                try:
                    async with asyncio.timeout(HEARTBEAT_S):
                        item = await queue.get()
                except TimeoutError:
                    yield ": still here\n\n"
                    continue
            else:
                item = queue.get_nowait()
            # What is queued goes out as one chunk: one write to the client per batch, not
            # one per event.
            chunk = []
            while item is not _END:
                chunk.append(f"id: {item['seq']}\nevent: {item['type']}\n"
                             f"data: {frame_text(item)}\n\n")
                if queue.empty():
                    break
                item = queue.get_nowait()
            if chunk:
                yield "".join(chunk)
            if item is _END:
                return
    finally:
        starting.cancel()
        await follower.stop()


async def _user_of(request: Any) -> tuple[Any, Any]:
    """(the user, None), or (None, the 401 to answer)."""
    try:
        found = await sync_to_async(TokenAuthentication().authenticate)(request)
    except AuthenticationFailed as failed:
        return None, _unauthenticated(str(failed.detail))
    if found is not None:
        return found[0], None
    user = await request.auser()
    if user.is_authenticated:
        return user, None
    return None, _unauthenticated("authentication credentials were not provided")


def _unauthenticated(message: str) -> JsonResponse:
    response = JsonResponse(error_body("not_authenticated", message), status=401)
    response["WWW-Authenticate"] = 'Token realm="api"'
    return response


def _after(request: Any) -> int | None:
    value = request.headers.get("Last-Event-ID")
    if value is None:
        value = request.GET.get("after", "0")
    value = value.strip()
    if not value.isascii() or not value.isdigit():
        return None
    return min(int(value), MAX_SEQ)
