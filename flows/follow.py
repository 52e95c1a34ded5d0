"""Following a run: its stored events after a `seq`, then the live tail, each event once and
in order, to one watcher — a websocket (flows/consumers.py) or a server-sent event stream
(flows/api/stream.py). Both use this one class, so they always show the same sequence.

A follower joins the run's channel group (through its process's one subscription to the run,
flows/fanout.py) *before* it reads the stored events, so whatever is published while it
replays waits in its inbox and nothing falls between the replay and the live tail. An event
whose `seq` was already sent is dropped, and a live batch that starts past the next expected
`seq` (its predecessors were dropped by a full channel or inbox, or a publish failed) is
preceded by the missing events read from the database. The sink publishes only what it
stored, so the database always has them.

Publishing is best effort (a full channel drops a message, a publish may fail), so a follower
that hears nothing for a while also reads the database for events it has not sent: a run
whose last batch was lost still ends its watchers' streams with `run.finished`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from channels.db import database_sync_to_async

from engine.events import RUN_FINISHED, Event, envelope
from flows.fanout import run_watchers
from flows.models import Run, RunEvent


def events_after(run_id: Any, after: int, limit: int) -> tuple[bool, list[dict[str, Any]]]:
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
    watched by 100 clients is encoded once, not 100 times. Used on the server's loop only."""

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


class RunFollower:
    """One watcher's view of one run. `send(event)` gets each event once, in order;
    `finished()` is awaited once after `run.finished` was sent (or at once when the run had
    finished before the events after `after`)."""

    # Seconds without progress after which the run's last stored seq is compared with the
    # last one sent (doubled while there is nothing new, up to `idle_check_max_s`); a
    # follower still behind after `idle_grace_s` more without progress reads the database.
    idle_check_s: float = 5.0
    idle_check_max_s: float = 30.0
    idle_grace_s: float = 2.0
    page_size: int = 1000
    # Live batches waiting to be sent; past this the follower drops them and fills the gap
    # from the database when it catches up.
    inbox_size: int = 1000

    def __init__(self, run_id: Any, after: int, send: Callable[[Event], Awaitable[None]],
                 finished: Callable[[], Awaitable[None]]):
        self.run_id = run_id
        self.last_seq = after
        self.send = send
        self.finished = finished
        self.done = False
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._heard = False  # a live batch came since the last idle check
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=self.inbox_size)
        self._joined = False

    async def start(self) -> None:
        # Join first: what is published from now on queues in our inbox while we replay.
        await run_watchers().join(self.run_id, id(self), self._receive_batch)
        self._joined = True
        async with self._lock:
            await self._catch_up()
        if not self.done:
            self._spawn(self._pump())
            self._spawn(self._watch_idle())

    async def stop(self) -> None:
        """Stop following (the watcher left, or the run finished); safe to call twice."""
        self.done = True
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        if self._joined:
            self._joined = False
            await run_watchers().leave(self.run_id, id(self))

    # -- events ---------------------------------------------------------------------------------

    def _receive_batch(self, message: dict[str, Any]) -> None:
        """From the process's subscription to the run (flows/fanout.py): queue it."""
        # A follower this far behind drops it, and fills the gap from the database later.
        with contextlib.suppress(asyncio.QueueFull):
            self._inbox.put_nowait(message)

    async def _pump(self) -> None:
        while not self.done:
            await self.run_events(await self._inbox.get())

    async def run_events(self, message: dict[str, Any]) -> None:
        """A batch published by the sink of whichever process executes the run."""
        if self.done:
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
        """Send every stored event after the last one sent (call with the lock held); end
        when the run had finished before the read (so nothing more will come)."""
        while not self.done:
            finished, page = await database_sync_to_async(events_after)(
                self.run_id, self.last_seq, self.page_size)
            for event in page:
                if self.done:
                    return
                await self._send_event(event)
            if len(page) < self.page_size:
                if finished:  # e.g. ?after= at or past run.finished
                    await self._finish()
                return

    async def _send_event(self, event: Event) -> None:
        await self.send(event)
        self.last_seq = event["seq"]
        if event["type"] == RUN_FINISHED:
            await self._finish()

    async def _finish(self) -> None:
        if not self.done:
            self.done = True
            await self.finished()

    async def _watch_idle(self) -> None:
        """The safety net for lost publishes (see the module doc): cheap while the run is
        quiet (one row every few seconds), and out of the way of the live path, which gets
        a grace period to deliver what was stored before the database is read."""
        delay = self.idle_check_s
        while not self.done:
            if await self._progressed_within(delay):
                delay = self.idle_check_s
                continue
            stored, finished = await database_sync_to_async(_progress)(self.run_id)
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

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
