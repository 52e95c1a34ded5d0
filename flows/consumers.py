"""The live event stream of a run over a websocket: `/ws/runs/<id>/?after=N` (docs/api.md,
"Live events"), and the answers and cancels its page sends back.

What the socket sends — the stored events after `N`, then the live tail, each once and in
order, ending with `run.finished` — comes from a `RunFollower` (flows/follow.py), the same
one the server-sent event stream uses. Each event is its own JSON text frame (the envelope as
stored).

Close codes: 1000 after `run.finished` (at once when the run had already finished), 4401
unauthenticated (no session and no valid token frame within `auth_timeout_s`), 4404 a
foreign, unknown or malformed run id, 4400 a malformed `?after=` (after an error frame
saying so). Refused client messages get an error frame and the socket stays open.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from rest_framework.exceptions import ValidationError

from engine.events import MAX_SEQ, Event
from flows import audit, services
from flows.api import serializers as s
from flows.api.exceptions import flatten
from flows.errors import ServiceError, error_body
from flows.follow import RunFollower, frame_text
from flows.jsontext import InvalidJSON, strict_json_loads
from flows.models import Run

logger = logging.getLogger(__name__)

CLOSE_FINISHED = 1000
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404

_NOT_JSON = object()


def _authorized_run(user: Any, key: str | None, run_id: Any) -> tuple[Any, Run | None]:
    """(user, run) for a session's user or a token's key; (None, None) for a key that is
    unknown, revoked or expired. Raises ServiceError 404 for a run the user may not see."""
    if key is not None:
        found = services.user_for_key(key)
        if found is None:
            return None, None
        user = found[0]
    return user, services.run_of(user, run_id)


def error_frame(code: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    return {"type": "error", **error_body(code, message, details)}


def invalid_request(error: ValidationError) -> dict[str, Any]:
    details = list(flatten(error.detail))
    return error_frame("invalid_request", "the message is not valid: " + "; ".join(
        f"{d['path'] or '/'}: {d['message']}" for d in details[:5]), details)


def parse_after(query_string: bytes) -> int | None:
    """`?after=N` as a number (0 when absent), None when malformed."""
    values = parse_qs(query_string.decode("latin-1"), keep_blank_values=True).get("after")
    if not values:
        return 0
    value = values[-1]
    if not value.isascii() or not value.isdigit():
        return None
    return min(int(value), MAX_SEQ)


class RunConsumer(AsyncWebsocketConsumer):
    # Seconds an unauthenticated socket has to send its token frame (docs/api.md: 5).
    auth_timeout_s: float = 5.0
    # No channel of its own: batches come through the process's one subscription to the
    # run (flows/fanout.py), not one group membership per socket.
    channel_layer_alias = None

    # -- connecting -----------------------------------------------------------------------------

    async def connect(self) -> None:
        self.run_id = self.scope["url_route"]["kwargs"]["run_id"]
        self.user: Any = None
        self.via = "page"
        self.run: Run | None = None
        self.done = False
        self.follower: RunFollower | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        await self.accept()
        user = self.scope.get("user")
        if user is not None and user.is_authenticated:
            await self._start(user)
        else:
            self._spawn(self._auth_deadline())

    async def _auth_deadline(self) -> None:
        await asyncio.sleep(self.auth_timeout_s)
        if self.user is None:
            await self._close(CLOSE_UNAUTHENTICATED)

    async def _start(self, user: Any, key: str | None = None) -> None:
        """Authenticate (a session's user, or a token's key), find the run, join its group,
        replay, then follow it."""
        self.user = False  # deciding: the auth deadline no longer applies
        try:
            user, self.run = await database_sync_to_async(_authorized_run)(user, key,
                                                                            self.run_id)
        except ServiceError:
            await self._close(CLOSE_NOT_FOUND)
            return
        if user is None:
            await self._close(CLOSE_UNAUTHENTICATED)
            return
        self.user = user
        self.via = "api" if key else "page"  # a token's frame, or the page's session
        after = parse_after(self.scope.get("query_string", b""))
        if after is None:
            await self._send_json(error_frame(
                "invalid_request", "after must be a sequence number",
                [{"path": "after", "code": "invalid_value",
                  "message": "not a whole number >= 0"}]))
            await self._close(CLOSE_BAD_REQUEST)
            return
        self.follower = RunFollower(self.run.pk, after, self._send_event,
                                    lambda: self._close(CLOSE_FINISHED))
        await self.follower.start()

    async def _send_event(self, event: Event) -> None:
        await self.send(text_data=frame_text(event))

    # -- what the client sends ------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.done:
            return
        # Read as strictly as a request body (flows/jsontext.py): what is refused there
        # is refused here.
        message: Any = _NOT_JSON
        problem = "a message must be JSON text"
        if text_data is not None:
            try:
                message = strict_json_loads(text_data)
            except InvalidJSON as error:
                problem = f"the message is {error}"
        if self.user is None:
            await self._authenticate(message)
            return
        if message is _NOT_JSON:
            await self._send_json(error_frame("invalid_json", problem))
            return
        if not isinstance(message, dict):
            await self._send_json(error_frame("invalid_request", "a message must be an object"))
            return
        if self.run is None:
            return  # still starting (cannot happen: handlers run one at a time)
        kind = message.get("type")
        fields = {key: value for key, value in message.items() if key != "type"}
        try:
            # The audit log names who answered or cancelled, and through what door.
            with audit.acting(self.via, user=self.user):
                if kind == "answer":
                    body = self._valid(s.AnswerBody, fields)
                    await database_sync_to_async(services.answer_run)(
                        self.run, body["answer"], option=body.get("option"),
                        node=body.get("node"), by=self.user.get_username())
                elif kind == "cancel":
                    self._valid(s.EmptyBody, fields)
                    await database_sync_to_async(services.cancel_run)(self.run)
                else:
                    await self._send_json(error_frame(
                        "invalid_request", 'type must be "answer" or "cancel"',
                        [{"path": "/type", "code": "invalid_value",
                          "message": f"{str(kind)[:50]!r} is not a message type"}]))
        except ServiceError as refused:
            await self._send_json({"type": "error", **refused.body()})
        except ValidationError as invalid:
            await self._send_json(invalid_request(invalid))

    @staticmethod
    def _valid(body_class: type[s.Body], fields: dict[str, Any]) -> dict[str, Any]:
        body = body_class(data=fields)
        body.is_valid(raise_exception=True)
        return body.validated_data

    async def _authenticate(self, message: Any) -> None:
        """The first frame of a socket without a session must be the token frame."""
        token = message.get("token") if isinstance(message, dict) and \
            message.get("type") == "auth" else None
        if not isinstance(token, str) or not token:
            await self._close(CLOSE_UNAUTHENTICATED)
            return
        await self._start(None, key=token)

    # -- closing --------------------------------------------------------------------------------

    async def _send_json(self, content: dict[str, Any]) -> None:
        if not self.done:
            await self.send(text_data=json.dumps(content))

    async def _close(self, code: int) -> None:
        if self.done:
            return
        self.done = True
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        await self.close(code)
        await self._leave()

    async def _leave(self) -> None:
        if self.follower is not None:
            await self.follower.stop()

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        self.done = True
        for task in list(self._tasks):
            task.cancel()
        if hasattr(self, "follower"):  # connect() ran
            await self._leave()
        await super().websocket_disconnect(message)

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Without Channels' close_old_connections() before every message (a hop to the
        # thread for sync code per frame): these handlers touch the database only through
        # database_sync_to_async, which does it anyway.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)
