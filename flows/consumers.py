"""The live event stream of a run: `/ws/runs/<id>/?after=N` (docs/api.md, "Live events").

A watcher joins the run's channel group (through its process's one subscription to the run,
flows/fanout.py) *before* it reads the stored events, so whatever is published while it
replays waits in its inbox and nothing falls between the replay and the live tail. Every
event goes out once, in `seq` order, as its own JSON text frame (the envelope as stored): an
event whose `seq` was already sent is dropped, and a live batch that starts past the next
expected `seq` (its predecessors were dropped by a full channel or inbox, or a publish
failed) is preceded by the missing events read from the database. The sink publishes only
what it stored, so the database always has them.

Publishing is best effort (a full channel drops a message, a publish may fail), so a socket
that hears nothing for a while also reads the database for events it has not sent: a run
whose last batch was lost still ends its watchers' streams with `run.finished`.

Close codes: 1000 after `run.finished` (at once when the run had already finished), 4401
unauthenticated (no session and no valid token frame within `auth_timeout_s`), 4404 a
foreign, unknown or malformed run id, 4400 a malformed `?after=` (after an error frame
saying so). Refused client messages get an error frame and the socket stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from rest_framework.exceptions import ValidationError

from engine.events import MAX_SEQ, RUN_FINISHED, Event, envelope
from flows import services
from flows.api import serializers as s
from flows.api.exceptions import flatten
from flows.errors import ServiceError, error_body
from flows.fanout import run_watchers
from flows.jsontext import InvalidJSON, strict_json_loads
from flows.models import Run, RunEvent

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


def _events_after(run_id: Any, after: int, limit: int) -> tuple[bool, list[dict[str, Any]]]:
    """(whether the run had finished, then up to `limit` stored events with seq > after).

    The status is read first: a run that had finished has every event stored (the last
    batch and the status are written in one transaction), so the events read next are all
    there is. Rows come as tuples (no model instances: a replay of many events spent most
    of its time building them) made into the envelope of `RunEvent.envelope()`."""
    status = Run.objects.filter(pk=run_id).values_list("status", flat=True).first()
    finished = status is None or status in Run.FINISHED
    run = str(run_id)
    rows = RunEvent.objects.filter(run_id=run_id, seq__gt=after).order_by("seq").values_list(
        "seq", "type", "ts", "scope", "item", "data")[:limit]
    return finished, [envelope(seq, kind, ts, run, data, scope, item)
                      for seq, kind, ts, scope, item, data in rows]


def _progress(run_id: Any) -> tuple[int, bool]:
    """(the last stored seq, whether the run had finished): one row."""
    row = Run.objects.filter(pk=run_id).values_list("last_seq", "status").first()
    if row is None:
        return 0, True
    return row[0], row[1] in Run.FINISHED


class FrameTexts:
    """The JSON text of recent events, shared by every watcher in this process: a batch
    watched by 100 sockets is encoded once, not 100 times. Used on the server's loop only."""

    def __init__(self, size: int = 8192):
        self.size = size
        self._texts: OrderedDict[tuple[str, int], str] = OrderedDict()

    def __call__(self, event: Event) -> str:
        key = (event["run"], event["seq"])
        text = self._texts.get(key)
        if text is None:
            text = self._texts[key] = json.dumps(event)
            if len(self._texts) > self.size:
                self._texts.popitem(last=False)
        return text


frame_text = FrameTexts()


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
    # Seconds without progress after which the run's last stored seq is compared with the
    # last one sent (doubled while there is nothing new, up to `idle_check_max_s`); a socket
    # still behind after `idle_grace_s` more without progress reads the database.
    idle_check_s: float = 5.0
    idle_check_max_s: float = 30.0
    idle_grace_s: float = 2.0
    page_size: int = 1000
    # Live batches waiting to be sent; past this the socket drops them and fills the gap
    # from the database when it catches up.
    inbox_size: int = 1000
    # No channel of its own: batches come through the process's one subscription to the
    # run (flows/fanout.py), not one group membership per socket.
    channel_layer_alias = None

    # -- connecting -----------------------------------------------------------------------------

    async def connect(self) -> None:
        self.run_id = self.scope["url_route"]["kwargs"]["run_id"]
        self.user: Any = None
        self.run: Run | None = None
        self.last_seq = 0
        self.done = False
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._heard = False  # a live batch came since the last idle check
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=self.inbox_size)
        self._joined = False
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
        after = parse_after(self.scope.get("query_string", b""))
        if after is None:
            await self._send_json(error_frame(
                "invalid_request", "after must be a sequence number",
                [{"path": "after", "code": "invalid_value",
                  "message": "not a whole number >= 0"}]))
            await self._close(CLOSE_BAD_REQUEST)
            return
        self.last_seq = after
        # Join first: what is published from now on queues in our inbox while we replay.
        await run_watchers().join(self.run.pk, id(self), self._receive_batch)
        self._joined = True
        async with self._lock:
            await self._catch_up()
        if not self.done:
            self._spawn(self._pump())
            self._spawn(self._watch_idle())

    # -- events ---------------------------------------------------------------------------------

    def _receive_batch(self, message: dict[str, Any]) -> None:
        """From the process's subscription to the run (flows/fanout.py): queue it."""
        # A socket this far behind drops it, and fills the gap from the database later.
        with contextlib.suppress(asyncio.QueueFull):
            self._inbox.put_nowait(message)

    async def _pump(self) -> None:
        while not self.done:
            await self.run_events(await self._inbox.get())

    async def run_events(self, message: dict[str, Any]) -> None:
        """A batch published by the sink of whichever process executes the run."""
        if self.done or self.run is None:
            return
        self._heard = True
        async with self._lock:
            if message.get("stored_to", 0) > self.last_seq:
                await self._catch_up()  # a batch too big for the layer: read it instead
            for event in message["events"]:
                if self.done:
                    return
                seq = event["seq"]
                if seq <= self.last_seq:
                    continue  # replayed already, or a repeat
                if seq > self.last_seq + 1:
                    await self._catch_up()  # the gap, this batch and more: all stored
                    continue
                await self._send_event(event)

    async def _catch_up(self) -> None:
        """Send every stored event after the last one sent (call with the lock held); close
        when the run had finished before the read (so nothing more will come)."""
        while not self.done:
            finished, page = await database_sync_to_async(_events_after)(
                self.run.pk, self.last_seq, self.page_size)
            for event in page:
                if self.done:
                    return
                await self._send_event(event)
            if len(page) < self.page_size:
                if finished:  # e.g. ?after= at or past run.finished
                    await self._close(CLOSE_FINISHED)
                return

    async def _send_event(self, event: Event) -> None:
        await self.send(text_data=frame_text(event))
        self.last_seq = event["seq"]
        if event["type"] == RUN_FINISHED:
            await self._close(CLOSE_FINISHED)

    async def _watch_idle(self) -> None:
        """The safety net for lost publishes (see the module doc): cheap while the run is
        quiet (one row every few seconds), and out of the way of the live path, which gets
        a grace period to deliver what was stored before the database is read."""
        delay = self.idle_check_s
        while not self.done:
            if await self._progressed_within(delay):
                delay = self.idle_check_s
                continue
            stored, finished = await database_sync_to_async(_progress)(self.run.pk)
            if stored <= self.last_seq and not finished:
                delay = min(delay * 2, self.idle_check_max_s)
                continue
            if stored > self.last_seq and await self._progressed_within(self.idle_grace_s):
                delay = self.idle_check_s
                continue
            async with self._lock:
                if not self.done:
                    await self._catch_up()
            delay = self.idle_check_s

    async def _progressed_within(self, seconds: float) -> bool:
        """Whether a live batch came or an event was sent in the next `seconds`."""
        sent, self._heard = self.last_seq, False
        await asyncio.sleep(seconds)
        return self._heard or self.last_seq != sent or self._lock.locked()

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
            if kind == "answer":
                body = self._valid(s.AnswerBody, fields)
                await database_sync_to_async(services.answer_run)(
                    self.run, body["answer"], option=body.get("option"), node=body.get("node"),
                    by=self.user.get_username())
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
        if self._joined:
            self._joined = False
            await run_watchers().leave(self.run.pk, id(self))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        self.done = True
        for task in list(self._tasks):
            task.cancel()
        if hasattr(self, "_joined"):  # connect() ran
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
