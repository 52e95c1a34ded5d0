"""A run of a plan: inputs checked, the top-level graph executed, limits and cancellation applied."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

from engine import events as ev
from engine.checkpoint import Checkpoint
from engine.context import RunContext
from engine.errors import run_error
from engine.expressions import Scope
from engine.nodes.base import Registry
from engine.plan import Plan
from engine.ports import EventSink, NullSink, Services, StepBudget
from engine.questions import Answer, AnswerRefused, check_answer
from engine.results import RunResult
from engine.scheduler import STOP, GraphExecution, GraphOutcome


class Run:
    """One execution of a plan. `await execute()` runs it; `cancel()` stops it from outside.

    A run that waits for an answer returns with status `waiting`; it continues as a new `Run`
    given `resume=Checkpoint.from_events(stored events)` and the `answers`.

    A retry is a new run given `reuse=Checkpoint.from_events(the original's events)
    .reusable()`: it takes those node results over — each recorded once, as a `node.finished`
    with `reused: true`, zero attempts and zero time — and executes the rest.
    """

    def __init__(self, plan: Plan, inputs: dict[str, Any], *, run_id: str | None = None,
                 sink: EventSink | None = None, flow: str = "", version: int | str = "draft",
                 registry: Registry | None = None, services: Services | None = None,
                 rng: Any = None, resume: Checkpoint | None = None,
                 answers: list[Answer] | None = None, depth: int = 0,
                 lineage: tuple[str, ...] | None = None, parent_steps: StepBudget | None = None,
                 reuse: Checkpoint | None = None):
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
        self.reuse = reuse if resume is None else None  # a resumed retry has its own events
        self.answers = {answer.node: answer for answer in answers or []}
        self.depth = depth
        self.parent_steps = parent_steps  # a child run's steps count against its parent's
        self.lineage = lineage if lineage is not None else ((flow,) if flow else ())
        self._task: asyncio.Task[Any] | None = None
        self._graph: GraphExecution | None = None
        self._cancel_requested = False
        self._timed_out = False
        self._stops = 0  # cancellations of the task made by the run itself

    def cancel(self) -> None:
        """Stop the run: running nodes are interrupted and the run ends `cancelled`."""
        if self._cancel_requested:
            return
        self._cancel_requested = True
        self._stop()

    @property
    def accepting_answers(self) -> bool:
        """Whether `answer` can reach this run now (it is executing its graph)."""
        return self._graph is not None

    def answer(self, node: str, answer: str | None, option: str | None = None,
               by: str | None = None) -> None:
        """Answer an open question of this run while it executes; raise AnswerRefused."""
        graph = self._graph
        index = self.plan.graph.ids.get(node)
        if graph is None or index is None or index not in graph.waiting:
            raise AnswerRefused("not_waiting", f'no question "{node}" is open')
        check_answer(self.plan, node, answer, option)
        graph.deliver(Answer(node, answer, option, by))

    async def execute(self) -> RunResult:
        applied = self.plan.apply_inputs(self.inputs)
        resume = self.resume or Checkpoint()
        for answer in self.answers.values():
            if answer.node not in resume.questions:
                raise AnswerRefused("not_waiting", f'no question "{answer.node}" is open')
            check_answer(self.plan, answer.node, answer.answer, answer.option)
        settings = self.plan.settings
        context = RunContext(self.run_id, self.sink, self.registry, self.services,
                             settings.concurrency, settings.max_steps, self.rng,
                             next_seq=resume.next_seq, steps=resume.steps,
                             elapsed_ms=resume.elapsed_ms, depth=self.depth,
                             lineage=self.lineage, parent=self.parent_steps)
        started_at = resume.started_at or context.clock.now()
        sys = {"run_id": self.run_id, "flow": self.flow, "flow_version": self.version,
               "started_at": started_at}
        taken = self.reuse or resume
        self._graph = graph = GraphExecution(
            context, self.plan.graph,
            Scope({}, sys, max_bytes=self.services.value_max_bytes, secrets=self.services.secrets),
            start_inputs=applied,
            finished=taken.finished, skipped=taken.skipped, questions=resume.questions,
            answers=self.answers, unfinished=resume.unfinished, bodies=resume.bodies,
            reused=set(taken.finished) | taken.skipped if self.reuse is not None else None)
        if self.resume is None:
            context.emit(ev.RUN_STARTED, {"inputs": applied, "flow": self.flow,
                                         "version": self.version})
        if graph.graph.nodes[graph.graph.end].id in resume.finished:
            graph.answer = resume.answer  # the end node's streamed answer, as stored
        try:
            outcome = await self._drive(graph, settings.timeout_s - resume.elapsed_ms / 1000)
        except BaseException:
            await self.sink.drain()  # keep what was emitted before the interruption
            raise
        finally:
            self._graph = None
        elapsed_ms = context.elapsed_ms()
        recovered = sum(1 for r in graph.results.values() if r.status == "recovered")
        answer = None
        if outcome.status == "succeeded":
            answer = graph.answer
            if answer is None and "answer" in self.plan.graph.nodes[self.plan.graph.end].params:
                answer = ""
        waiting = [question.to_dict() for question in graph.waiting.values()]
        if outcome.status != "waiting":
            context.emit(ev.RUN_FINISHED, {"status": outcome.status, "outputs": outcome.outputs,
                                          "answer": answer, "error": outcome.error,
                                          "elapsed_ms": elapsed_ms, "recovered": recovered})
        await self.sink.drain()
        return RunResult(outcome.status, outcome.outputs, answer, outcome.error, elapsed_ms,
                         recovered, context.steps, graph.node_results(), context.next_seq - 1,
                         waiting)

    async def _drive(self, graph: GraphExecution, budget_s: float) -> GraphOutcome:
        """Run the graph in this task under the run's time budget.

        Cancelling this task with STOP is how both `cancel()` and the time limit stop the work;
        anything else that cancels it is an interruption from outside (the process is stopping)
        and propagates with no run.finished, so the run can resume from its checkpoints.
        """
        self._task = task = asyncio.current_task()
        assert task is not None
        if self._cancel_requested:
            # What the checkpoint shows unfinished (open questions, nodes interrupted while
            # running) ends with the run.
            graph.mark_cancelled()
            return self._cancelled()
        loop = asyncio.get_running_loop()
        # A bare timer rather than asyncio.timeout(): it costs a quarter as much per run.
        deadline = loop.call_at(loop.time() + max(budget_s, 0), self._time_out)
        try:
            return await graph.run()
        except asyncio.CancelledError as interruption:
            if STOP not in interruption.args:
                raise
            for _ in range(self._stops):
                task.uncancel()
            if task.cancelling():
                raise  # an interruption from outside came too: it wins
        finally:
            deadline.cancel()
            self._task = None
        if self._timed_out and not self._cancel_requested:
            return GraphOutcome("failed", error=run_error(
                "run_timeout", f"the run took longer than {self.plan.settings.timeout_s:g} s"))
        return self._cancelled()

    def _time_out(self) -> None:
        self._timed_out = True
        self._stop()

    def _stop(self) -> None:
        if self._task is not None:
            self._stops += 1
            self._task.cancel(STOP)

    @staticmethod
    def _cancelled() -> GraphOutcome:
        return GraphOutcome("cancelled", error=run_error("cancelled", "the run was cancelled"))
