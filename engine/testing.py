"""Helpers for tests and benchmarks: an in-memory sink and a one-call runner."""

from __future__ import annotations

from typing import Any

from engine.compile import compile_plan
from engine.results import RunResult
from engine.run import Run


class CollectingSink:
    """Keeps every event in memory, in order."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    async def drain(self) -> None:
        pass


async def run_document(document: dict[str, Any], inputs: dict[str, Any] | None = None,
                       **run_kwargs: Any) -> tuple[RunResult, list[dict[str, Any]]]:
    """Compile and run a document; return the result and the events it emitted."""
    sink = CollectingSink()
    run = Run(compile_plan(document), inputs or {}, sink=sink, **run_kwargs)
    result = await run.execute()
    return result, sink.events
