"""The interfaces through which the engine reaches the world; the platform implements them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


class EventSink(Protocol):
    """Receives every event of a run, in order. `emit` must not block: buffer, then store."""

    def emit(self, event: dict[str, Any]) -> None: ...

    async def drain(self) -> None:
        """Called when a run stops executing (finished, waiting or paused): store what is buffered."""
        ...


class NullSink:
    def emit(self, event: dict[str, Any]) -> None:
        pass

    async def drain(self) -> None:
        pass


@dataclass
class Services:
    """The ports node strategies may use; each is optional until a node type needs it."""

    llm_providers: dict[str, Any] = field(default_factory=dict)
    sandbox: Any = None
    http: Any = None
    flows: Any = None  # a FlowResolver for subflows
    extra: dict[str, Any] = field(default_factory=dict)
