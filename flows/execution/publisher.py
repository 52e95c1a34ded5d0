"""Sending a run's stored events to whoever watches it, off the run's path.

The sink stores a batch, hands it to the run's `Publisher` and goes on: a slow or frozen
channel layer (Redis stopped) must never hold a run back. Publishing is best effort, since
everything published is already stored: watchers drop what they already have and read what
they missed from the database (flows/consumers.py). So the publisher keeps one message in
flight, bounds each send by PUBLISH_TIMEOUT_S, sends the batches that piled up behind a slow
send together, and when more than MAX_MESSAGE_EVENTS piled up, only announces the seq they
reach, for the watchers to read them from the database.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.layers import get_channel_layer

from tracing import metrics
from tracing.logs import warn_now_and_then

logger = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 2.0
MAX_MESSAGE_EVENTS = 500


def run_group(run_id: Any) -> str:
    return f"run.{run_id}"


class Publisher:
    """Publishes one run's stored batches in order, one message in flight."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self._pending: list[dict[str, Any]] = []
        self._skipped = 0  # events only announced, not sent, since the last send
        self._task: asyncio.Task[None] | None = None

    def send(self, events: list[dict[str, Any]]) -> None:
        """Queue stored events; never waits."""
        if not events:
            return
        self._pending.extend(events)
        if len(self._pending) > MAX_MESSAGE_EVENTS:
            # Memory stays bounded while the layer is stuck: keep the last event, whose seq
            # is announced instead.
            self._skipped += len(self._pending) - 1
            del self._pending[:-1]
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._send_all())

    async def idle(self) -> None:
        """Wait until everything queued was sent or given up (for tests and shutdown)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _send_all(self) -> None:
        try:
            while self._pending:
                events, self._pending = self._pending, []
                count, skipped = len(events) + self._skipped, self._skipped
                self._skipped = 0
                if skipped:
                    delivered = await announce(self.run_id, events[-1]["seq"])
                else:
                    delivered = await publish(self.run_id, events)
                metrics.events_delivered(count, delivered)
        finally:
            self._task = None


async def publish(run_id: Any, events: list[dict[str, Any]]) -> bool:
    """Send stored events to whoever watches the run, within PUBLISH_TIMEOUT_S; a failure
    here loses nothing stored. False when the channel layer refused them or was too slow.

    A batch MessagePack cannot carry (an integer beyond 64 bits in a node's outputs: JSON and
    the database take it, the channel layers do not) is announced instead by the seq it
    reaches, and the watchers read it from the database at once (flows/consumers.py)."""
    if not events:
        return True
    try:
        return await _group_send(run_id, {"type": "run.events", "events": events})
    except (OverflowError, TypeError, ValueError):
        return await announce(run_id, events[-1]["seq"])


async def announce(run_id: Any, seq: int) -> bool:
    """Tell the run's watchers that its events are stored up to `seq`."""
    try:
        return await _group_send(run_id, {"type": "run.events", "events": [], "stored_to": seq})
    except (OverflowError, TypeError, ValueError):  # pragma: no cover - nothing to encode
        return False


async def announce_pause(run_id: Any) -> bool:
    """Tell the run's watchers that it paused for a person with nothing left to act on: a
    `wait` request for it in another process returns (an end needs no such message: its
    `run.finished` event says so). Sockets ignore it: it carries no events."""
    return await _group_send(run_id, {"type": "run.events", "events": [], "paused": True})


async def _group_send(run_id: Any, message: dict[str, Any]) -> bool:
    layer = get_channel_layer()
    if layer is None:
        return True
    try:
        await asyncio.wait_for(layer.group_send(run_group(run_id), message), PUBLISH_TIMEOUT_S)
    except (OverflowError, TypeError, ValueError):
        raise
    except TimeoutError:
        warn_now_and_then(logger, "publish", "publishing events of run %s took longer than "
                          "%.0f s: given up (watchers read them from the database)", run_id,
                          PUBLISH_TIMEOUT_S)
        return False
    except Exception:
        warn_now_and_then(logger, "publish", "publishing events of run %s failed", run_id,
                          exc_info=True)
        return False
    return True
