"""The `iteration` node (docs/dsl.md §5.9): its body runs once per item, up to `concurrency` at once.

Items are handed to a few workers rather than one task each, so a 10,000-item iteration holds
at most `concurrency` body executions in memory; results keep the order of the items.
"""

from __future__ import annotations

import asyncio
from typing import Any

from engine.errors import NodeError
from engine.nodes.base import NodeCall
from engine.nodes.specs_io import IterationSpec
from engine.values import MAX_ITEMS, type_name_of

_DROPPED = object()
YIELD_EVERY_S = 0.005


class IterationNode(IterationSpec):
    async def execute(self, call: NodeCall) -> dict[str, Any]:
        params = call.params
        items = call.resolve(params["items"])
        if not isinstance(items, list):
            raise NodeError("type_mismatch",
                            f"items must resolve to an array, not {type_name_of(items)}")
        if not items:
            return {"results": []}
        if len(items) > MAX_ITEMS:
            raise NodeError("too_large", f"an iteration takes at most {MAX_ITEMS:,} items, "
                                         f"not {len(items):,}")
        mode = params.get("on_item_error", "fail")
        results: list[Any] = [None] * len(items)
        cursor = iter(range(len(items)))
        loop = asyncio.get_running_loop()
        turn = [loop.time()]  # when the loop last had a turn

        async def work() -> None:
            for index in cursor:
                if loop.time() - turn[0] >= YIELD_EVERY_S:
                    # A body of pure nodes never awaits: without this, a long iteration
                    # would hold the loop, and a cancel, renewals and every other run with it.
                    await asyncio.sleep(0)
                    turn[0] = loop.time()
                try:
                    results[index] = await call.execution.run_body(
                        call.node, params["body"], items[index], index)
                except NodeError:
                    if mode == "fail":
                        raise
                    results[index] = _DROPPED if mode == "skip" else None

        workers = [asyncio.create_task(work())
                   for _ in range(min(params.get("concurrency", 1), len(items)))]
        await _all_or_first_error(workers)
        return {"results": [result for result in results if result is not _DROPPED]}


async def _all_or_first_error(workers: list[asyncio.Task[None]]) -> None:
    """Wait for every worker; on the first failure stop the others and raise it."""
    try:
        done, pending = await asyncio.wait(workers, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError as interruption:
        for worker in workers:
            worker.cancel(*interruption.args[:1])
        await asyncio.gather(*workers, return_exceptions=True)
        raise
    # Every failure is retrieved (workers failing together are no "never retrieved" noise).
    failures = [error for error in (task.exception() for task in done) if error is not None]
    if not failures:
        return
    from engine.scheduler import STOP

    for worker in pending:
        worker.cancel(STOP)
    await asyncio.gather(*pending, return_exceptions=True)
    raise failures[0]
