"""Lease renewals sent together (docs/platform.md, Recovery).

Each run executing here renews its lease every third of RUN_LEASE_S. With hundreds of runs
on one worker and a short lease, one statement per renewal would keep the executor's
database thread busy enough to delay the renewals themselves past the leases, and a live
worker's runs would be taken over. Renewals asked for within BATCH_S of each other go out as
one statement (`lifecycle.renew_many`); each caller gets its own row, or None when its lease
was lost, exactly as from `lifecycle.renew`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from flows.execution.database import db
from flows.services import lifecycle

BATCH_S = 0.05


class Renewals:
    def __init__(self) -> None:
        self._waiting: list[tuple[lifecycle.Lease, asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def renew(self, lease: lifecycle.Lease) -> Any:
        """The run's row with its requests once its lease is renewed; None if it was lost."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Any] = loop.create_future()
        self._waiting.append((lease, answer))
        if self._sender is None or self._sender.done():
            self._sender = loop.create_task(self._send())
        return await answer

    async def _send(self) -> None:
        await asyncio.sleep(BATCH_S)
        batch, self._waiting = self._waiting, []
        try:
            rows = await db(lifecycle.renew_many, [lease for lease, _ in batch])
        except Exception as error:  # each caller retries on its own (keep_lease)
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(error)
            return
        finally:
            if self._waiting:  # asked for while this batch was out
                self._sender = asyncio.get_running_loop().create_task(self._send())
        for lease, answer in batch:
            if not answer.done():
                answer.set_result(rows.get(str(lease.run_id)))
