"""The `code` node (docs/dsl.md §5.6): params and checks in specs_io, execution here.

The user's Python never runs in the server: it goes to the sandbox port the platform
configured (`engine.sandbox.ProcessSandbox`), with the operator's limits.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from engine.errors import NodeError
from engine.nodes.base import NodeCall
from engine.nodes.specs_io import CodeSpec


class CodeNode(CodeSpec):
    async def execute(self, call: NodeCall) -> dict[str, Any]:
        sandbox = call.services.sandbox
        if sandbox is None:
            raise NodeError("code_error", "no code sandbox is configured")
        limits = call.services.code_limits
        if call.node.timeout_s is not None:
            # The node's own limit replaces the operator's default wall-clock limit.
            limits = dataclasses.replace(limits, wall_s=call.node.timeout_s)
        outcome = await sandbox.run(call.params["code"], call.inputs, limits)
        call.logs = outcome.logs
        if outcome.error is not None:
            raise outcome.error
        # Checked against the node's declared outputs by the scheduler.
        return outcome.result
