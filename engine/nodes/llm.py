"""The `llm` node (dsl.md §5): params and checks in specs_io, execution here."""

from __future__ import annotations

from typing import Any

from engine.nodes.base import NodeCall
from engine.nodes.specs_io import LlmSpec


class LlmNode(LlmSpec):
    async def execute(self, call: NodeCall) -> dict[str, Any]:
        raise NotImplementedError("being built")
