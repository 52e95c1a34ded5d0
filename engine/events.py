"""The events of a run (docs/dsl.md §6): their type names, envelope and data, in one place.

An event is a plain JSON-ready dict shaped like `Event`: the engine emits several per node, so
they are built as dicts (TypedDicts cost nothing at run time) and stored, published and
replayed as they are. Everything that makes an envelope calls `envelope()`; everything that
reads one compares its `type` with the constants below. The run page's script keeps the same
names in one object (flows/static/flows/js/state.js, `EVENT`), checked against these by a test.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

RUN_STARTED = "run.started"
RUN_WAITING = "run.waiting"
RUN_RESUMED = "run.resumed"
RUN_FINISHED = "run.finished"
NODE_STARTED = "node.started"
NODE_RETRYING = "node.retrying"
NODE_CHUNK = "node.chunk"
NODE_FINISHED = "node.finished"
NODE_SKIPPED = "node.skipped"

TYPES = (RUN_STARTED, RUN_WAITING, RUN_RESUMED, RUN_FINISHED, NODE_STARTED, NODE_RETRYING,
         NODE_CHUNK, NODE_FINISHED, NODE_SKIPPED)

# Seq and item numbers fit the columns that store them (a signed 32-bit integer); a client
# asking for events after a larger seq asks for none.
MAX_SEQ = 2**31 - 1


class Event(TypedDict):
    seq: int  # 1, 2, … per run, without gaps
    type: str  # one of TYPES
    ts: str  # ISO 8601 UTC with milliseconds, as emitted
    run: str
    scope: str | None  # the iteration node whose body emitted it; None at the top level
    item: int | None  # the iteration item, with `scope`
    data: dict[str, Any]  # one of the shapes below, by `type`


class RunStarted(TypedDict):
    inputs: dict[str, Any]
    flow: str
    version: Any


class RunWaiting(TypedDict):
    node: str
    question: str
    options: list[dict[str, Any]] | None  # each {"value", "label"}
    timeout_at: str | None


class RunResumed(TypedDict):
    node: str
    answer: Any
    option: str | None
    by: str | None
    elapsed_ms: float  # executing time so far: a resume's checkpoint of it


class RunFinished(TypedDict):
    status: str  # succeeded, failed or cancelled
    outputs: dict[str, Any] | None
    answer: str | None
    error: dict[str, Any] | None
    elapsed_ms: float
    recovered: int


class NodeStarted(TypedDict):
    node: str
    type: str
    attempt: int
    inputs: dict[str, Any]  # each value capped at 64 KiB


class NodeRetrying(TypedDict):
    node: str
    attempt: int
    delay_ms: float
    error: dict[str, Any]


class NodeChunk(TypedDict):
    node: str
    text: str


class NodeFinished(TypedDict):
    node: str
    status: str  # succeeded, recovered, failed or cancelled
    outputs: dict[str, Any] | None
    error: dict[str, Any] | None
    elapsed_ms: float
    attempts: int
    logs: NotRequired[str]  # what a code node printed
    reused: NotRequired[bool]  # taken over by a retry from the run it retries


class NodeSkipped(TypedDict):
    node: str


def envelope(seq: int, kind: str, ts: str, run: str, data: Any,
             scope: str | None = None, item: int | None = None) -> Event:
    """The one way to make an event."""
    return {"seq": seq, "type": kind, "ts": ts, "run": run, "scope": scope, "item": item,
            "data": data}

