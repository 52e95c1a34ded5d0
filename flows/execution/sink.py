"""The event sink of a run executing here: batches events into the database, then publishes.

`emit` only appends to a buffer (the engine must never wait on I/O to emit); a flusher
writes a batch in one transaction (with the batches other runs store at the same time:
flows/execution/grouping.py) and, after it commits, hands it to the run's publisher
(flows/execution/publisher.py), which sends it to the run's channel group off the run's
path: a subscriber never sees an event that is not stored, and a slow channel layer never
holds the run back.

Batches start at most once per FLUSH_DELAY_S. An event emitted after a quiet spell goes out
at once (after the emits of the same loop turn join it): a model streaming a token every
50 ms reaches its watchers in a few milliseconds instead of waiting out a fixed delay, while
a fast stream still makes one batch per FLUSH_DELAY_S. `durable` (awaited before a node with
side effects starts) cuts the delay short: it costs that node one round trip, no more. So do
the events a waiting client or watcher is waiting for — `run.waiting`, `run.finished` — and
the drain at the end of an execution: a short run answers its `wait` without the delay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from engine import events as ev
from flows.errors import LeaseLost
from flows.execution.grouping import group_commit
from flows.execution.publisher import Publisher
from flows.services.history import Batch, projected_nodes
from tracing.logs import warn_now_and_then

logger = logging.getLogger(__name__)

FLUSH_DELAY_S = 0.02
# Events someone waits for (a `wait` request, the run page's question): stored at once.
URGENT = frozenset({ev.RUN_WAITING, ev.RUN_FINISHED})
FLUSH_SIZE = 500
RETRY_FIRST_S = 0.05  # after a failed store, doubling up to RETRY_MAX_S
RETRY_MAX_S = 2.0
RETRY_FOR_S = 10.0  # then the run stops here, before its lease lets another take it


class DatabaseSink:
    """`lease` fences every batch (flows/services/lifecycle.py); when a batch is refused
    because another worker claimed the run, `on_lost` is called once and nothing more is
    stored or published from here."""

    def __init__(self, run_id: str, node_types: dict[str, str], lease: Any = None,
                 on_lost: Callable[[], None] | None = None,
                 known_nodes: set[str] | None = None):
        self.run_id = run_id
        self.node_types = node_types
        self.lease = lease
        self.on_lost = on_lost
        self.lost = False
        # The nodes that have a node-run row (None: unknown, look them up with each batch).
        self.known_nodes = known_nodes
        self.released = False  # run.finished is stored, and the lease was given up with it
        self._buffer: list[dict[str, Any]] = []
        self._wakeup = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._last_flush = float("-inf")  # loop time the last batch started
        self._emitted = 0  # events emitted, and of those stored (they leave in order)
        self._stored = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # (emitted count, waiter)
        self._nap: asyncio.Future[None] | None = None  # the flusher's pause between batches
        self._urgent = False  # an URGENT event waits in the buffer
        self.publisher = Publisher(run_id)

    def emit(self, event: dict[str, Any]) -> None:
        if self.lost:
            return
        self._buffer.append(event)
        self._emitted += 1
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush_soon())
        if event["type"] in URGENT:
            self._urgent = True
            self._hurry()

    async def durable(self) -> None:
        """Return once every event emitted so far is stored. When the sink has stopped (the
        lease was lost, or nothing could be stored for RETRY_FOR_S), this never returns: the
        run is being stopped here, and this waiter with it."""
        if self._stored >= self._emitted and not self.lost:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((self._emitted, waiter))
        self._hurry()
        await waiter

    def _hurry(self) -> None:
        """Store now rather than after the batching delay."""
        if self._nap is not None and not self._nap.done():
            self._nap.set_result(None)

    async def drain(self) -> None:
        """Store and publish everything emitted so far, at once."""
        self._hurry()
        flusher = self._flusher
        if flusher is not None:
            await asyncio.shield(flusher)
        while self._buffer:
            try:
                await self._flush()
            except LeaseLost as error:
                self._lose(error)
            except Exception as error:
                self._stop(error)
        if self._failure is not None:
            failure, self._failure = self._failure, None
            raise failure

    async def _flush_soon(self) -> None:
        try:
            loop = asyncio.get_running_loop()
            while self._buffer:
                if len(self._buffer) < FLUSH_SIZE:
                    # 0 after a quiet spell: still one turn of the loop, for company.
                    await self._pause(self._last_flush + FLUSH_DELAY_S - loop.time())
                self._last_flush = loop.time()
                await self._flush()
        except LeaseLost as error:
            self._lose(error)
        except Exception as error:  # stored nothing for RETRY_FOR_S: stop the run here
            logger.exception("storing events of run %s failed for %.0f s: stopping it here",
                             self.run_id, RETRY_FOR_S)
            self._stop(error)
        finally:
            self._flusher = None

    async def _pause(self, delay: float) -> None:
        """Sleep `delay` seconds before the next batch, or one loop turn; `durable` may end
        it early."""
        if delay <= 0 or self._waiters or self._urgent:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        self._nap = nap = loop.create_future()
        timer = loop.call_later(delay, lambda: nap.done() or nap.set_result(None))
        try:
            await nap
        finally:
            timer.cancel()
            self._nap = None

    def _lose(self, error: LeaseLost) -> None:
        logger.warning("%s: stopping it here", error)
        self._stop(error)

    def _stop(self, error: BaseException) -> None:
        """Store nothing more from here and have the run stopped in this process (an
        interruption: it continues from its stored events wherever it is claimed next)."""
        self.lost = True
        self._buffer.clear()
        self._failure = error
        if self.on_lost is not None:
            self.on_lost()

    async def _flush(self) -> None:
        # At most FLUSH_SIZE at a time: a burst (an llm node streaming a long text at once)
        # reaches its watchers while the rest is stored, in messages of bounded size.
        # The batch leaves the buffer only once stored: a failed store (a dropped connection)
        # is tried again with backoff, and events emitted meanwhile queue behind it, so the
        # stored events never have a gap.
        batch = self._buffer[:FLUSH_SIZE]
        self._urgent = False
        loop = asyncio.get_running_loop()
        failed_since, delay = None, RETRY_FIRST_S
        while True:
            try:
                stored = await group_commit().store(Batch(
                    self.run_id, batch, self.node_types, self.lease, self.known_nodes))
                break
            except LeaseLost:
                raise
            except Exception as error:
                now = loop.time()
                failed_since = failed_since if failed_since is not None else now
                if now - failed_since >= RETRY_FOR_S:
                    raise  # the run stops here; whoever claims it continues from what is stored
                warn_now_and_then(logger, "store", "storing events of run %s failed, trying "
                                  "again in %.1f s: %r", self.run_id, delay, error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        del self._buffer[:len(batch)]
        self._stored += len(batch)
        if self.known_nodes is not None:
            self.known_nodes |= projected_nodes(stored)
        if self.lease is not None and any(e["type"] == ev.RUN_FINISHED for e in stored):
            self.released = True
        if self._waiters:
            waiting = []
            for target, waiter in self._waiters:
                if target > self._stored:
                    waiting.append((target, waiter))
                elif not waiter.done():
                    waiter.set_result(None)
            self._waiters = waiting
        self.publisher.send(stored)
