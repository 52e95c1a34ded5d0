"""A run of a plan: inputs checked, the top-level graph executed, limits and cancellation applied."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from random import Random
from typing import Any

from engine.checkpoint import Checkpoint
from engine.context import RunContext
from engine.errors import run_error
from engine.expressions import Scope
from engine.nodes.base import Registry
from engine.plan import Plan
from engine.ports import EventSink, NullSink, Services
from engine.results import RunResult
from engine.scheduler import GraphExecution, GraphOutcome


class Run:
    """One execution of a plan. `await execute()` runs it; `cancel()` stops it from outside."""

    def __init__(self, plan: Plan, inputs: dict[str, Any], *, run_id: str | None = None,
                 sink: EventSink | None = None, flow: str = "", version: int | str = "draft",
                 registry: Registry | None = None, services: Services | None = None,
                 rng: Random | None = None, resume: Checkpoint | None = None):
        if registry is None:
            from engine.nodes import shared_default_registry

            registry = shared_default_registry()
        self.plan = plan
        self.inputs = inputs
        self.run_id = run_id or str(uuid.uuid4())
        self.sink = sink or NullSink()
        self.flow = flow
        self.version = version
        self.registry = registry
        self.services = services or Services()
        # The random module's shared generator: seeding a new one per run costs ~15 µs.
        self.rng: Any = rng or random
        self.resume = resume
        self._task: asyncio.Task[Any] | None = None
        self._cancel_requested = False
        self._timed_out = False

    def cancel(self) -> None:
        """Stop the run: running nodes are interrupted and the run ends `cancelled`."""
        if self._cancel_requested:
            return
        self._cancel_requested = True
        if self._task is not None:
            self._task.cancel()

    async def execute(self) -> RunResult:
        applied = self.plan.apply_inputs(self.inputs)
        resume = self.resume or Checkpoint()
        settings = self.plan.settings
        context = RunContext(self.run_id, self.sink, self.registry, self.services,
                             settings.concurrency, settings.max_steps, self.rng,
                             next_seq=resume.next_seq, steps=resume.steps)
        started_at = resume.started_at or context.clock.now()
        sys = {"run_id": self.run_id, "flow": self.flow, "flow_version": self.version,
               "started_at": started_at}
        graph = GraphExecution(context, self.plan.graph, Scope({}, sys), start_inputs=applied,
                               finished=resume.finished, skipped=resume.skipped)
        if self.resume is None:
            context.emit("run.started", {"inputs": applied, "flow": self.flow,
                                         "version": self.version})
        clock = time.monotonic()
        outcome = await self._drive(graph, settings.timeout_s - resume.elapsed_ms / 1000)
        elapsed_ms = round(resume.elapsed_ms + (time.monotonic() - clock) * 1000, 3)
        recovered = sum(1 for r in graph.results.values() if r.status == "recovered")
        answer = graph.answer if outcome.status == "succeeded" else None
        if answer is None and outcome.status == "succeeded" and \
                "answer" in self.plan.graph.nodes[self.plan.graph.end].params:
            answer = ""
        context.emit("run.finished", {"status": outcome.status, "outputs": outcome.outputs,
                                      "answer": answer, "error": outcome.error,
                                      "elapsed_ms": elapsed_ms, "recovered": recovered})
        await self.sink.drain()
        return RunResult(outcome.status, outcome.outputs, answer, outcome.error, elapsed_ms,
                         recovered, context.steps, graph.results, context.next_seq - 1)

    async def _drive(self, graph: GraphExecution, budget_s: float) -> GraphOutcome:
        """Run the graph in this task under the run's time budget.

        Cancelling this task is how both `cancel()` and the time limit stop the work; anything
        else that cancels it is an interruption from outside (the process is stopping) and
        propagates with no run.finished, so the run can resume from its checkpoints.
        """
        self._task = task = asyncio.current_task()
        assert task is not None
        if self._cancel_requested:
            return self._stopped(graph)
        loop = asyncio.get_running_loop()
        # A bare timer rather than asyncio.timeout(): it costs a quarter as much per run.
        deadline = loop.call_at(loop.time() + max(budget_s, 0), self._time_out)
        try:
            return await graph.run()
        except asyncio.CancelledError:
            if not (self._cancel_requested or self._timed_out):
                raise
            task.uncancel()
        finally:
            deadline.cancel()
            self._task = None
        if self._timed_out and not self._cancel_requested:
            graph.mark_cancelled()
            return GraphOutcome("failed", error=run_error(
                "run_timeout", f"the run took longer than {self.plan.settings.timeout_s:g} s"))
        return self._stopped(graph)

    def _time_out(self) -> None:
        self._timed_out = True
        if self._task is not None:
            self._task.cancel()

    @staticmethod
    def _stopped(graph: GraphExecution) -> GraphOutcome:
        graph.mark_cancelled()
        return GraphOutcome("cancelled", error=run_error("cancelled", "the run was cancelled"))
