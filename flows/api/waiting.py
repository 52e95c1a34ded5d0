"""Run starts that wait for their run (docs/api.md, "Waiting for a run"), holding nothing.

The start is an ordinary view, served as every request is (Django's middleware and the
view on one thread, one database connection): authentication, rate limit, validation, the
insert. When its body asks to `wait`, the view answers at once with an `Astron-Wait` header
instead of the run, and Django's request ends — its thread and connection go back. The
ASGI layer in front of Django (`WaitingForRuns`, astron/asgi.py) holds that answer back and
waits on the server's event loop: news from this process's executor, or from the run's
channel group when the run moved on to another process. Then it reads the run (a thread
and a connection for a moment) and sends it in the answer's place.

Without that layer (Django's test client, a WSGI server) the view waits itself, on its
thread, having given its connection back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from asgiref.sync import sync_to_async
from django.db import DatabaseError
from rest_framework.renderers import JSONRenderer

from flows import services
from flows.api import serializers as s
from flows.api.exceptions import OVERLOADED_BODY, RETRY_AFTER_S
from flows.execution.database import give_back_connection
from flows.execution.settling import MOVED
from flows.fanout import until_settled_elsewhere

HEADER = "Astron-Wait"
_HEADER_KEY = HEADER.lower().encode()
SCOPE_KEY = "astron.waits"  # set in the scope of requests WaitingForRuns serves


def wait_for_run(request: Any, owner: Any, run_id: Any, seconds: float) -> dict[str, str]:
    """From the view, for a run start with `wait`: the headers that have WaitingForRuns do
    the waiting, or, without it, wait here and return none."""
    scope = getattr(request._request, "scope", None) or {}
    if scope.get(SCOPE_KEY):
        return {HEADER: f"{run_id} {seconds} {owner.pk}"}
    give_back_connection()  # for the length of the wait
    services.wait_for_run(run_id, seconds)
    return {}


def run_body(owner_id: int, run_id: str) -> bytes:
    """The run as the API represents it, read now."""
    try:
        run = services.run_of(owner_id, run_id)
        data = s.RunDetailSerializer(run, context={"just_created": False}).data
        return JSONRenderer().render(data)
    finally:
        give_back_connection()


class WaitingForRuns:
    """ASGI middleware: holds back an answer that asks (by HEADER) to wait for a run, waits
    without a thread, then answers the run as it is."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST":
            await self.app(scope, receive, send)
            return
        held: list[dict[str, Any]] = []

        async def relay(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and any(
                    name.lower() == _HEADER_KEY for name, _ in message.get("headers", ())):
                held.append(message)
            elif not held:
                await send(message)
            # else: the body of the answer held back, which the run replaces

        await self.app({**scope, SCOPE_KEY: True}, receive, relay)
        if held:
            await self._answer_after_waiting(held[0], send)

    async def _answer_after_waiting(self, start: dict[str, Any], send: Any) -> None:
        headers = [(name, value) for name, value in start["headers"]
                   if name.lower() not in (_HEADER_KEY, b"content-length", b"content-type")]
        headers.append((b"content-type", b"application/json"))
        wait = next(value for name, value in start["headers"] if name.lower() == _HEADER_KEY)
        run_id, seconds, owner_id = wait.decode().split()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(seconds)
        if await services.until_settled(run_id, float(seconds)) == MOVED:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await until_settled_elsewhere(run_id)
        status = start["status"]
        try:
            body = await sync_to_async(run_body, thread_sensitive=False)(int(owner_id), run_id)
        except DatabaseError:  # the database did not answer in time: an overload
            status, body = 503, json.dumps(OVERLOADED_BODY).encode()
            headers.append((b"retry-after", RETRY_AFTER_S.encode()))
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
