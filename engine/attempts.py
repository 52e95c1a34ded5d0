"""The attempt loop of one node: slots, per-attempt timeouts, retries with backoff.

It runs in the node's own task and reports to the graph's dispatcher through its inbox; it
never changes the graph's state itself.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine import events as ev
from engine.context import capped
from engine.errors import NodeError
from engine.nodes.base import NodeCall
from engine.plan import PlanNode
from engine.values import oversize, type_problem

if TYPE_CHECKING:
    from engine.scheduler import GraphExecution


class RunAbort(Exception):
    """Raised inside a node (e.g. by an iteration body) when the whole run must fail."""

    def __init__(self, error: dict[str, Any]):
        super().__init__(error["message"])
        self.error = error


class AwaitAnswer(Exception):
    """Raised by a question node: its branch pauses until an answer or the deadline."""

    def __init__(self, question: str, options: list[dict[str, Any]], timeout_s: float | None):
        super().__init__(question)
        self.question = question
        self.options = options
        self.timeout_s = timeout_s


@dataclass(slots=True)
class Finished:
    outputs: dict[str, Any] | None
    error: NodeError | None
    attempts: int
    inputs: dict[str, Any]
    holding_slot: bool


@dataclass(slots=True)
class Aborted:
    error: dict[str, Any]


@dataclass(slots=True)
class Waiting:
    question: AwaitAnswer
    attempts: int
    inputs: dict[str, Any]
    holding_slot: bool


async def attempt_node(graph: GraphExecution, index: int, node: PlanNode,
                       inputs: dict[str, Any]) -> None:
    """Attempt a node until it succeeds, fails for good, or runs out of attempts.

    The concurrency slot of a finished attempt passes to the dispatcher with the report and is
    released only once the node is recorded, so events never show more nodes running than the
    run's concurrency allows.
    """
    context = graph.context
    strategy = context.registry[node.type]
    policy = node.retry
    inbox = graph.inbox
    assert inbox is not None
    attempt = 0
    holding = False
    try:
        while True:
            attempt += 1
            if not context.take_step():
                inbox.put_nowait((index, Aborted(context.max_steps_error())))
                return
            if strategy.holds_slot:
                await context.slots.acquire()
                holding = True
            if attempt == 1:
                graph.started[index] = graph.context.monotonic()
            graph.attempts[index] = attempt
            try:
                error, outputs = await _attempt(graph, node, strategy, inputs, attempt)
            except RunAbort as abort:
                inbox.put_nowait((index, Aborted(abort.error)))
                return
            except AwaitAnswer as question:
                inbox.put_nowait((index, Waiting(question, attempt, inputs, holding)))
                holding = False
                return
            if error is not None:
                error.node, error.attempt = node.id, attempt
            if error is None or not (error.transient and attempt < policy.max_attempts):
                inbox.put_nowait((index, Finished(outputs, error, attempt, inputs, holding)))
                holding = False
                return
            if holding:
                context.slots.release()
                holding = False
            delay_ms = policy.delay_ms(attempt, context.rng)
            graph.emit(ev.NODE_RETRYING, {"node": node.id, "attempt": attempt,
                                         "delay_ms": round(delay_ms, 3),
                                         "error": error.to_dict()})
            await asyncio.sleep(delay_ms / 1000)
    finally:
        if holding:
            context.slots.release()


async def _attempt(graph: GraphExecution, node: PlanNode, strategy: Any,
                   inputs: dict[str, Any], attempt: int
                   ) -> tuple[NodeError | None, dict[str, Any] | None]:
    context = graph.context
    graph.emit(ev.NODE_STARTED, {"node": node.id, "type": node.type, "attempt": attempt,
                                "inputs": capped(inputs, context.redact)})
    if attempt == 1:  # the execution's start is its first node.started, to the millisecond
        graph.started_ts[node.index] = context.last_ts
    graph.logs.pop(node.index, None)  # each attempt records its own output
    if strategy.side_effects:
        # What this node depends on, its own start included, is stored before it reaches
        # the world: after a crash it is the only node that may run twice (docs/dsl.md §7).
        await context.sink.durable()
    call = NodeCall(node, inputs, graph.scope, attempt, context.services, graph.chunk,
                    f"{context.run_id}{graph.path}/{node.id}", context.run_id, graph.item,
                    graph)
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
    except (RunAbort, AwaitAnswer):
        raise
    except Exception as error:  # a bug in a strategy must not take the run down with it
        return NodeError("internal_error", f"{type(error).__name__}: {error}"), None
    finally:
        if call.logs is not None:
            graph.logs[node.index] = call.logs
    too_large = oversize(outputs, graph.scope.max_bytes)  # before anything walks them
    if too_large:
        return NodeError("too_large", f"the node's outputs are {too_large}"), None
    problem = output_problem(outputs, node.outputs)
    if problem:
        return NodeError("output_type", problem), None
    return None, outputs


def output_problem(outputs: Any, declared: dict[str, Any] | None) -> str | None:
    """Why a node's outputs do not match its declaration (docs/dsl.md §2: never coerced)."""
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
