"""The `wait` node (docs/dsl.md §5.12): sleeps, cancellable like every node."""

from __future__ import annotations

import asyncio
from typing import Any

from engine.dsl.spec import NumberOrReference, Obj
from engine.errors import NodeError
from engine.nodes.base import NodeCall, NodeStrategy
from engine.values import is_number

MAX_SECONDS = 86400


class WaitNode(NodeStrategy):
    type_name = "wait"
    summary = "Waits a number of seconds."
    params_spec = Obj(fields={"seconds": NumberOrReference(0, MAX_SECONDS)}, required=("seconds",))

    async def execute(self, call: NodeCall) -> dict[str, Any]:
        seconds = call.resolve(call.params["seconds"])
        if not is_number(seconds) or not 0 <= seconds <= MAX_SECONDS:
            raise NodeError("invalid_param",
                            f"seconds must be a number from 0 to {MAX_SECONDS}, not {seconds!r}")
        await asyncio.sleep(seconds)
        return {}
