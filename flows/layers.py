"""The embedded channel layer: Channels' in-memory layer, made safe across event loops.

Runs execute on the executor's own event-loop thread (flows/execution/executor.py) and their
sink publishes from there, while websocket consumers receive on the server's loop. Channels'
`InMemoryChannelLayer` keeps one `asyncio.Queue` per channel, and an asyncio queue is not
thread-safe: a `put_nowait` from the executor's thread would wake a consumer's pending `get`
from the wrong thread (or not at all: the server's loop is never told to look), and could
raise "bound to a different event loop".

This layer remembers, per channel, the loop that receives on it (set by `receive` and by
`group_add`, which a consumer calls from its own loop). A `send` or `group_send` made on
another loop hops onto the receiving loop (`asyncio.run_coroutine_threadsafe`, awaited with
`asyncio.wrap_future`), so every queue is only ever touched by its own loop. On one loop it
behaves exactly like the in-memory layer. With `REDIS_URL` set, channels_redis is used
instead; it already works across loops and processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from typing import Any

import msgpack
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer

logger = logging.getLogger(__name__)

# How long a sender on another loop waits for the receiving loop to take a message. A loop
# that does not answer in this time is stuck or gone: the message is dropped like one to a
# full channel (subscribers fill gaps from the database, see flows/consumers.py).
HOP_TIMEOUT_S = 5.0


class CrossLoopInMemoryChannelLayer(InMemoryChannelLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loops: dict[str, asyncio.AbstractEventLoop] = {}

    # -- which loop owns a channel ------------------------------------------------------------

    def _owner(self, channel: str) -> asyncio.AbstractEventLoop | None:
        """The loop to touch `channel`'s queue on, or None when it is the current one."""
        loop = self._loops.get(channel)
        if loop is None:
            return None
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        return None if loop is current else loop

    def _forget(self, channel: str) -> None:
        self._loops.pop(channel, None)

    async def _on(self, loop: asyncio.AbstractEventLoop | None, work: Any) -> Any:
        """Run the coroutine `work` on `loop` (here when None) and return its result."""
        if loop is None:
            return await work
        if loop.is_closed() or not loop.is_running():
            work.close()
            raise ChannelFull("the loop receiving on this channel is gone")
        future = asyncio.run_coroutine_threadsafe(work, loop)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), HOP_TIMEOUT_S)
        except TimeoutError:
            future.cancel()
            raise ChannelFull("the loop receiving on this channel did not answer") from None

    # -- channel layer API ----------------------------------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        await self._on(self._owner(channel), super().send(channel, message))

    async def receive(self, channel: str) -> dict[str, Any]:
        self._loops[channel] = asyncio.get_running_loop()
        try:
            return await super().receive(channel)
        except asyncio.CancelledError:
            # The consumer stopped: nothing receives on this channel on that loop any more.
            if channel not in self.channels:
                self._forget(channel)
            raise

    async def group_add(self, group: str, channel: str) -> None:
        # A consumer joins its groups from the loop it receives on: remember it now, so a
        # message published before its first receive() already goes to the right loop.
        self._loops.setdefault(channel, asyncio.get_running_loop())
        await super().group_add(group, channel)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        assert isinstance(message, dict), "Message is not a dict"
        self.require_valid_group_name(group)
        by_loop: dict[asyncio.AbstractEventLoop | None, list[str]] = defaultdict(list)
        for channel in list(self.groups.get(group, {})):
            by_loop[self._owner(channel)].append(channel)
        if not by_loop:
            return
        # One copy for the whole group, not one per member as the in-memory layer does (100
        # watchers of a 500-event batch spent most of the server's time in deepcopy): the
        # sender may reuse its message, the receivers (our consumers) only read theirs. The
        # copy is a msgpack round trip, as through channels_redis: several times faster than
        # deepcopy, and a message that could not cross Redis cannot cross this layer either.
        message = msgpack.unpackb(msgpack.packb(message, use_bin_type=True), raw=False)
        for loop, channels in by_loop.items():
            try:
                await self._on(loop, self._deliver(channels, message))
            except ChannelFull:
                logger.debug("group %s: a receiving loop is gone or stuck", group)

    async def _deliver(self, channels: list[str], message: dict[str, Any]) -> None:
        """Put `message` on each channel; runs on the loop that receives on them."""
        self._clean_expired()
        expires = time.time() + self.expiry
        for channel in channels:
            queue = self.channels.setdefault(
                channel, asyncio.Queue(maxsize=self.get_capacity(channel)))
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait((expires, message))

    async def flush(self) -> None:
        await super().flush()
        self._loops = {}

    # -- expiry, only ever on the loop that owns a queue ----------------------------------------

    def _clean_expired(self) -> None:
        now = time.time()
        for channel, queue in list(self.channels.items()):
            if self._owner(channel) is not None:
                continue  # another loop's queue: that loop cleans it
            while not queue.empty() and queue._queue[0][0] < now:
                queue.get_nowait()
                self._remove_from_groups(channel)
                if queue.empty():
                    self.channels.pop(channel, None)
        timeout = int(now) - self.group_expiry
        for channels in list(self.groups.values()):
            for name, joined in list(channels.items()):
                if joined and joined < timeout:
                    channels.pop(name, None)
