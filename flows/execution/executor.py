"""The executor of one process: runs execute as asyncio tasks on its own event-loop thread.

Any sync or async caller hands it a run id (`submit`); it claims the run's lease, drives the
engine with a database sink, renews the lease while the run lives, applies answers and
cancels that arrive through the database, and records how the run stopped. A maintenance
loop takes over runs whose worker died and wakes waiting runs whose deadline passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connections
from django.utils import timezone

from engine import Checkpoint, Plan, Run
from engine.ports import Services
from engine.questions import Answer, AnswerRefused
from engine.redaction import Redactor
from flows.errors import LeaseLost
from flows.execution.admission import Admission
from flows.execution.children import PlatformFlowRunner
from flows.execution.database import db
from flows.execution.heartbeat import keep_beating
from flows.execution.publisher import announce_pause
from flows.execution.renewals import Renewals
from flows.execution.settling import Settlements
from flows.execution.sink import DatabaseSink
from flows.execution.world import shared_world
from flows.models import Run as RunRow
from flows.plans import plan_for
from flows.services import capacity, lifecycle
from flows.services.history import projected_nodes, stored_events
from flows.services.schedules import fire_due
from flows.services.secrets import values_for
from tracing import metrics
from tracing.logs import hidden_in_logs, warn_now_and_then
from tracing.runs import ObservedSink, observed

logger = logging.getLogger(__name__)

MAINTENANCE_INTERVAL_S = 5.0
RENEW_RETRY_S = 1.0  # after a failed renewal


@dataclass(slots=True)
class LiveRun:
    """A run executing here: what renewals and requests reach."""

    engine_run: Run
    lease: lifecycle.Lease
    serial: int  # the answer_serial of the answers applied so far
    task: asyncio.Task[Any] | None  # the task executing it: cancelled to stop it here


class Executor:
    def __init__(self) -> None:
        self.worker = lifecycle.new_worker_id()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        self._live: dict[str, LiveRun] = {}
        self.settlements = Settlements()  # who waits here for which run to settle
        self._background: set[asyncio.Task[Any]] = set()  # referenced until done
        # Runs stopped here because this process lost touch with the database (heartbeat.py):
        # still leased to it, taken up again after its next beat unless another took them.
        self._fenced: set[str] = set()
        # Serving processes look after every run (recovery, deadlines); a command that runs
        # one flow turns this off so as not to adopt runs it would abandon when it exits.
        self.maintenance = True
        # A Celery worker bounds the runs it executes at once (flows/execution/worker.py);
        # the serving processes of the inline mode take every run they start.
        self.admission: Admission | None = None
        self.draining = False  # stopping on purpose: no new runs are taken
        self.renewals = Renewals()  # the runs' lease renewals, sent together
        self._ringing: set[Any] = set()  # owners whose held runs are being taken up here
        self._attending: set[str] = set()  # runs being claimed or executed by an attend here

    # -- the thread ---------------------------------------------------------------------------

    def start(self) -> asyncio.AbstractEventLoop:
        with self._guard:
            if self._loop is None:
                ready = threading.Event()
                self._thread = threading.Thread(target=self._serve, args=(ready,),
                                                name="astron-executor", daemon=True)
                self._thread.start()
                ready.wait()
            assert self._loop is not None
            return self._loop

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self.renewals = Renewals()  # nothing of a previous loop's
        self._spawn(keep_beating(self))
        if self.maintenance:
            self._spawn(self._maintain())
        ready.set()
        loop.run_forever()

    def stop(self) -> None:
        """Stop executing here (tests, shutdown): runs are interrupted, not cancelled, and
        another worker continues them once their leases expire."""
        with self._guard:
            loop, self._loop = self._loop, None
        if loop is None:
            return

        async def interrupt() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):  # the runs interrupted here go on at once
                await db(lifecycle.leave, self.worker)
            # Close the connections the ORM opened for this loop's database calls.
            await db(connections.close_all)
            loop.stop()

        asyncio.run_coroutine_threadsafe(interrupt(), loop)
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():  # its runs still unwind: a new loop would share them
                logger.warning("the executor's thread did not stop within 10 s")

    def prestart_sandbox(self) -> None:
        """Start the code sandbox's processes now, on this executor's loop, so the first code
        node does not wait for them (docs/configuration.md: CODE_WORKERS pre-started processes).
        Returns at once; a failure is logged, and the pool tries again at its first job."""
        sandbox = shared_world().sandbox
        if sandbox is None:
            return

        def failed(future: Any) -> None:
            if not future.cancelled() and future.exception() is not None:
                logger.warning("starting the code sandbox failed", exc_info=future.exception())

        asyncio.run_coroutine_threadsafe(sandbox.start(), self.start()).add_done_callback(failed)

    # -- entry points ---------------------------------------------------------------------------

    def submit(self, run_id: Any, reason: str = "start") -> Any:
        """Execute a run, or pass new answers or a cancel to it; safe from any thread. The
        future it returns is done once the run stops executing here (or was not taken)."""
        loop = self.start()
        # A fresh context: the caller's (e.g. a request's, holding asgiref's executor for
        # that request) must not follow the run, which outlives the request.
        return contextvars.Context().run(asyncio.run_coroutine_threadsafe,
                                         self.attend(str(run_id)), loop)

    def adopt(self, row: RunRow) -> None:
        """Execute a new run whose row was inserted leased to this worker (no claim, and no
        stored events to read: it has none yet); safe from any thread."""
        loop = self.start()
        contextvars.Context().run(asyncio.run_coroutine_threadsafe,
                                  self.attend(str(row.pk), claimed=row, new=True), loop)

    def recover_now(self, timeout: float = 30) -> int:
        """One recovery pass from sync code (commands, tests); the number of runs taken up."""
        loop = self.start()
        future = contextvars.Context().run(asyncio.run_coroutine_threadsafe, self.recover(), loop)
        return future.result(timeout)

    def wait(self, run_id: Any, timeout: float) -> None:
        """Block until the run finishes or waits for a person, or `timeout` passes (sync
        callers: commands and tests; it reads the run's state every 0.1 s besides)."""
        event = threading.Event()
        unwatch = self.settlements.watch(str(run_id), lambda _: event.set(), recent=False)
        deadline = timezone.now() + timedelta(seconds=timeout)
        try:
            while timezone.now() < deadline:
                # News from here is a hint (a run that moved, e.g. held for a slot, has not
                # settled): the row says.
                event.wait(0.1)
                event.clear()
                if lifecycle.is_settled(run_id):
                    break
        finally:
            unwatch()

    async def until_settled(self, run_id: Any, timeout: float) -> str | None:
        """Wait until a run just started here settles (SETTLED: it finished, or waits for a
        person) or moves to another process (MOVED: this one lost its lease); None after
        `timeout`. Holds no thread and no database connection meanwhile."""
        loop = asyncio.get_running_loop()
        news: asyncio.Future[str] = loop.create_future()

        def tell(what: str) -> None:
            if not news.done():
                news.set_result(what)

        unwatch = self.settlements.watch(str(run_id), lambda what: loop.call_soon_threadsafe(
            tell, what))
        try:
            async with asyncio.timeout(timeout):
                return await news
        except TimeoutError:
            return None
        finally:
            unwatch()

    async def attend(self, run_id: str, claimed: RunRow | None = None,
                     new: bool = False) -> None:
        """Execute the run, or pass it what its row asks (answers, a cancel) when it
        executes here already. `claimed`: its row, leased to this worker already (inserted
        so when `new`, which has no events to read; or taken over by the sweep)."""
        live = self._live.get(run_id)
        if live is not None:
            row = await db(lifecycle.renew, live.lease)
            if row is not None:
                await self._apply_requests(live, row)
            return
        if run_id in self._attending and claimed is None:
            # Another attend here is claiming it (the sweep and a doorbell at once): a
            # second claim by this same worker would execute it twice.
            metrics.doorbell_dropped()
            return
        self._attending.add(run_id)
        try:
            again = await self._execute(run_id, claimed, new)
            while again:
                again = await self._execute(run_id)
        except LeaseLost as lost:
            logger.warning("%s: another worker continues it", lost)
        except Exception:
            logger.exception("executing run %s failed", run_id)
        finally:
            self._attending.discard(run_id)
            if run_id not in self._live:
                # Not settled here (its waiters were told then): it continues elsewhere.
                self.settlements.moved(run_id)

    # -- executing ------------------------------------------------------------------------------

    async def _execute(self, run_id: str, claimed: RunRow | None = None,
                       new: bool = False) -> bool:
        """Execute a claimable run (or one `claimed` for this worker already) until it
        stops; True when it should be claimed again."""
        retake = run_id in self._fenced
        self._fenced.discard(run_id)
        row = claimed or await db(lifecycle.claim, run_id, self.worker, retake)
        if row is None:  # another worker holds it, or it needs nothing: a doubled doorbell
            metrics.doorbell_dropped()
            return False
        self.settlements.resume(run_id)
        if row.parent_run_id is not None and row.status == RunRow.Status.RUNNING:
            # Its parent starts a new child when it resumes.
            await db(lifecycle.terminate, row.pk, "cancelled",
                     "the parent run was interrupted and starts a new child run")
            self.settlements.settle(run_id)
            return False
        if lifecycle.kills_its_workers(row):
            logger.warning("run %s killed its worker %d times in a row: failing it",
                           run_id, row.unfinished_executions - 1)
            await db(lifecycle.give_up, row)
            self.settlements.settle(run_id)
            return False
        lease = lifecycle.Lease(row.pk, self.worker, row.lease_token)
        plan, stored, secrets, reuse = await db(_what_the_run_needs, row, not new)
        resume = Checkpoint.from_events(stored) if stored else None
        answers = [Answer(a["node"], a.get("answer"), a.get("option"), a.get("by"))
                   for a in row.pending_answers
                   if resume is not None and a["node"] in resume.questions]
        sink = self.sink_for(row, plan, lease, known_nodes=projected_nodes(stored))
        services = self.services_for(row.owner_id, run_id, secrets)
        engine_run = Run(plan, row.inputs, run_id=run_id, sink=sink,
                         flow=row.flow.slug, version=row.version_label,
                         services=services, resume=resume, answers=answers, depth=row.depth,
                         reuse=reuse)
        if row.cancel_requested:
            engine_run.cancel()
        with hidden_in_logs(run_id, services.redactor), \
                self.live(lease, engine_run, row.answer_serial), sink.executing():
            result = await engine_run.execute()  # the run's span is current meanwhile
        again = False
        if result.status == "waiting":
            again = await db(lifecycle.pause, lease, result, row.answer_serial)
            if not again:  # a waiter elsewhere hears of a pause only so (an end is an event)
                self._spawn(announce_pause(run_id))
        elif not released_with_finish(sink) and \
                not await db(lifecycle.release, lease, pending_answers=[]):
            raise LeaseLost(f"run {run_id}: the lease was lost as the run finished")
        if not again:
            self.settlements.settle(run_id)
            self._spawn(self._ring_held(row.owner_id))  # its slot is free
        return again

    async def _ring_held(self, owner_id: Any) -> None:
        """Take up the owner's runs that wait for a slot, oldest first, here: this worker
        just freed one (flows/services/capacity.py). Their claims check the slot, so a run
        still over a limit stays queued. Not through the broker: a burst's hundreds of held
        runs would ring it with a doorbell per held run per finished run, and new runs'
        doorbells would wait behind those. One look per owner at a time in this process."""
        if owner_id in self._ringing:
            return
        self._ringing.add(owner_id)
        try:
            for run_id in map(str, await db(capacity.held_runs, owner_id)):
                if run_id in self._live:
                    continue
                if self.admission is not None and not self.admission.try_acquire():
                    break  # no room here: the sweep, or a finish elsewhere, takes it
                self._track(self._spawn(self.attend(run_id)))
        except Exception as error:  # the sweep finds them
            warn_now_and_then(logger, "held", "taking up runs held for a slot failed: %r",
                              error)
        finally:
            self._ringing.discard(owner_id)

    @contextlib.contextmanager
    def live(self, lease: lifecycle.Lease, engine_run: Run, serial: int = 0) -> Iterator[None]:
        """While the block executes the run here: its lease is renewed, and cancels and
        answers that reach this process (`submit`, or seen on renewal) are applied to it."""
        live = LiveRun(engine_run, lease, serial, asyncio.current_task())
        run_id = str(lease.run_id)
        self._live[run_id] = live
        keeper = asyncio.get_running_loop().create_task(self.keep_lease(live))
        try:
            yield
        finally:
            keeper.cancel()
            self._live.pop(run_id, None)

    def stop_here(self, run_id: str) -> None:
        """Stop executing a run in this process at once, writing nothing more (its lease is
        lost or about to be): an interruption, which whoever holds the lease continues."""
        live = self._live.get(run_id)
        if live is not None and live.task is not None:
            live.task.cancel()

    @property
    def live_runs(self) -> int:
        """How many runs execute here now."""
        return len(self._live)

    def fence(self, reason: str) -> None:
        """Stop every run executing here before another worker may take it over."""
        if not self._live:
            return
        logger.warning("%s: stopping its %d run(s) here until it beats again", reason,
                       len(self._live))
        for run_id in list(self._live):
            self._fenced.add(run_id)
            self.stop_here(run_id)

    def retake_fenced(self) -> None:
        """Take up again the runs `fence` stopped here (unless another worker took them)."""
        for run_id in list(self._fenced):
            if run_id not in self._live:
                self._spawn(self.attend(run_id))

    async def keep_lease(self, live: LiveRun) -> None:
        """Renew the run's lease while it executes, and apply the answers and cancel that come
        with each renewal. A renewal that fails (a dropped connection, no pooled connection
        free) is tried again every RENEW_RETRY_S; when none has succeeded for the lease's
        length less a margin, this worker stops the run itself (self-fencing) before another
        may claim it. A renewal refused because another worker took the run stops it too."""
        loop = asyncio.get_running_loop()
        lease_s = lifecycle.lease_seconds()
        interval = lease_s / 3
        held_until = loop.time() + lease_s  # the claim was made before this moment
        failures = 0
        while True:
            await asyncio.sleep(interval if not failures else min(RENEW_RETRY_S, interval))
            sent = loop.time()
            fence = held_until - interval / 2  # stop by then: the lease ends at held_until
            try:
                # A renewal may wait (for the database thread, a pooled connection) as long
                # as the lease allows, and no longer.
                row = await asyncio.wait_for(self.renewals.renew(live.lease),
                                             max(fence - sent, 0.001))
            except Exception as error:  # any failure is tried again until the fence
                failures += 1
                if failures == 1 or failures % 10 == 0:
                    logger.warning("renewing the lease of run %s failed (%d in a row): %r",
                                   live.lease.run_id, failures, error)
                if loop.time() >= fence:
                    logger.warning("run %s: no renewal within its lease; stopping it here",
                                   live.lease.run_id)
                    self.stop_here(str(live.lease.run_id))
                    return
                continue
            if row is None:
                logger.warning("lost the lease of run %s: stopping here", live.lease.run_id)
                self.stop_here(str(live.lease.run_id))
                return
            failures = 0
            held_until = sent + lease_s
            await self._apply_requests(live, row)

    async def _apply_requests(self, live: LiveRun, row: RunRow) -> None:
        engine_run = live.engine_run
        if row.cancel_requested:
            engine_run.cancel()
        # A run that is stopping (pausing or finishing) keeps its answers on the row for
        # whoever claims it next.
        if row.pending_answers and row.answer_serial != live.serial and \
                engine_run.accepting_answers:
            for answer in row.pending_answers:
                try:
                    engine_run.answer(answer["node"], answer.get("answer"), answer.get("option"),
                                      answer.get("by"))
                except AnswerRefused:
                    logger.info("run %s: answer for %s no longer applies", live.lease.run_id,
                                answer["node"])
            await db(lifecycle.take_answers, live.lease, row.answer_serial)
            live.serial = row.answer_serial

    # -- what runs are given --------------------------------------------------------------------

    def sink_for(self, row: RunRow, plan: Plan, lease: lifecycle.Lease,
                 known_nodes: set[str] | None = None) -> ObservedSink:
        """The database sink, fenced by the run's lease, seen on the way by metrics and
        (when on) tracing. `known_nodes`: the nodes with a node-run row already."""
        node_types = {node.id: node.type for node in plan.graph.nodes}
        run_id = str(row.pk)
        sink = DatabaseSink(run_id, node_types, lease, on_lost=lambda: self.stop_here(run_id),
                            known_nodes=known_nodes)
        return observed(sink, run_id, node_types,
                        flow=row.flow.slug, version=row.version_label,
                        trace_parent=row.trace_parent)

    def services_for(self, owner_id: Any, run_id: str,
                     secrets: dict[str, str] | None = None) -> Services:
        """What a run reaches the world with; `secrets`: the owner's secrets its plan names,
        which its redactor then replaces wherever the run records text."""
        world = shared_world()
        # Code nodes share the process's sandbox pool, each owner with a fair share of it.
        sandbox = world.sandbox.for_tenant(str(owner_id)) if world.sandbox is not None else None
        return Services(llm_providers=world.llm_providers, sandbox=sandbox,
                        code_limits=world.code_limits, http=world.http,
                        value_max_bytes=settings.RUN_VALUE_MAX_BYTES,
                        stored_max_bytes=settings.RUN_STORED_MAX_MB * 2**20,
                        redactor=world.redactor + Redactor(named=secrets)
                        if secrets else world.redactor,
                        secrets=secrets or {},
                        flows=PlatformFlowRunner(self, owner_id, run_id))

    # -- maintenance ----------------------------------------------------------------------------

    async def _maintain(self) -> None:
        while True:
            try:
                await self.recover()
            except Exception:
                logger.exception("recovering runs failed")
            if not self.draining:
                try:
                    # Every executor looks; each scheduled time is claimed by one of them
                    # (flows/services/schedules.py), within this interval of the time.
                    await db(fire_due)
                except Exception:
                    logger.exception("starting scheduled runs failed")
            await asyncio.sleep(MAINTENANCE_INTERVAL_S)

    async def recover(self, gone: list[str] | tuple[str, ...] = ()) -> int:
        """Attend every run that needs a worker (those of `gone` workers too), as many as
        the admission has room for; the number of runs taken up."""
        limit = 100 if self.admission is None else min(100, self.admission.free)
        if limit <= 0 or self.draining:
            return 0
        # Runs that hold a slot and lost their worker are taken over in one statement on
        # PostgreSQL (SKIP LOCKED: sweeps in several workers split them); the others (and
        # all of them on SQLite) are claimed one by one, each checking its slot.
        claimed = await db(lifecycle.claim_stale, self.worker, limit, gone)
        for row in claimed:
            if self.admission is not None:
                self.admission.take()
            self._track(self._spawn(self.attend(str(row.pk), claimed=row)))
        taken = len(claimed)
        run_ids = await db(lifecycle.runs_needing_a_worker, limit=limit - taken, gone=gone)
        for run_id in (str(run_id) for run_id in run_ids):
            if run_id in self._live:
                continue
            if self.admission is not None and not self.admission.try_acquire():
                break
            self._track(self._spawn(self.attend(run_id)))
            taken += 1
        if taken:
            metrics.sweep_found(taken)
            logger.info("the sweep took up %d run(s)", taken)
        return taken

    # -- stopping on purpose ----------------------------------------------------------------

    def drain(self, timeout: float) -> list[str]:
        """Stop taking runs, let those executing here finish for `timeout` seconds, then
        interrupt the others and hand them over: their leases are freed at once so that
        another worker continues them now, not after a lease. The runs handed over."""
        loop = self._loop
        if loop is None:
            return []
        self.draining = True

        async def settle_or_hand_over() -> list[str]:
            deadline = loop.time() + timeout
            while self._live and loop.time() < deadline:
                await asyncio.sleep(0.05)
            left = list(self._live)
            for run_id in left:
                self.stop_here(run_id)
            await asyncio.sleep(0)  # the interrupted runs unwind
            await db(lifecycle.hand_off, self.worker)
            return left

        future = contextvars.Context().run(asyncio.run_coroutine_threadsafe,
                                           settle_or_hand_over(), loop)
        left = future.result(timeout + 30)
        self.stop()
        return left

    def _track(self, task: asyncio.Task[Any]) -> None:
        """Give the run's permit back when it stops executing here."""
        if self.admission is not None:
            admission = self.admission
            task.add_done_callback(lambda _: admission.release())

    def _spawn(self, work: Any) -> asyncio.Task[Any]:
        task = asyncio.get_event_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task



def released_with_finish(sink: ObservedSink) -> bool:
    """Whether the execution's last batch, holding run.finished, gave its lease up."""
    return isinstance(sink.sink, DatabaseSink) and sink.sink.released


def _what_the_run_needs(row: RunRow, has_events: bool
                        ) -> tuple[Plan, list[Any], dict[str, str], Checkpoint | None]:
    """Its plan, its stored events, the secrets it names, and for a retry that has not
    started yet what it takes over from the run it retries (built from that run's events,
    as a crash recovery builds its checkpoint)."""
    plan = plan_for(row.document_id)
    stored = stored_events(row.pk) if has_events else []
    reuse = None
    if not stored and row.retry_of_id is not None:
        reuse = Checkpoint.from_events(stored_events(row.retry_of_id)).reusable()
    return (plan, stored,
            values_for(row.owner_id, plan.secret_names) if plan.secret_names else {}, reuse)


executor = Executor()
