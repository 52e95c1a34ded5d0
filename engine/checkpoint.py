"""Checkpoints: what a run must know to continue after an interruption or a pause.

Node results are the checkpoints, and they travel in the run's events: a checkpoint is
rebuilt from the stored events (`Checkpoint.from_events`), so whatever stores the events
also stores the checkpoints, and no other state has to be written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from engine import events as ev
from engine.errors import run_error
from engine.events import Event
from engine.questions import OpenQuestion
from engine.results import NodeResult


@dataclass
class BodyProgress:
    """What one item's body of a top-level iteration had done: like a graph's checkpoint,
    so a resumed iteration replays the items (and body nodes) that had finished."""

    finished: dict[str, NodeResult] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)
    unfinished: dict[str, NodeResult] = field(default_factory=dict)


@dataclass
class Checkpoint:
    next_seq: int = 1
    steps: int = 0
    elapsed_ms: float = 0.0
    started_at: str | None = None
    finished: dict[str, NodeResult] = field(default_factory=dict)  # top-level nodes that ended
    skipped: set[str] = field(default_factory=set)
    questions: dict[str, OpenQuestion] = field(default_factory=dict)  # open ones
    # top-level node executions that started and did not end (status running), open
    # questions among them: each runs again, or ends cancelled when the run stops first
    unfinished: dict[str, NodeResult] = field(default_factory=dict)
    answer: str | None = None  # the end node's streamed answer, when it had finished
    # (iteration node id, item index) → that body's progress, for the top-level iterations
    # that had not finished. Body events carry only the iteration's id as their scope, so
    # an iteration nested in a body starts its items again (docs/dsl.md §5.9).
    bodies: dict[tuple[str, int], BodyProgress] = field(default_factory=dict)

    @classmethod
    def from_events(cls, events: list[Event]) -> Checkpoint:
        checkpoint = cls()
        unfinished = checkpoint.unfinished
        # Executing time: the last snapshot (0 at run.started, carried by run.resumed) plus
        # the time from it to the last stored event. A pause starts at the last event before
        # it and ends with run.resumed, so paused time is never counted.
        snapshot_ms, snapshot_ts, last_ts = 0.0, None, None
        chunks: dict[str, list[str]] = {}
        for event in events:
            checkpoint.next_seq = max(checkpoint.next_seq, event["seq"] + 1)
            last_ts = event["ts"]
            kind, data = event["type"], event["data"]
            if kind == ev.RUN_STARTED:
                checkpoint.started_at = snapshot_ts = event["ts"]
                continue
            scope = event.get("scope")
            progress: Checkpoint | BodyProgress = checkpoint
            if scope is not None:
                key = (scope, event["item"])
                body = checkpoint.bodies.get(key)
                if body is None:
                    body = checkpoint.bodies[key] = BodyProgress()
                progress = body
            if kind == ev.NODE_STARTED:
                checkpoint.steps += 1
                execution = progress.unfinished.get(data["node"])
                if execution is None or data["attempt"] == 1:
                    progress.unfinished[data["node"]] = execution = NodeResult(
                        data["node"], data["type"], "running",
                        inputs=data.get("inputs") or {}, started_at=event["ts"])
                execution.attempts = data["attempt"]
            elif kind == ev.NODE_FINISHED:
                execution = progress.unfinished.pop(data["node"], None)
                if scope is None:
                    checkpoint.questions.pop(data["node"], None)
                if data["status"] == "cancelled":
                    continue  # it runs again on resume
                if data["status"] == "skipped":  # taken over skipped by a retry (reused)
                    progress.skipped.add(data["node"])
                    continue
                progress.finished[data["node"]] = NodeResult(
                    node=data["node"], type=execution.type if execution else "",
                    status=data["status"], attempts=data["attempts"],
                    inputs=execution.inputs if execution else None, outputs=data["outputs"],
                    error=data["error"], elapsed_ms=data["elapsed_ms"],
                    started_at=execution.started_at if execution else None,
                    finished_at=event["ts"], logs=data.get("logs"))
            elif kind == ev.NODE_SKIPPED:
                progress.skipped.add(data["node"])
            elif scope is not None:
                continue
            elif kind == ev.NODE_CHUNK:
                chunks.setdefault(data["node"], []).append(data["text"])
            elif kind == ev.RUN_WAITING:
                execution = unfinished.get(data["node"])
                checkpoint.questions[data["node"]] = OpenQuestion(
                    data["node"], data["question"], data["options"], data["timeout_at"],
                    execution.attempts if execution else 1,
                    execution.inputs if execution else None)
            elif kind == ev.RUN_RESUMED and "elapsed_ms" in data:
                snapshot_ms, snapshot_ts = data["elapsed_ms"], event["ts"]
        # An iteration that ended needs its items no more.
        checkpoint.bodies = {key: body for key, body in checkpoint.bodies.items()
                             if key[0] not in checkpoint.finished}
        ended = [node for node, result in checkpoint.finished.items() if result.type == "end"]
        if ended and ended[0] in chunks:
            checkpoint.answer = "".join(chunks[ended[0]])
        if snapshot_ts and last_ts:
            checkpoint.elapsed_ms = snapshot_ms + _ms_between(snapshot_ts, last_ts)
        return checkpoint

    def reusable(self) -> Checkpoint:
        """What a retry of this (failed or cancelled) run takes over: every top-level node
        result that ended succeeded, recovered or skipped. Everything else — the failed node,
        what was cancelled or never ran, unfinished iterations — executes again."""
        return Checkpoint(
            finished={node: result for node, result in self.finished.items()
                      if result.status in ("succeeded", "recovered")},
            skipped=set(self.skipped))

    def closing_events(self, run_id: str, status: str, message: str, ts: str,
                       code: str = "cancelled") -> list[Event]:
        """The events that end a run no engine will continue (a child run its parent gave
        up, a run that kills its workers), as the engine would end it: every node execution
        it started and never ended ends `cancelled`, then `run.finished` with `status`, an
        error of `code`, and the executing time and recovered count of its stored events."""
        closing, seq = [], self.next_seq
        for node, execution in self.unfinished.items():
            error = {**run_error("cancelled", message), "node": node,
                     "attempt": execution.attempts}
            elapsed = _ms_between(execution.started_at, ts) if execution.started_at else 0.0
            data: ev.NodeFinished = {
                "node": node, "status": "cancelled", "outputs": None, "error": error,
                "elapsed_ms": round(elapsed, 3), "attempts": execution.attempts}
            closing.append(ev.envelope(seq, ev.NODE_FINISHED, ts, run_id, data))
            seq += 1
        recovered = sum(result.status == "recovered" for result in self.finished.values())
        finished: ev.RunFinished = {
            "status": status, "outputs": None, "answer": None,
            "error": run_error(code, message), "elapsed_ms": round(self.elapsed_ms, 3),
            "recovered": recovered}
        closing.append(ev.envelope(seq, ev.RUN_FINISHED, ts, run_id, finished))
        return closing


def _ms_between(first: str, last: str) -> float:
    start = datetime.fromisoformat(first.replace("Z", "+00:00"))
    end = datetime.fromisoformat(last.replace("Z", "+00:00"))
    return max(0.0, (end - start).total_seconds() * 1000)
