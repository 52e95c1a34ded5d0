"""This process's heartbeat, and what follows from other processes' (docs/platform.md,
"Recovery").

Every WORKER_HEARTBEAT_S the executor writes its `Worker` row from a thread of its own, so
that a queue of run writes never delays it. A worker silent for WORKER_STALE_S is gone: the
others (those that maintain) take its runs over at their next beat, without waiting out the
runs' leases — a killed process's runs continue within about 8 s instead of 30.

The other side of the same promise: a worker that could not beat for WORKER_STALE_S less one
beat (the database unreachable, the process paused) stops executing its runs before anyone
may take them, and takes them up again once a beat succeeds, if nobody else did. Fencing
(the lease token on every write) still guards what slips through.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Protocol

from django.db import connections

from flows.execution.database import fresh
from flows.services import lifecycle
from tracing import metrics
from tracing.logs import warn_now_and_then

logger = logging.getLogger(__name__)


class Executor(Protocol):
    """What the heartbeat needs of the executor (flows/execution/executor.py)."""

    worker: str
    maintenance: bool

    @property
    def live_runs(self) -> int: ...

    def fence(self, reason: str) -> None: ...

    def retake_fenced(self) -> None: ...

    async def recover(self, gone: list[str] | tuple[str, ...] = ()) -> int: ...


async def keep_beating(executor: Executor) -> None:
    loop = asyncio.get_running_loop()
    thread = ThreadPoolExecutor(1, thread_name_prefix="astron-heartbeat")
    last_beat = loop.time()  # when the last beat that was stored was sent
    follow_up: asyncio.Task[None] | None = None  # what a beat sets off, never in its way

    async def call(function, *args):  # type: ignore[no-untyped-def]
        return await loop.run_in_executor(thread, fresh, function, *args)

    try:
        while True:
            interval = lifecycle.WORKER_HEARTBEAT_S
            # Each turn of the loop takes at most `interval` (a beat is given up after it),
            # so the fence falls at most one interval after this: before WORKER_STALE_S.
            fence_after = lifecycle.WORKER_STALE_S - 2 * interval
            sent = loop.time()
            try:
                await asyncio.wait_for(call(partial(lifecycle.beat, executor.worker,
                                                    executor.live_runs,
                                                    **metrics.worker_counts())), interval)
                last_beat = sent
            except Exception as error:
                warn_now_and_then(logger, "heartbeat", "the heartbeat of %s failed: %r",
                                  executor.worker, error)
            silent = loop.time() - last_beat
            if silent >= fence_after:
                executor.fence(f"this process could not beat for {silent:.1f} s")
            elif last_beat == sent and (follow_up is None or follow_up.done()):
                follow_up = loop.create_task(_after_a_beat(executor, call))
            await asyncio.sleep(max(interval - (loop.time() - sent), 0))
    finally:
        if follow_up is not None:
            follow_up.cancel()
        # The thread's connection goes with it (a test database can then be dropped).
        closing = loop.run_in_executor(thread, connections.close_all)
        thread.shutdown(wait=False)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(closing, 5)


async def _after_a_beat(executor: Executor, call) -> None:  # type: ignore[no-untyped-def]
    """Take up again the runs fenced here, and take over the runs of gone workers."""
    executor.retake_fenced()
    if not executor.maintenance:
        return
    try:
        gone = await call(lifecycle.gone_workers)
        if gone:
            taken = await executor.recover(gone=gone)
            if taken:
                logger.warning("workers gone (no heartbeat for %.0f s): %s; taking over %d "
                               "run(s)", lifecycle.WORKER_STALE_S, ", ".join(gone), taken)
            await call(lifecycle.forget_workers, gone)
    except Exception as error:
        warn_now_and_then(logger, "takeover", "taking over the runs of gone workers failed: %r",
                          error)
