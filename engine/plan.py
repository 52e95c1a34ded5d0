"""The compiled, immutable form of a flow: what the scheduler runs and what caches store.

A plan is plain data. `to_dict` gives JSON-compatible data (for JSON or MessagePack, never
pickle) and `Plan.from_dict` rebuilds it without validating or compiling again. A plan's
identity is its `digest`, the SHA-256 of the document's canonical JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.dsl.spec import pointer
from engine.errors import InputsInvalid, Problem
from engine.expressions import Expression, expression_from_data
from engine.nodes.base import Registry
from engine.values import type_problem

PLAN_FORMAT = 2  # 2: secret_names


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 1
    backoff_ms: float = 1000
    multiplier: float = 2.0
    max_backoff_ms: float = 30000
    jitter: bool = True

    def delay_ms(self, failed_attempt: int, random: Any) -> float:
        """The pause after attempt `failed_attempt` (1-based) failed: docs/dsl.md §2, full jitter."""
        bound = min(self.backoff_ms * self.multiplier ** (failed_attempt - 1), self.max_backoff_ms)
        return random.uniform(0, bound) if self.jitter else bound


@dataclass(frozen=True, slots=True, eq=False)
class PlanNode:
    id: str
    type: str
    index: int
    inputs: tuple[tuple[str, Expression], ...]
    params: dict[str, Any]
    outputs: dict[str, Any] | None  # declared outputs, checked after each attempt
    retry: RetryPolicy
    timeout_s: float | None
    on_error: str
    default: dict[str, Any] | None
    branching: bool
    incoming: tuple[int, ...]  # edge indexes
    outgoing: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class PlanEdge:
    source: int
    target: int
    branch: str | None


@dataclass(frozen=True, slots=True, eq=False)
class GraphPlan:
    nodes: tuple[PlanNode, ...]
    edges: tuple[PlanEdge, ...]
    order: tuple[int, ...]  # topological
    start: int
    end: int
    ids: dict[str, int] = field(default_factory=dict)

    def to_data(self, registry: Registry | None = None) -> dict[str, Any]:
        registry = registry or _default_registry()
        return {
            "nodes": [_node_to_data(node, registry) for node in self.nodes],
            "edges": [[e.source, e.target, e.branch] for e in self.edges],
            "order": list(self.order),
            "start": self.start,
            "end": self.end,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any], registry: Registry | None = None) -> GraphPlan:
        registry = registry or _default_registry()
        nodes = tuple(_node_from_data(item, registry) for item in data["nodes"])
        return cls(nodes, tuple(PlanEdge(*edge) for edge in data["edges"]), tuple(data["order"]),
                   data["start"], data["end"], {node.id: node.index for node in nodes})


@dataclass(frozen=True, slots=True, eq=False)
class Settings:
    timeout_s: float = 600
    max_steps: int = 100_000
    concurrency: int = 16


@dataclass(frozen=True, slots=True, eq=False)
class Plan:
    digest: str
    name: str
    settings: Settings
    graph: GraphPlan
    input_specs: dict[str, dict[str, Any]]
    # The secrets the document references: checked at a run's start, read as it executes.
    secret_names: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plan) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def apply_inputs(self, inputs: Any) -> dict[str, Any]:
        """Check run inputs against the start node and apply defaults (docs/dsl.md §5.1)."""
        if not isinstance(inputs, dict):
            raise InputsInvalid([Problem("", "invalid_inputs", "inputs must be an object")])
        problems = []
        applied: dict[str, Any] = {}
        for name in inputs:
            if name not in self.input_specs:
                problems.append(Problem(pointer("", name), "invalid_inputs",
                                        f'"{name}" is not an input of this flow'))
        for name, spec in self.input_specs.items():
            if name not in inputs:
                if spec.get("required", False):
                    problems.append(Problem(pointer("", name), "invalid_inputs",
                                            f'the input "{name}" is required'))
                applied[name] = spec.get("default")
                continue
            problem = type_problem(inputs[name], spec, f'the input "{name}"')
            if problem:
                problems.append(Problem(pointer("", name), "invalid_inputs", problem))
            applied[name] = inputs[name]
        if problems:
            raise InputsInvalid(problems)
        return applied

    def to_dict(self, registry: Registry | None = None) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "digest": self.digest,
            "name": self.name,
            "settings": {"timeout_s": self.settings.timeout_s,
                         "max_steps": self.settings.max_steps,
                         "concurrency": self.settings.concurrency},
            "graph": self.graph.to_data(registry),
            "input_specs": self.input_specs,
            "secret_names": list(self.secret_names),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], registry: Registry | None = None) -> Plan:
        if data.get("format") != PLAN_FORMAT:
            raise ValueError(f"unsupported plan format {data.get('format')!r}")
        return cls(data["digest"], data["name"], Settings(**data["settings"]),
                   GraphPlan.from_data(data["graph"], registry), data["input_specs"],
                   tuple(data["secret_names"]))


def _node_to_data(node: PlanNode, registry: Registry) -> dict[str, Any]:
    spec = registry[node.type].params_spec
    retry = node.retry
    return {
        "id": node.id, "type": node.type, "index": node.index,
        "inputs": [[name, expr.to_data()] for name, expr in node.inputs],
        "params": spec.encode(node.params),
        "outputs": node.outputs,
        "retry": [retry.max_attempts, retry.backoff_ms, retry.multiplier, retry.max_backoff_ms,
                  retry.jitter],
        "timeout_s": node.timeout_s, "on_error": node.on_error, "default": node.default,
        "branching": node.branching,
        "incoming": list(node.incoming), "outgoing": list(node.outgoing),
    }


def _node_from_data(data: dict[str, Any], registry: Registry) -> PlanNode:
    spec = registry[data["type"]].params_spec
    return PlanNode(
        data["id"], data["type"], data["index"],
        tuple((name, expression_from_data(expr)) for name, expr in data["inputs"]),
        spec.decode(data["params"]), data["outputs"], RetryPolicy(*data["retry"]),
        data["timeout_s"], data["on_error"], data["default"], data["branching"],
        tuple(data["incoming"]), tuple(data["outgoing"]),
    )


def _default_registry() -> Registry:
    from engine.nodes import shared_default_registry as default_registry

    return default_registry()
