"""The dispatcher: runs one graph of a plan with every ready node started at once (docs/dsl.md §4).

One `GraphExecution` owns the state of its graph: edge decisions, node results, the ready
queue, open questions. Node attempts run as tasks (engine/attempts.py) that report back
through an inbox; pure nodes (no I/O) run inline, since a task each would cost more than the
node itself. Iteration bodies run as nested executions sharing the run's context.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from engine import events as ev
from engine.attempts import Aborted, AwaitAnswer, Finished, RunAbort, Waiting, attempt_node
from engine.checkpoint import BodyProgress
from engine.context import RunContext, capped
from engine.errors import NodeError
from engine.expressions import Scope
from engine.nodes.base import NodeCall
from engine.plan import GraphPlan, PlanNode
from engine.questions import Answer, OpenQuestion, QuestionsMixin
from engine.results import NodeResult
from engine.values import measure

# The message of a cancellation by the run itself (cancel, time limit, a failed node): the
# interrupted nodes are recorded as cancelled. Any other cancellation is an interruption
# from outside, after which nothing more is emitted so that the run can resume.
STOP = "astron:stop"


class GraphOutcome:
    """How a graph execution ended: succeeded (outputs), failed (error), or waiting."""

    __slots__ = ("error", "outputs", "status")

    def __init__(self, status: str, outputs: dict[str, Any] | None = None,
                 error: dict[str, Any] | None = None):
        self.status = status
        self.outputs = outputs
        self.error = error


class GraphExecution(QuestionsMixin):
    def __init__(self, context: RunContext, graph: GraphPlan, scope: Scope,
                 scope_name: str | None = None, item: int | None = None,
                 start_inputs: dict[str, Any] | None = None,
                 finished: dict[str, NodeResult] | None = None,
                 skipped: set[str] | None = None, path: str = "",
                 questions: dict[str, OpenQuestion] | None = None,
                 answers: dict[str, Answer] | None = None,
                 unfinished: dict[str, NodeResult] | None = None,
                 bodies: dict[tuple[str, int], BodyProgress] | None = None,
                 reused: set[str] | None = None):
        self.context = context
        self.graph = graph
        self.scope = scope
        self.scope_name = scope_name
        self.item = item
        self.start_inputs = start_inputs or {}
        # Where this graph sits in the run ("" at the top, "/each[3]" in an iteration body):
        # part of each node's idempotency key.
        self.path = path
        self.logs: dict[int, str] = {}
        self.replayed = finished or {}
        self.already_skipped = skipped or set()
        # Results a retry takes over (Run's `reuse`): recorded once as they are replayed.
        self.reused = reused or set()
        self.remaining = [len(node.incoming) for node in graph.nodes]
        self.live = [False] * len(graph.nodes)
        self.results: dict[str, NodeResult] = {}
        self.ready: deque[int] = deque([graph.start])
        self.tasks: dict[int, asyncio.Task[Any]] = {}
        self.started: dict[int, float] = {}
        self.started_ts: dict[int, str] = {}
        self.attempts: dict[int, int] = {}
        self.resolved_inputs: dict[int, dict[str, Any]] = {}  # recorded with each execution
        self.inbox: asyncio.Queue[tuple[int, Any]] | None = None  # made when first needed
        self.answer: str | None = None
        self.outcome: GraphOutcome | None = None
        self.bodies = bodies or {}  # items a checkpoint shows begun, each taken once
        self.init_questions(questions or {}, answers or {})
        for node_id, execution in (unfinished or {}).items():
            if node_id in graph.ids:
                self._carry_over(graph.ids[node_id], execution)

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> GraphOutcome:
        try:
            while True:
                self._start_ready()
                if self.outcome is not None:
                    # Also with no task left: a node between attempts (max_steps) or an open
                    # question has started and must end too.
                    await self._stop_tasks(loud=True)
                    self.close_questions()
                    return self.outcome
                if not self.tasks:
                    if self.waiting:
                        self.close_questions()
                        return GraphOutcome("waiting")
                    return GraphOutcome("failed", error={
                        "code": "internal_error", "message": "the run stopped making progress",
                        "node": None, "attempt": None})
                index, report = await self.mailbox().get()
                self._on_report(index, report)
        except asyncio.CancelledError as interruption:
            loud = STOP in interruption.args
            await self._stop_tasks(loud=loud)
            self.close_questions()
            raise

    def mailbox(self) -> asyncio.Queue[tuple[int, Any]]:
        if self.inbox is None:
            self.inbox = asyncio.Queue()
        return self.inbox

    def _on_report(self, index: int, report: Any) -> None:
        self.tasks.pop(index, None)
        if isinstance(report, Finished):
            self._complete(index, report.outputs, report.error, report.attempts, report.inputs)
            if report.holding_slot:
                self.context.slots.release()
        elif isinstance(report, Aborted):
            self.outcome = GraphOutcome("failed", error=report.error)
        elif isinstance(report, Waiting):
            self.open_question(index, report.question, report.attempts, report.inputs)
            if report.holding_slot:
                self.context.slots.release()
        else:
            self.on_question_report(index, report)

    def mark_cancelled(self) -> None:
        """End every started node execution that did not finish, open questions included,
        as cancelled: the run stops with them."""
        for index in list(self.started):
            node = self.graph.nodes[index]
            if node.id not in self.results:
                self.waiting.pop(index, None)
                self._record(index, "cancelled", None, NodeError(
                    "cancelled", "the run stopped before this node finished",
                    node.id, self.attempts.get(index)).to_dict(),
                    self.resolved_inputs.get(index))

    def node_results(self) -> dict[str, NodeResult]:
        """The graph's node executions so far, open questions as `waiting` (docs/dsl.md §5.10)."""
        results = dict(self.results)
        for index, question in self.waiting.items():
            node = self.graph.nodes[index]
            results[node.id] = NodeResult(node.id, node.type, "waiting", question.attempts,
                                          question.inputs, started_at=self.started_ts.get(index))
        return results

    def _carry_over(self, index: int, execution: NodeResult) -> None:
        """A node execution that a checkpoint shows started and not ended: it counts as
        started here, so that it ends cancelled if the run stops before it runs again."""
        self.started[index] = self.context.monotonic()
        self.attempts[index] = execution.attempts
        self.resolved_inputs[index] = execution.inputs or {}
        if execution.started_at is not None:
            self.started_ts[index] = execution.started_at

    async def _stop_tasks(self, loud: bool) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel(STOP if loud else None)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.tasks.clear()
        self._settle_reports(record=loud)
        if loud:
            self.mark_cancelled()

    def _settle_reports(self, record: bool) -> None:
        """Reports that arrived after the outcome: give back their slots, keep their results."""
        while self.inbox is not None and not self.inbox.empty():
            index, report = self.inbox.get_nowait()
            if getattr(report, "holding_slot", False):
                self.context.slots.release()
            if record and isinstance(report, Finished):
                error = report.error.to_dict() if report.error is not None else None
                self._record(index, "failed" if error else "succeeded", report.outputs, error,
                             report.inputs)

    def _start_ready(self) -> None:
        nodes, registry = self.graph.nodes, self.context.registry
        while self.ready and self.outcome is None:
            index = self.ready.popleft()
            node = nodes[index]
            replay = self.replayed.get(node.id)
            if replay is not None:
                self._replay(index, replay)
                continue
            if self.reopen_question(index):
                continue
            strategy = registry[node.type]
            try:
                inputs = self._resolve_inputs(node)
            except NodeError as error:
                if not self.context.take_step():
                    self.outcome = GraphOutcome("failed", error=self.context.max_steps_error())
                    return
                self.started[index] = self.context.monotonic()
                self.attempts[index] = 1
                self.emit(ev.NODE_STARTED, {"node": node.id, "type": node.type, "attempt": 1,
                                           "inputs": {}})
                self.started_ts[index] = self.context.last_ts
                self._complete(index, None, error, 1, {})
                continue
            if strategy.pure:
                self._run_inline(index, node, strategy, inputs)
            else:
                self.resolved_inputs[index] = inputs
                self.mailbox()
                self.tasks[index] = asyncio.create_task(attempt_node(self, index, node, inputs))

    def _resolve_inputs(self, node: PlanNode) -> dict[str, Any]:
        if node.index == self.graph.start:
            return self.start_inputs
        scope = self.scope
        return {name: expr.resolve(scope) for name, expr in node.inputs}

    # -- pure nodes, inline ------------------------------------------------------------------

    def _run_inline(self, index: int, node: PlanNode, strategy: Any,
                    inputs: dict[str, Any]) -> None:
        context = self.context
        if context.parent is None and context.steps < context.max_steps:
            context.steps += 1  # take_step, inlined: this path is most of a pure node's cost
        elif not context.take_step():
            self.outcome = GraphOutcome("failed", error=context.max_steps_error())
            return
        self.started[index] = self.context.monotonic()
        self.attempts[index] = 1
        context.emit(ev.NODE_STARTED, {"node": node.id, "type": node.type, "attempt": 1,
                                      "inputs": capped(inputs, context.redact) if inputs else {}},
                     self.scope_name, self.item)
        started_ts = self.started_ts[index] = context.last_ts
        call = NodeCall(node, inputs, self.scope, 1, context.services, self.chunk,
                        run_id=context.run_id, item=self.item, execution=self)
        try:
            outputs = strategy.run(call)
        except NodeError as error:
            self._complete(index, None, error, 1, inputs)
            return
        except Exception as error:  # a bug in a strategy must not take the run down with it
            self._complete(index, None, NodeError("internal_error",
                                                  f"{type(error).__name__}: {error}"), 1, inputs)
            return
        # A pure node's values were bounded as it made them; what remains is the run's budget.
        size, over = measure(outputs, context.stored_max_bytes - context.stored_bytes)
        if over is not None or node.on_error == "branch" or index == self.graph.end:
            self._complete(index, outputs, None, 1, inputs)  # measures again, decides
            return
        # The common case, inlined: this path is most of a pure node's cost.
        context.stored_bytes += size
        elapsed = round((context.monotonic() - self.started[index]) * 1000, 3)
        node_id = node.id
        self.scope.outputs[node_id] = outputs
        context.emit(ev.NODE_FINISHED, {"node": node_id, "status": "succeeded", "outputs": outputs,
                                       "error": None, "elapsed_ms": elapsed, "attempts": 1},
                     self.scope_name, self.item)
        self.results[node_id] = NodeResult(node_id, node.type, "succeeded", 1, inputs, outputs,
                                           None, elapsed, started_ts, context.last_ts)
        if node.branching:
            self._decide_outgoing(node, "handle", strategy.chosen_handle(outputs))
        else:
            self._decide_outgoing(node, "plain", None)

    # -- iteration bodies --------------------------------------------------------------------

    async def run_body(self, node: PlanNode, body: GraphPlan, item: Any,
                       index: int) -> dict[str, Any]:
        """Run an iteration body for one item; its end node's outputs, or the item's error.
        An item a checkpoint shows begun replays what had finished, as a top-level graph
        does; its progress is taken once, so a retry of the iteration runs items afresh."""
        progress = self.bodies.pop((node.id, index), None)
        if progress is not None and _names_scope(body, node.id):
            progress = None  # events nested in the body share this scope: run it again
        execution = GraphExecution(
            self.context, body, Scope({}, self.scope.sys, self.scope, item, index),
            scope_name=node.id, item=index, path=f"{self.path}/{node.id}[{index}]",
            **({"finished": progress.finished, "skipped": progress.skipped,
                "unfinished": progress.unfinished} if progress is not None else {}))
        outcome = await execution.run()
        if outcome.status == "succeeded":
            return outcome.outputs or {}
        error = outcome.error or {}
        if error.get("node") is None:
            raise RunAbort(error)  # max_steps: the whole run's budget is spent
        raise NodeError.from_dict(error)

    # -- completing nodes and deciding edges ------------------------------------------------

    def _complete(self, index: int, outputs: dict[str, Any] | None, error: NodeError | None,
                  attempts: int, inputs: dict[str, Any]) -> None:
        node = self.graph.nodes[index]
        handle = None
        if error is None:
            size, problem = measure(outputs, self.scope.max_bytes)
            if problem is not None:
                error, outputs = NodeError("too_large", f"the node's outputs are {problem}"), None
            elif (problem := self.context.record(size)) is not None:
                error, outputs = NodeError("too_large", problem), None
        if error is None:
            assert outputs is not None
            status, mode = "succeeded", "plain"
            if node.on_error == "branch":
                outputs = {**outputs, "error": None}
            if node.branching:
                handle = self.context.registry[node.type].chosen_handle(outputs)
                mode = "handle"
            error_data = None
        else:
            error.node = node.id
            error.attempt = error.attempt or attempts
            error_data = error.to_dict()
            if node.on_error == "default":
                status, mode, outputs = "recovered", "plain", dict(node.default or {})
            elif node.on_error == "branch":
                outputs = {name: None for name in node.outputs or {}}
                outputs["error"] = error_data
                status, mode = "recovered", "error"
            else:
                self._record(index, "failed", None, error_data, inputs)
                self.outcome = GraphOutcome("failed", error=error_data)
                return
        self._record(index, status, outputs, error_data, inputs)
        if index == self.graph.end:
            self.outcome = GraphOutcome("succeeded", outputs=outputs)
            return
        self._decide_outgoing(node, mode, handle)

    def _record(self, index: int, status: str, outputs: dict[str, Any] | None,
                error: dict[str, Any] | None, inputs: dict[str, Any] | None = None) -> None:
        node = self.graph.nodes[index]
        now = self.context.monotonic()
        elapsed = round((now - self.started.get(index, now)) * 1000, 3)
        attempts = self.attempts.get(index, 0)
        self.scope.outputs[node.id] = outputs
        data = {"node": node.id, "status": status, "outputs": outputs, "error": error,
                "elapsed_ms": elapsed, "attempts": attempts}
        logs = self.logs.get(index)
        if logs is not None:
            data["logs"] = logs
        self.emit(ev.NODE_FINISHED, data)
        self.results[node.id] = NodeResult(node.id, node.type, status, attempts, inputs, outputs,
                                           error, elapsed, self.started_ts.get(index),
                                           self.context.last_ts, logs)

    def _replay(self, index: int, result: NodeResult) -> None:
        """Take a node's result from a checkpoint instead of running it again."""
        node = self.graph.nodes[index]
        if node.id in self.reused:
            result = NodeResult(node.id, node.type, result.status, 0, result.inputs,
                                result.outputs, result.error, 0.0)
            self.emit(ev.NODE_FINISHED, {"node": node.id, "status": result.status,
                                        "outputs": result.outputs, "error": result.error,
                                        "elapsed_ms": 0.0, "attempts": 0, "reused": True})
        self.results[node.id] = result
        self.scope.outputs[node.id] = result.outputs
        self.context.stored_bytes += measure(result.outputs, self.context.stored_max_bytes)[0]
        if result.status == "failed":
            self.outcome = GraphOutcome("failed", error=result.error)
        elif index == self.graph.end:
            self.outcome = GraphOutcome("succeeded", outputs=result.outputs)
        elif result.status == "recovered" and node.on_error == "branch":
            self._decide_outgoing(node, "error", None)
        elif node.branching and result.status == "succeeded":
            handle = self.context.registry[node.type].chosen_handle(result.outputs or {})
            self._decide_outgoing(node, "handle", handle)
        else:
            self._decide_outgoing(node, "plain", None)

    def _decide_outgoing(self, node: PlanNode, mode: str, handle: str | None) -> None:
        edges, remaining, live = self.graph.edges, self.remaining, self.live
        for number in node.outgoing:
            edge = edges[number]
            if mode == "plain":
                taken = edge.branch is None
            elif mode == "error":
                taken = edge.branch == "error"
            else:
                taken = edge.branch == handle
            target = edge.target
            remaining[target] -= 1
            if taken:
                live[target] = True
            if remaining[target] == 0:
                if live[target] or target == self.graph.end:
                    self.ready.append(target)
                else:
                    self._skip(target)

    def _skip(self, first: int) -> None:
        """Skip a node whose incoming edges were all skipped, and what only it led to."""
        pending = [first]
        while pending:
            index = pending.pop()
            node = self.graph.nodes[index]
            self.scope.outputs[node.id] = None
            self.results[node.id] = NodeResult(node.id, node.type, "skipped")
            if node.id in self.reused:
                self.emit(ev.NODE_FINISHED, {"node": node.id, "status": "skipped",
                                            "outputs": None, "error": None, "elapsed_ms": 0.0,
                                            "attempts": 0, "reused": True})
            elif node.id not in self.already_skipped:
                self.emit(ev.NODE_SKIPPED, {"node": node.id})
            for number in node.outgoing:
                target = self.graph.edges[number].target
                self.remaining[target] -= 1
                if self.remaining[target]:
                    continue
                if self.live[target] or target == self.graph.end:
                    self.ready.append(target)
                else:
                    pending.append(target)

    # -- events ------------------------------------------------------------------------------

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        self.context.emit(kind, data, self.scope_name, self.item)

    def chunk(self, node_id: str, text: str) -> None:
        if self.scope_name is None and node_id == self.graph.nodes[self.graph.end].id:
            self.answer = (self.answer or "") + text
        self.emit(ev.NODE_CHUNK, {"node": node_id, "text": text})


def _names_scope(graph: GraphPlan, name: str) -> bool:
    """Whether a node of `graph`, or of a body nested in it, has the id `name`."""
    for node in graph.nodes:
        body = node.params.get("body") if isinstance(node.params, dict) else None
        if node.id == name or (isinstance(body, GraphPlan) and _names_scope(body, name)):
            return True
    return False


__all__ = ["STOP", "AwaitAnswer", "GraphExecution", "GraphOutcome"]
