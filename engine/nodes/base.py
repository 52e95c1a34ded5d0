"""The interface every node type implements, and what a node sees while it executes.

A strategy is a small class with four concerns: its params (a declarative spec plus any
semantic `check`), its outputs, its branch handles, and how it executes. Strategies are
stateless; everything about one execution arrives in a `NodeCall`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from engine.dsl.spec import Checker, Obj
from engine.expressions import Expression, Scope

if TYPE_CHECKING:
    from engine.plan import PlanNode
    from engine.ports import Services


class NodeCall:
    """One attempt of one node: its resolved inputs, compiled params and the run's services."""

    __slots__ = ("_emit_chunk", "attempt", "execution", "idempotency_key", "inputs", "item",
                 "logs", "node", "params", "run_id", "scope", "services")

    def __init__(self, node: PlanNode, inputs: dict[str, Any], scope: Scope, attempt: int,
                 services: Services, emit_chunk: Any, idempotency_key: str = "",
                 run_id: str = "", item: int | None = None, execution: Any = None):
        self.node = node
        self.params = node.params
        self.inputs = inputs
        self.scope = scope
        self.attempt = attempt
        self.services = services
        self._emit_chunk = emit_chunk
        # The same for every attempt of this node (and item): servers can deduplicate retries.
        self.idempotency_key = idempotency_key
        self.run_id = run_id
        self.item = item
        self.logs: str | None = None  # what the node printed, recorded with its execution
        # The graph execution running this node: how iterations run their bodies.
        self.execution = execution

    def resolve(self, value: Any) -> Any:
        """The run-time value of a compiled param (literals pass through)."""
        if isinstance(value, Expression):
            return value.resolve(self.scope, self.inputs)
        return value

    def chunk(self, text: str) -> None:
        """Stream a piece of text (a `node.chunk` event)."""
        if text:
            self._emit_chunk(self.node.id, text)


class NodeStrategy:
    """Base class of node types. Subclasses set the class attributes and override what differs."""

    type_name: ClassVar[str]
    params_spec: ClassVar[Obj] = Obj()
    # One line on what a node of this type does: editors show it (the schema carries it).
    summary: ClassVar[str] = ""
    # Outputs every node of this type has; None when each node declares its own (`code`).
    fixed_outputs: ClassVar[dict[str, dict[str, Any]] | None] = {}
    # Pure strategies do no I/O and never yield, so the scheduler runs them inline, without a task.
    pure: ClassVar[bool] = False
    # Types whose execution reaches the world (a request sent, code run, a person asked): the
    # events before their start are stored first, so that a crash repeats no finished node.
    side_effects: ClassVar[bool] = False
    allows_timeout: ClassVar[bool] = True
    # Types whose node holds no concurrency slot while it waits for children (iteration, subflow).
    holds_slot: ClassVar[bool] = True
    # Types whose `params.body` is a nested graph validated and compiled like the flow's own.
    has_body: ClassVar[bool] = False

    def check(self, node: dict[str, Any], path: str, checker: Checker) -> None:
        """Semantic checks of params beyond their shape (ids unique, operators known…)."""

    def declared_outputs(self, node: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
        """Output name → type spec; None when unknown because the node is broken."""
        return dict(self.fixed_outputs) if self.fixed_outputs is not None else None

    def handles(self, node: dict[str, Any]) -> tuple[str, ...] | None:
        """Branch handles of a branch node; None for a node whose edges are all plain."""
        return None

    def chosen_handle(self, outputs: dict[str, Any]) -> str | None:
        """For a branch node, the handle its outputs chose."""
        return None

    def run(self, call: NodeCall) -> dict[str, Any]:
        """Execute a pure node synchronously (only for `pure = True`)."""
        raise NotImplementedError

    async def execute(self, call: NodeCall) -> dict[str, Any]:
        """Execute one attempt and return the node's outputs; raise NodeError on failure."""
        return self.run(call)


class Registry:
    """Node type name → strategy instance."""

    def __init__(self, strategies: list[NodeStrategy] | None = None):
        self._strategies: dict[str, NodeStrategy] = {}
        for strategy in strategies or []:
            self.register(strategy)

    def register(self, strategy: NodeStrategy) -> None:
        self._strategies[strategy.type_name] = strategy

    def get(self, type_name: str) -> NodeStrategy | None:
        return self._strategies.get(type_name)

    def __getitem__(self, type_name: str) -> NodeStrategy:
        return self._strategies[type_name]

    def names(self) -> list[str]:
        return sorted(self._strategies)
