"""Subflows on the platform: a child run is a stored run of its own, linked to its parent."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

from engine import InputsInvalid, NodeError, Plan, Run
from engine.ports import ChildRunRequest, EventSink, Services
from engine.subflows import child_outputs, run_cancelling_with_parent
from flows.errors import ServiceError
from flows.execution.database import db
from flows.services import lifecycle
from flows.services.secrets import values_for
from tracing.logs import hidden_in_logs


class RunHost(Protocol):
    """What a child run needs of the executor that hosts its parent."""

    worker: str

    def sink_for(self, row: Any, plan: Plan, lease: lifecycle.Lease,
                 known_nodes: set[str] | None = None) -> EventSink: ...

    def services_for(self, owner_id: Any, run_id: str,
                     secrets: dict[str, str] | None = None) -> Services: ...

    def live(self, lease: lifecycle.Lease, engine_run: Run) -> AbstractContextManager[None]: ...


class PlatformFlowRunner:
    """The FlowRunner port for one parent run: looks flows up among the parent's owner's."""

    def __init__(self, executor: RunHost, owner_id: Any, parent_run_id: str):
        self.executor = executor
        self.owner_id = owner_id
        self.parent_run_id = parent_run_id

    async def run_child(self, request: ChildRunRequest) -> dict[str, Any]:
        row, plan, secrets = await db(self._start_child, request)
        run_id = str(row.pk)
        lease = lifecycle.Lease(row.pk, self.executor.worker, row.lease_token)
        services = self.executor.services_for(self.owner_id, run_id, secrets)
        child = Run(plan, row.inputs, run_id=run_id, flow=request.flow,
                    version=row.version_number, depth=request.depth,
                    parent_steps=request.steps,
                    lineage=(*request.lineage, request.flow),
                    sink=self.executor.sink_for(row, plan, lease, known_nodes=set()),
                    services=services)
        # Live here like a top-level run: a cancel of the child itself (the API, its page)
        # reaches it, not only one of its parent.
        with hidden_in_logs(run_id, services.redactor), self.executor.live(lease, child):
            result = await run_cancelling_with_parent(child)
        if result.status == "waiting":
            await db(lifecycle.terminate, row.pk, "cancelled",
                     "the child run asked a question: a subflow cannot wait")
        else:  # a no-op when its run.finished batch gave the lease up already
            await db(lifecycle.release, lease)
        # The parent records what the child returns or fails with: the child's secrets stay
        # hidden there too.
        redactor = services.redactor
        try:
            outputs = child_outputs(result, request.flow, run_id)
        except NodeError as error:
            if not redactor:
                raise
            raise NodeError(error.code, redactor.text(error.message),
                            details=redactor.value(error.details)) from None
        return redactor.value(outputs) if redactor else outputs

    def _start_child(self, request: ChildRunRequest) -> tuple[Any, Any, dict[str, str]]:
        """The child's row, plan and secrets; what stops it from starting is the subflow
        node's error (docs/dsl.md §5.11)."""
        try:
            row, plan = lifecycle.start_child(
                self.owner_id, self.parent_run_id, request.node, request.depth, request.flow,
                request.version, request.inputs, self.executor.worker)
            return row, plan, values_for(self.owner_id, plan.secret_names)
        except ServiceError as refused:
            raise NodeError(refused.code, refused.message) from refused
        except InputsInvalid as invalid:
            raise NodeError("invalid_param", f'inputs for "{request.flow}": {invalid}',
                            details=[p.to_dict() for p in invalid.problems]) from invalid
