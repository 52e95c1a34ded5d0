"""What a run and its node executions end with: plain values the platform stores."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(slots=True)
class NodeResult:
    node: str
    type: str
    status: str  # running, waiting, succeeded, recovered, failed, skipped, cancelled
    attempts: int = 0
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    elapsed_ms: float = 0.0
    started_at: str | None = None
    finished_at: str | None = None
    logs: str | None = None  # what a code node printed (capped)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeResult:
        return cls(**data)


@dataclass(slots=True)
class RunResult:
    status: str  # succeeded, failed, cancelled, waiting
    outputs: dict[str, Any] | None = None
    answer: str | None = None
    error: dict[str, Any] | None = None
    elapsed_ms: float = 0.0
    recovered: int = 0
    steps: int = 0
    nodes: dict[str, NodeResult] = field(default_factory=dict)
    last_seq: int = 0
    waiting: list[dict[str, Any]] = field(default_factory=list)  # open questions
