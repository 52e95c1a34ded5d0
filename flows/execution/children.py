"""Subflows on the platform: a child run is a stored run of its own, linked to its parent."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine import InputsInvalid, NodeError, Run
from engine.ports import ChildRunRequest
from engine.subflows import child_outputs, run_cancelling_with_parent
from flows.execution.database import db
from flows.execution.leases import release
from flows.execution.records import end_run
from flows.models import Flow, FlowVersion
from flows.models import Run as RunRow
from flows.plans import plan_for

if TYPE_CHECKING:
    from flows.execution.executor import Executor


class PlatformFlowRunner:
    """The FlowRunner port for one parent run: looks flows up among the parent's owner's."""

    def __init__(self, executor: Executor, owner_id: Any, parent_run_id: str):
        self.executor = executor
        self.owner_id = owner_id
        self.parent_run_id = parent_run_id

    async def run_child(self, request: ChildRunRequest) -> dict[str, Any]:
        row, plan = await db(self._create_child, request)
        run_id = str(row.pk)
        child = Run(plan, row.inputs, run_id=run_id, flow=request.flow,
                    version=row.version_number, depth=request.depth,
                    lineage=(*request.lineage, request.flow),
                    sink=self.executor.sink_for(row, plan),
                    services=self.executor.services_for(self.owner_id, run_id))
        # Live here like a top-level run: a cancel of the child itself (the API, its page)
        # reaches it, not only one of its parent.
        with self.executor.live(run_id, child):
            result = await run_cancelling_with_parent(child)
        if result.status == "waiting":
            await db(end_child, row.pk, "the child run asked a question: a subflow cannot wait")
        await db(release, run_id, self.executor.worker)
        return child_outputs(result, request.flow, run_id)

    def _create_child(self, request: ChildRunRequest) -> tuple[RunRow, Any]:
        flow = Flow.objects.filter(owner_id=self.owner_id, slug=request.flow,
                                   deleted_at__isnull=True).first()
        if flow is None:
            raise NodeError("not_published", f'there is no flow "{request.flow}"')
        number = flow.published_version if request.version == "published" else request.version
        version = FlowVersion.objects.filter(
            flow=flow, number=number).first() if number is not None else None
        if version is None:
            raise NodeError("not_published",
                            f'the flow "{request.flow}" has no published version'
                            + ("" if request.version == "published" else f" {request.version}"))
        plan = plan_for(version.document_id)
        try:
            inputs = plan.apply_inputs(request.inputs)
        except InputsInvalid as invalid:
            raise NodeError("invalid_param", f'inputs for "{request.flow}": {invalid}',
                            details=[p.to_dict() for p in invalid.problems]) from invalid
        row = RunRow.objects.create(
            owner_id=self.owner_id, flow=flow, version=version, version_number=version.number,
            document_id=version.document_id, inputs=inputs, status=RunRow.Status.RUNNING,
            parent_run_id=self.parent_run_id, parent_node=request.node, depth=request.depth,
            lease_owner=self.executor.worker, lease_expires_at=self.executor.lease_until())
        return row, plan


def end_child(run_id: Any, message: str) -> None:
    end_run(run_id, "cancelled", message)
