"""A FlowRunner over flows held in memory: subflows without a database.

The platform implements the same port with its own tables (child runs stored and linked to
their parent); this one serves the engine's tests, benchmarks and embedding.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

from engine.compile import compile_plan
from engine.errors import InputsInvalid, NodeError
from engine.plan import Plan
from engine.ports import ChildRunRequest, EventSink, Services
from engine.results import RunResult


class LocalFlowRunner:
    """Runs child flows from published documents: `{slug: [version 1, version 2, …]}`."""

    def __init__(self, published: dict[str, list[dict[str, Any]]],
                 services: Services | None = None,
                 sink_for: Callable[[str, ChildRunRequest], EventSink] | None = None):
        self.published = published
        self.services = services
        self.sink_for = sink_for
        self.children: list[tuple[ChildRunRequest, str, RunResult]] = []
        self._plans: dict[tuple[str, int], Plan] = {}

    async def run_child(self, request: ChildRunRequest) -> dict[str, Any]:
        from engine.run import Run

        versions = self.published.get(request.flow) or []
        number = len(versions) if request.version == "published" else int(request.version)
        if not versions or not 1 <= number <= len(versions):
            raise NodeError("not_published", f'the flow "{request.flow}" has no published '
                                             f"version {request.version}")
        plan = self._plans.get((request.flow, number))
        if plan is None:
            plan = self._plans[(request.flow, number)] = compile_plan(versions[number - 1])
        try:
            plan.apply_inputs(request.inputs)
        except InputsInvalid as invalid:
            raise NodeError("invalid_param", f'inputs for "{request.flow}": {invalid}',
                            details=[p.to_dict() for p in invalid.problems]) from invalid
        run_id = str(uuid.uuid4())
        services = self.services or Services(flows=self)
        child = Run(plan, request.inputs, run_id=run_id, flow=request.flow, version=number,
                    services=services, depth=request.depth, parent_steps=request.steps,
                    lineage=(*request.lineage, request.flow),
                    sink=self.sink_for(run_id, request) if self.sink_for else None)
        result = await run_cancelling_with_parent(child)
        self.children.append((request, run_id, result))
        return child_outputs(result, request.flow, run_id)


def child_outputs(result: RunResult, flow: str, run_id: str) -> dict[str, Any]:
    """A child run's outputs, or its failure as the subflow node's error."""
    if result.status == "waiting":
        # Nobody could answer it: the question belongs to a run its parent is waiting on.
        raise NodeError("invalid_param",
                        f'the flow "{flow}" asks a question, so it cannot run as a subflow',
                        details={"child_run": run_id})
    if result.status != "succeeded":
        error = result.error or {"code": "cancelled", "message": "the child run stopped"}
        raise NodeError(error["code"], f'the child run of "{flow}" failed: {error["message"]}',
                        details={"child_run": run_id, "error": error})
    return result.outputs or {}


async def run_cancelling_with_parent(child: Any) -> RunResult:
    """Execute a child run in its own task; cancelling the parent's node cancels the child."""
    task = asyncio.create_task(child.execute())
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        child.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise
