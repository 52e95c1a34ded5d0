"""`ProcessSandbox`: the CodeSandbox port, a small pool of warm sandbox processes.

Each job takes one idle process; with none idle it waits for one being started, and starts
one itself while the pool is below its size. Jobs wait for a process by tenant (the run's
owner, through `for_tenant`): a freed process goes to the tenant holding the fewest, so
one owner's burst of code nodes never queues another owner's (engine/sandbox/fair.py). A process that misbehaved (timeout, a limit,
a crash, anything left behind, a cancelled job) is killed and a fresh one started at once,
so the next job finds a warm process again.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from engine.errors import NodeError
from engine.ports import CodeLimits, CodeOutcome
from engine.sandbox.fair import FairSlots
from engine.sandbox.isolation import Isolation, choose_isolation
from engine.sandbox.outcome import encode_job, payload_cap, read_outcome
from engine.sandbox.worker import Worker, WorkerLost

logger = logging.getLogger(__name__)


class ProcessSandbox:
    """Runs `main(**inputs)` of user code in isolated processes (docs/sandbox.md).

    `isolation`: "auto" (bubblewrap when it works here, else the process fallback),
    "bubblewrap" (fail when it does not work) or "process" (always the fallback).
    """

    def __init__(self, limits: CodeLimits | None = None, workers: int = 2, *,
                 isolation: str = "auto", start_timeout_s: float = 20.0):
        if isolation not in ("auto", "bubblewrap", "process"):
            raise ValueError(f"unknown isolation {isolation!r}")
        self.limits = limits or CodeLimits()
        self.workers = max(1, int(workers))
        self.start_timeout_s = start_timeout_s
        self._choice = isolation
        self._isolation: Isolation | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = FairSlots(self.workers)
        self._idle: list[Worker] = []
        self._busy: set[Worker] = set()
        self._warming: set[asyncio.Task[Worker]] = set()
        self._claimed = 0  # warming processes a job is waiting for
        self._reaping: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def isolation(self) -> Isolation:
        """How this pool isolates code (detected on first use; blocking, so not from a
        coroutine before the pool has started)."""
        if self._isolation is None:
            self._isolation = choose_isolation(self._choice)
        return self._isolation

    @property
    def pids(self) -> list[int]:
        """Process ids of the live sandbox processes (bwrap's, or the fallback's zygote)."""
        return [worker.pid for worker in [*self._idle, *self._busy] if worker.alive]

    async def start(self) -> None:
        """Start the pool's processes now rather than at the first job."""
        await self._prepare()
        self._replenish()
        await asyncio.gather(*self._warming, return_exceptions=True)

    def for_tenant(self, tenant: str) -> TenantSandbox:
        """This pool as one tenant's CodeSandbox: its jobs get that tenant's fair share."""
        return TenantSandbox(self, tenant)

    async def run(self, code: str, inputs: dict[str, Any], limits: CodeLimits,
                  tenant: str = "") -> CodeOutcome:
        await self._prepare()
        try:
            body = encode_job(code, inputs, limits)
        except (TypeError, ValueError) as error:
            return _error("code_error", f"the inputs cannot be sent to the sandbox: {error}")
        async with self._slots.held(tenant):
            try:
                worker = await self._take()
            except (WorkerLost, OSError) as error:
                return _error("code_error", str(error))
            try:
                async with asyncio.timeout(limits.wall_s):
                    status, payload = await worker.execute(body, payload_cap(limits))
            except TimeoutError:
                self._recycle(worker)
                return _error("timeout", f"the code ran longer than the wall-clock limit of "
                                         f"{limits.wall_s:g} s")
            except WorkerLost as error:
                self._recycle(worker)
                return _error("code_error", str(error))
            except BaseException:  # cancelled: the process must stop with the node
                self._recycle(worker)
                raise
            outcome, reusable = read_outcome(status, payload, limits)
            if reusable and not self._closed:
                self._busy.discard(worker)
                self._idle.append(worker)
            else:
                self._recycle(worker)
            return outcome

    async def close(self) -> None:
        """Kill every process of the pool and wait until they are gone."""
        self._closed = True
        for task in self._warming:
            task.cancel()
        for worker in [*self._idle, *self._busy]:
            self._reap(worker)
        self._idle.clear()
        self._busy.clear()
        # Their callbacks reap what the starting tasks made; a process that still finishes
        # starting later (a job gave it back) is reaped by `_warmed` as the pool is closed.
        while self._warming or self._reaping:
            await asyncio.gather(*self._warming, *self._reaping, return_exceptions=True)

    # -- the pool -----------------------------------------------------------------------------

    async def _prepare(self) -> None:
        if self._closed:
            raise RuntimeError("the code sandbox is closed")
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # Processes and tasks belong to the loop that started them: a new loop (a test,
            # a thread of its own) gets processes of its own.
            self._forget()
            self._loop = loop
        if self._isolation is None:
            isolation = await asyncio.to_thread(choose_isolation, self._choice)
            if isolation.warning and self._isolation is None:
                logger.warning("code sandbox: %s", isolation.warning)
            self._isolation = isolation
        if not self._warming and not self._idle and not self._busy:
            self._replenish()  # first use: start the pool ahead of the jobs

    def _forget(self) -> None:
        for worker in [*self._idle, *self._busy]:
            worker.kill()
        self._idle, self._busy, self._warming, self._reaping = [], set(), set(), set()
        self._claimed = 0
        self._slots = FairSlots(self.workers)

    def _replenish(self) -> None:
        """Start processes until the pool has its size (idle, busy and starting together)."""
        while not self._closed and (len(self._idle) + len(self._busy) + len(self._warming)
                                    + self._claimed) < self.workers:
            task = asyncio.create_task(Worker.start(self.isolation, self.start_timeout_s))
            self._warming.add(task)
            task.add_done_callback(self._warmed)

    def _warmed(self, task: asyncio.Task[Worker]) -> None:
        """A process started that no job claimed: it waits, idle, for the next job."""
        if task not in self._warming:
            return
        self._warming.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            logger.warning("code sandbox: %s", error)
            return
        worker = task.result()
        if self._closed:
            self._reap(worker)
        else:
            self._idle.append(worker)

    async def _take(self) -> Worker:
        if self._closed:
            raise WorkerLost("the code sandbox is closed")
        while self._idle:
            worker = self._idle.pop()
            if worker.alive:
                self._busy.add(worker)
                return worker
            self._reap(worker)
        self._replenish()
        task = self._warming.pop()  # never empty: this job holds a slot, so the pool had room
        self._claimed += 1
        try:
            worker = await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled():
                self._warming.add(task)  # the process still starts, for the next job
                if task.done():
                    self._warmed(task)
            raise
        finally:
            self._claimed -= 1
        if self._closed:
            self._reap(worker)
            raise WorkerLost("the code sandbox is closed")
        self._busy.add(worker)
        return worker

    def _recycle(self, worker: Worker) -> None:
        self._busy.discard(worker)
        self._reap(worker)
        self._replenish()

    def _reap(self, worker: Worker) -> None:
        worker.kill()
        task = asyncio.get_running_loop().create_task(worker.wait_closed())
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)


class TenantSandbox:
    """The CodeSandbox port for one tenant's runs, on a shared ProcessSandbox."""

    __slots__ = ("pool", "tenant")

    def __init__(self, pool: ProcessSandbox, tenant: str) -> None:
        self.pool, self.tenant = pool, tenant

    async def run(self, code: str, inputs: dict[str, Any], limits: CodeLimits) -> CodeOutcome:
        return await self.pool.run(code, inputs, limits, tenant=self.tenant)


def _error(code: str, message: str) -> CodeOutcome:
    return CodeOutcome(error=NodeError(code, message))
