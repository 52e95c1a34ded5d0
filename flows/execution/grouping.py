"""Group commit: the batches the runs of one event loop store meanwhile go in one transaction.

Each run's sink stores its batches one after another. Storing a batch takes a thread
hand-off and a transaction (BEGIN, the run row, the events, the node runs, COMMIT), and the
executor's database thread does one at a time: with dozens of short runs finishing at once,
they queued for it (bench/throughput.py). So while one store is under way, the batches of
other runs wait here, and the next store takes them all: one hand-off, one transaction, the
events of every run in one `executemany` and the new node runs in one insert
(flows/services/history.py, `store_batches`). A run alone pays nothing more: its batch is
stored at once.

What a sink is promised does not change: its batch is stored (and then published) or it
gets the error that refused it — a lost lease refuses only the batch of that run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from asgiref.sync import sync_to_async

from engine.events import Event
from flows.loops import per_loop
from flows.services.history import Batch, store_batches

MAX_GROUP = 64  # batches in one transaction


class GroupCommit:
    def __init__(self) -> None:
        self._queued: list[tuple[Batch, asyncio.Future[list[Event]]]] = []
        self._storing: asyncio.Task[None] | None = None

    async def store(self, batch: Batch) -> list[Event]:
        """Store the batch, with whatever other runs queued meanwhile; the events as stored."""
        loop = asyncio.get_running_loop()
        stored: asyncio.Future[list[Event]] = loop.create_future()
        self._queued.append((batch, stored))
        if self._storing is None:
            self._storing = loop.create_task(self._store_queued())
        return await stored

    async def _store_queued(self) -> None:
        try:
            while self._queued:
                group, self._queued = self._queued[:MAX_GROUP], self._queued[MAX_GROUP:]
                try:
                    outcomes: list[Any] = await sync_to_async(store_batches)(
                        [batch for batch, _ in group])
                except asyncio.CancelledError:  # the loop is stopping: so are the runs
                    for _, stored in group + self._queued:
                        stored.cancel()
                    self._queued = []
                    raise
                except Exception as error:
                    outcomes = [error] * len(group)
                for (_, stored), outcome in zip(group, outcomes, strict=True):
                    if stored.done():
                        continue
                    if isinstance(outcome, BaseException):
                        stored.set_exception(outcome)
                    else:
                        stored.set_result(outcome)
        finally:
            self._storing = None


# The group commit of the running event loop (the executor's, or a test's).
group_commit: Callable[[], GroupCommit] = per_loop(GroupCommit)
