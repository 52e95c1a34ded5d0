"""One channel-layer subscription per watched run and process, fanned out to its sockets.

Channels' usual way — every socket joins the run's group with a channel of its own — makes
the layer carry one message per watcher: for 100 sockets of one run in one process,
channels_redis pushes 100 copies of each batch and the process pops them one at a time, two
Redis round trips each, serialized per process (the benchmark's 100 watchers of a 20-token/s
stream fell seconds behind). Here the first socket of a run in a process subscribes one
channel to the run's group; every batch then crosses the layer once per process and is
handed to each local socket's inbox in order. The last socket to leave unsubscribes.

Subscriptions belong to the event loop they were made on (one per serving process; tests
run one loop per test).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from engine import events as ev
from flows.execution.database import give_back_connection
from flows.execution.publisher import run_group
from flows.loops import per_loop
from flows.services import lifecycle

logger = logging.getLogger(__name__)

Deliver = Callable[[dict[str, Any]], None]
AWAKE_GROUP = "astron.awake"  # nothing is ever sent to it (RunWatchers._stay_awake)


class _Subscription:
    def __init__(self, hub: RunWatchers, run_id: str):
        self.hub = hub
        self.run_id = run_id
        self.group = run_group(run_id)
        self.members: dict[int, Deliver] = {}
        self.channel: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def start(self) -> None:
        try:
            layer = get_channel_layer()
            self.channel = await layer.new_channel("astron.watchers.")
            await layer.group_add(self.group, self.channel)
            self.task = asyncio.get_running_loop().create_task(self._receive(layer))
        except BaseException as error:
            self.ready.set_exception(error)
            self.ready.exception()  # retrieved: whoever awaits it gets it too
            self.hub._subscriptions.pop(self.run_id, None)
            raise
        self.ready.set_result(None)

    async def _receive(self, layer: Any) -> None:
        while True:
            try:
                message = await layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:  # e.g. Redis unreachable for a moment: sockets poll meanwhile
                logger.warning("run %s: receiving its events failed", self.run_id,
                               exc_info=True)
                await asyncio.sleep(1)
                continue
            for deliver in list(self.members.values()):
                deliver(message)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task
        if self.channel is not None:
            with contextlib.suppress(Exception):
                await get_channel_layer().group_discard(self.group, self.channel)


class RunWatchers:
    """The subscriptions of one event loop: run id → its local sockets."""

    def __init__(self) -> None:
        self._subscriptions: dict[str, _Subscription] = {}
        self._awake: asyncio.Future[None] | None = None

    async def _stay_awake(self) -> None:
        """Hold one subscription for the loop's life. channels_redis's pub/sub reader sleeps
        0.1 s at a time while it has no subscription, so on an idle process the first
        batch of a run just subscribed to waited up to 100 ms (a `wait` answered 80 ms late
        with RUN_EXECUTOR=celery); with a subscription held, it reads as messages come."""
        if self._awake is None:
            self._awake = asyncio.get_running_loop().create_future()
            try:
                layer = get_channel_layer()
                channel = await layer.new_channel("astron.awake.")
                await layer.group_add(AWAKE_GROUP, channel)
            except Exception:  # the layer is away: the watchers' own subscriptions retry
                self._awake = None
                return
            self._awake.set_result(None)
        else:
            await asyncio.shield(self._awake)

    async def join(self, run_id: Any, key: int, deliver: Deliver) -> None:
        """From now on, every batch published for the run is passed to `deliver` (in
        order, synchronously: it should only queue it)."""
        run_id = str(run_id)
        await self._stay_awake()
        subscription = self._subscriptions.get(run_id)
        if subscription is None:
            subscription = self._subscriptions[run_id] = _Subscription(self, run_id)
            subscription.members[key] = deliver
            await subscription.start()
        else:
            subscription.members[key] = deliver
            await asyncio.shield(subscription.ready)

    async def leave(self, run_id: Any, key: int) -> None:
        run_id = str(run_id)
        subscription = self._subscriptions.get(run_id)
        if subscription is None or subscription.members.pop(key, None) is None:
            return
        if not subscription.members:
            del self._subscriptions[run_id]
            with contextlib.suppress(BaseException):
                await subscription.ready
            await subscription.stop()

    def __len__(self) -> int:
        return len(self._subscriptions)


# The subscriptions of the running event loop.
run_watchers: Callable[[], RunWatchers] = per_loop(RunWatchers)


def _settled_now(run_id: str) -> bool:
    try:
        return lifecycle.is_settled(run_id)
    finally:
        give_back_connection()  # a waiter holds no connection while it waits


async def until_settled_elsewhere(run_id: str) -> None:
    """Return once the run, executed by another process, settles: its group carries its
    `run.finished` event or its executor's pause announcement (`announce_pause`). Its state
    is read once after joining (it may have settled before), and again when the group only
    announces how far events are stored (what it did not send may hold the end)."""
    loop = asyncio.get_running_loop()
    news: asyncio.Future[None] = loop.create_future()
    checks: set[asyncio.Task[None]] = set()

    async def check() -> None:
        if await sync_to_async(_settled_now)(run_id) and not news.done():
            news.set_result(None)

    def deliver(message: dict[str, Any]) -> None:
        if news.done():
            return
        if message.get("paused") or any(event["type"] == ev.RUN_FINISHED
                                         for event in message.get("events", ())):
            news.set_result(None)
        elif message.get("stored_to"):
            task = loop.create_task(check())
            checks.add(task)
            task.add_done_callback(checks.discard)

    watchers = run_watchers()
    key = id(news)
    await watchers.join(run_id, key, deliver)
    try:
        await check()
        await news
    finally:
        for task in checks:
            task.cancel()
        await watchers.leave(run_id, key)

