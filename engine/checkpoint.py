"""Checkpoints: what a run must know to continue after an interruption without redoing work.

Node results are the checkpoints. A checkpoint is rebuilt from the stored events of a run
(`Checkpoint.from_events`), so whatever stores the events also stores the checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from engine.results import NodeResult


@dataclass
class Checkpoint:
    next_seq: int = 1
    steps: int = 0
    elapsed_ms: float = 0.0
    started_at: str | None = None
    finished: dict[str, NodeResult] = field(default_factory=dict)  # top-level nodes that ended
    skipped: set[str] = field(default_factory=set)

    @classmethod
    def from_events(cls, events: list[dict[str, Any]]) -> Checkpoint:
        checkpoint = cls()
        first_ts = last_ts = None
        node_types: dict[str, str] = {}
        for event in events:
            checkpoint.next_seq = max(checkpoint.next_seq, event["seq"] + 1)
            first_ts = first_ts or event["ts"]
            last_ts = event["ts"]
            kind, data = event["type"], event["data"]
            if kind == "run.started":
                checkpoint.started_at = event["ts"]
            elif kind == "node.started":
                checkpoint.steps += 1
                if event.get("scope") is None:
                    node_types[data["node"]] = data["type"]
            elif event.get("scope") is not None:
                continue
            elif kind == "node.finished" and data["status"] != "cancelled":
                checkpoint.finished[data["node"]] = NodeResult(
                    node=data["node"], type=node_types.get(data["node"], ""),
                    status=data["status"], attempts=data["attempts"],
                    outputs=data["outputs"], error=data["error"],
                    elapsed_ms=data["elapsed_ms"], finished_at=event["ts"])
            elif kind == "node.skipped":
                checkpoint.skipped.add(data["node"])
        if first_ts and last_ts:
            checkpoint.elapsed_ms = _ms_between(first_ts, last_ts)
        return checkpoint


def _ms_between(first: str, last: str) -> float:
    start = datetime.fromisoformat(first.replace("Z", "+00:00"))
    end = datetime.fromisoformat(last.replace("Z", "+00:00"))
    return max(0.0, (end - start).total_seconds() * 1000)
