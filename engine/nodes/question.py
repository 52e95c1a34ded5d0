"""The `question` node (docs/dsl.md §5.10): its branch pauses until a person answers."""

from __future__ import annotations

from typing import Any

from engine.attempts import AwaitAnswer
from engine.nodes.base import NodeCall
from engine.nodes.specs_io import QuestionSpec


class QuestionNode(QuestionSpec):
    async def execute(self, call: NodeCall) -> dict[str, Any]:
        params = call.params
        options = [{"id": option["id"], "label": option.get("label", option["id"])}
                   for option in params.get("options") or []]
        # The scheduler records the question, emits run.waiting and completes the node when
        # the answer (or the deadline) arrives: nothing waits inside this task.
        raise AwaitAnswer(call.resolve(params["question"]), options, params.get("timeout_s"))
