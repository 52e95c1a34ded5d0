"""The `subflow` node (docs/dsl.md §5.11): another flow of the same owner runs as a child run."""

from __future__ import annotations

from typing import Any

from engine.errors import NodeError
from engine.nodes.base import NodeCall
from engine.nodes.specs_io import SubflowSpec
from engine.ports import ChildRunRequest

MAX_DEPTH = 5


class SubflowNode(SubflowSpec):
    async def execute(self, call: NodeCall) -> dict[str, Any]:
        context = call.execution.context
        slug = call.params["flow"]
        if context.depth >= MAX_DEPTH:
            raise NodeError("depth_exceeded",
                            f"a run at depth {context.depth} cannot start a child run "
                            f"(at most {MAX_DEPTH} levels of subflows)")
        if slug in context.lineage:
            chain = " → ".join((*context.lineage, slug))
            raise NodeError("self_reference", f"the flow reaches itself: {chain}")
        runner = call.services.flows
        if runner is None:
            raise NodeError("not_published", f'no flow "{slug}" can be run here')
        outputs = await runner.run_child(ChildRunRequest(
            parent_run_id=call.run_id, node=call.node.id, item=call.item, flow=slug,
            version=call.params.get("version", "published"), inputs=dict(call.inputs),
            depth=context.depth + 1, lineage=context.lineage, steps=context))
        return {"outputs": outputs}
