"""The dispatcher: runs one graph of a plan with every ready node started at once (dsl.md §4).

One `GraphExecution` owns the state of its graph: edge decisions, node results, the ready
queue. Node attempts run as tasks that report back through an inbox; pure nodes (no I/O)
run inline, since a task each would cost more than the node itself.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from engine.context import RunContext, capped
from engine.errors import NodeError
from engine.expressions import Scope
from engine.nodes.base import NodeCall
from engine.plan import GraphPlan, PlanNode
from engine.results import NodeResult
from engine.values import type_problem

_MAX_STEPS = object()  # an attempt loop's report that the run's step budget is spent


class GraphOutcome:
    """How a graph execution ended: succeeded (outputs), failed (error), or waiting."""

    __slots__ = ("error", "outputs", "status")

    def __init__(self, status: str, outputs: dict[str, Any] | None = None,
                 error: dict[str, Any] | None = None):
        self.status = status
        self.outputs = outputs
        self.error = error


class GraphExecution:
    def __init__(self, context: RunContext, graph: GraphPlan, scope: Scope,
                 scope_name: str | None = None, item: int | None = None,
                 start_inputs: dict[str, Any] | None = None,
                 finished: dict[str, NodeResult] | None = None,
                 skipped: set[str] | None = None, path: str = ""):
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
        self.remaining = [len(node.incoming) for node in graph.nodes]
        self.live = [False] * len(graph.nodes)
        self.results: dict[str, NodeResult] = {}
        self.ready: deque[int] = deque([graph.start])
        self.tasks: dict[int, asyncio.Task[Any]] = {}
        self.started: dict[int, float] = {}
        self.attempts: dict[int, int] = {}
        self.inbox: asyncio.Queue[tuple[int, Any]] | None = None  # made with the first task
        self.answer: str | None = None
        self.outcome: GraphOutcome | None = None

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> GraphOutcome:
        try:
            while True:
                self._start_ready()
                if self.outcome is not None:
                    if self.tasks:
                        await self._stop_tasks()
                    return self.outcome
                if not self.tasks:
                    return GraphOutcome("failed", error={
                        "code": "internal_error", "message": "the run stopped making progress",
                        "node": None, "attempt": None})
                assert self.inbox is not None
                index, report = await self.inbox.get()
                self.tasks.pop(index, None)
                if report is _MAX_STEPS:
                    self.outcome = self._max_steps_outcome()
                    continue
                outputs, error, attempts, inputs, holding_slot = report
                self._complete(index, outputs, error, attempts, inputs)
                if holding_slot:
                    self.context.slots.release()
        except asyncio.CancelledError:
            await self._stop_tasks(quietly=True)
            raise

    def mark_cancelled(self) -> None:
        """After an interruption by the run (timeout, cancel): record unfinished nodes."""
        for index in list(self.started):
            node = self.graph.nodes[index]
            if node.id not in self.results:
                self._record(index, "cancelled", None, NodeError(
                    "cancelled", "the run stopped before this node finished",
                    node.id, self.attempts.get(index)).to_dict())

    async def _stop_tasks(self, quietly: bool = False) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.tasks.clear()
        if not quietly:
            self.mark_cancelled()

    def _start_ready(self) -> None:
        nodes, registry = self.graph.nodes, self.context.registry
        while self.ready and self.outcome is None:
            index = self.ready.popleft()
            node = nodes[index]
            replay = self.replayed.get(node.id)
            if replay is not None:
                self._replay(index, replay)
                continue
            strategy = registry[node.type]
            try:
                inputs = self._resolve_inputs(node)
            except NodeError as error:
                if not self.context.take_step():
                    self.outcome = self._max_steps_outcome()
                    return
                self.started[index] = time.monotonic()
                self.attempts[index] = 1
                self._emit("node.started", {"node": node.id, "type": node.type, "attempt": 1,
                                            "inputs": {}})
                self._complete(index, None, error, 1, {})
                continue
            if strategy.pure:
                self._run_inline(index, node, strategy, inputs)
            else:
                if self.inbox is None:
                    self.inbox = asyncio.Queue()
                self.tasks[index] = asyncio.create_task(self._attempts(index, node, inputs))

    def _resolve_inputs(self, node: PlanNode) -> dict[str, Any]:
        if node.index == self.graph.start:
            return self.start_inputs
        scope = self.scope
        return {name: expr.resolve(scope) for name, expr in node.inputs}

    # -- executing nodes ---------------------------------------------------------------------

    def _run_inline(self, index: int, node: PlanNode, strategy: Any,
                    inputs: dict[str, Any]) -> None:
        context = self.context
        if context.steps >= context.max_steps:
            self.outcome = self._max_steps_outcome()
            return
        context.steps += 1
        self.started[index] = time.monotonic()
        self.attempts[index] = 1
        context.emit("node.started", {"node": node.id, "type": node.type, "attempt": 1,
                                      "inputs": capped(inputs) if inputs else {}},
                     self.scope_name, self.item)
        call = NodeCall(node, inputs, self.scope, 1, context.services, self._chunk,
                        run_id=context.run_id, item=self.item)
        try:
            outputs = strategy.run(call)
        except NodeError as error:
            self._complete(index, None, error, 1, inputs)
            return
        if node.on_error == "branch" or index == self.graph.end:
            self._complete(index, outputs, None, 1, inputs)
            return
        # The common case, inlined: this path is most of a pure node's cost.
        elapsed = round((time.monotonic() - self.started[index]) * 1000, 3)
        node_id = node.id
        self.scope.outputs[node_id] = outputs
        context.emit("node.finished", {"node": node_id, "status": "succeeded", "outputs": outputs,
                                       "error": None, "elapsed_ms": elapsed, "attempts": 1},
                     self.scope_name, self.item)
        self.results[node_id] = NodeResult(node_id, node.type, "succeeded", 1, inputs, outputs,
                                           None, elapsed, None, context.last_ts)
        if node.branching:
            self._decide_outgoing(node, "handle", strategy.chosen_handle(outputs))
        else:
            self._decide_outgoing(node, "plain", None)

    async def _attempts(self, index: int, node: PlanNode, inputs: dict[str, Any]) -> None:
        """Attempt a node until it succeeds, fails for good, or runs out of attempts.

        The concurrency slot of a finished attempt passes to the dispatcher with the report and
        is released only once the node is recorded, so events never show more nodes running
        than the run's concurrency allows.
        """
        context = self.context
        strategy = context.registry[node.type]
        policy = node.retry
        attempt = 0
        holding = False
        try:
            while True:
                attempt += 1
                if not context.take_step():
                    self.inbox.put_nowait((index, _MAX_STEPS))
                    return
                if strategy.holds_slot:
                    await context.slots.acquire()
                    holding = True
                if attempt == 1:
                    self.started[index] = time.monotonic()
                self.attempts[index] = attempt
                error, outputs = await self._attempt(node, strategy, inputs, attempt)
                if error is not None:
                    error.node, error.attempt = node.id, attempt
                if error is None or not (error.transient and attempt < policy.max_attempts):
                    self.inbox.put_nowait((index, (outputs, error, attempt, inputs, holding)))
                    holding = False
                    return
                if holding:
                    context.slots.release()
                    holding = False
                delay_ms = policy.delay_ms(attempt, context.rng)
                self._emit("node.retrying", {"node": node.id, "attempt": attempt,
                                             "delay_ms": round(delay_ms, 3),
                                             "error": error.to_dict()})
                await asyncio.sleep(delay_ms / 1000)
        finally:
            if holding:
                context.slots.release()

    async def _attempt(self, node: PlanNode, strategy: Any, inputs: dict[str, Any],
                       attempt: int) -> tuple[NodeError | None, dict[str, Any] | None]:
        self._emit("node.started", {"node": node.id, "type": node.type, "attempt": attempt,
                                    "inputs": capped(inputs)})
        call = NodeCall(node, inputs, self.scope, attempt, self.context.services, self._chunk,
                        f"{self.context.run_id}{self.path}/{node.id}", self.context.run_id,
                        self.item)
        try:
            if node.timeout_s is None:
                outputs = await strategy.execute(call)
            else:
                async with asyncio.timeout(node.timeout_s):
                    outputs = await strategy.execute(call)
        except TimeoutError:
            return NodeError("timeout", f"the attempt took longer than {node.timeout_s:g} s"), None
        except NodeError as error:
            return error, None
        except Exception as error:  # a bug in a strategy must not take the run down with it
            return NodeError("internal_error", f"{type(error).__name__}: {error}"), None
        finally:
            if call.logs is not None:
                self.logs[node.index] = call.logs
        problem = _output_problem(outputs, node.outputs)
        if problem:
            return NodeError("output_type", problem), None
        return None, outputs

    # -- completing nodes and deciding edges ------------------------------------------------

    def _complete(self, index: int, outputs: dict[str, Any] | None, error: NodeError | None,
                  attempts: int, inputs: dict[str, Any]) -> None:
        node = self.graph.nodes[index]
        handle = None
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
        now = time.monotonic()
        elapsed = round((now - self.started.get(index, now)) * 1000, 3)
        attempts = self.attempts.get(index, 0)
        self.scope.outputs[node.id] = outputs
        data = {"node": node.id, "status": status, "outputs": outputs, "error": error,
                "elapsed_ms": elapsed, "attempts": attempts}
        logs = self.logs.get(index)
        if logs is not None:
            data["logs"] = logs
        self._emit("node.finished", data)
        self.results[node.id] = NodeResult(node.id, node.type, status, attempts, inputs, outputs,
                                           error, elapsed, finished_at=self.context.last_ts,
                                           logs=logs)

    def _replay(self, index: int, result: NodeResult) -> None:
        """Take a node's result from a checkpoint instead of running it again."""
        node = self.graph.nodes[index]
        self.results[node.id] = result
        self.scope.outputs[node.id] = result.outputs
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
            if node.id not in self.already_skipped:
                self._emit("node.skipped", {"node": node.id})
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

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        self.context.emit(kind, data, self.scope_name, self.item)

    def _chunk(self, node_id: str, text: str) -> None:
        if self.scope_name is None and node_id == self.graph.nodes[self.graph.end].id:
            self.answer = (self.answer or "") + text
        self._emit("node.chunk", {"node": node_id, "text": text})

    def _max_steps_outcome(self) -> GraphOutcome:
        return GraphOutcome("failed", error={
            "code": "max_steps", "node": None, "attempt": None,
            "message": f"the run used its {self.context.max_steps} steps"})


def _output_problem(outputs: Any, declared: dict[str, Any] | None) -> str | None:
    """Why a node's outputs do not match its declaration (dsl.md §2: never coerced)."""
    if declared is None:
        return None
    if not isinstance(outputs, dict):
        return f"the node must produce an object of outputs, not {type(outputs).__name__}"
    missing = [name for name in declared if name not in outputs]
    if missing:
        return f"missing output {', '.join(sorted(missing))}"
    extra = [name for name in outputs if name not in declared]
    if extra:
        return f"undeclared output {', '.join(sorted(map(str, extra)))}"
    for name, spec in declared.items():
        problem = type_problem(outputs[name], spec, f'the output "{name}"')
        if problem:
            return problem
    return None
