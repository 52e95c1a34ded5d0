"""The interfaces through which the engine reaches the world; the platform implements them.

Node strategies see these through `NodeCall.services`. Each port is small and async; the
engine ships offline or local implementations (the echo provider, the process sandbox, the
guarded HTTP client) and the platform configures them from settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.clock import SYSTEM_CLOCK, Clock
from engine.redaction import NO_SECRETS, Redactor
from engine.values import DEFAULT_STORED_MAX_BYTES, DEFAULT_VALUE_MAX_BYTES


class EventSink(Protocol):
    """Receives every event of a run, in order. `emit` must not block: buffer, then store."""

    def emit(self, event: dict[str, Any]) -> None: ...

    async def durable(self) -> None:
        """Return once every event emitted so far is stored. Awaited before a node with side
        effects starts, so that a crash never repeats a node whose end was emitted. A sink
        that can store nothing more stops the run instead of returning."""
        ...

    async def drain(self) -> None:
        """Called when a run stops executing (finished, waiting or paused): store what is buffered."""
        ...


class NullSink:
    def emit(self, event: dict[str, Any]) -> None:
        pass

    async def durable(self) -> None:
        pass

    async def drain(self) -> None:
        pass


# -- code ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CodeLimits:
    cpu_s: int = 10
    memory_mb: int = 256
    output_kb: int = 1024
    wall_s: float = 30


@dataclass(slots=True)
class CodeOutcome:
    """What a sandboxed `main(**inputs)` produced: its result, or the error it ended with."""

    result: Any = None
    logs: str = ""  # what it printed, capped
    error: Any = None  # a NodeError (code_error, timeout) or None


class CodeSandbox(Protocol):
    async def run(self, code: str, inputs: dict[str, Any], limits: CodeLimits) -> CodeOutcome:
        """Run user code isolated from the server; never raises for what the code does."""
        ...


# -- http ------------------------------------------------------------------------------------


@dataclass(slots=True)
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    body: Any = None  # bytes, str, or a JSON value
    timeout_s: float = 30


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    content: bytes
    content_type: str = ""


class HttpClient(Protocol):
    async def send(self, request: HttpRequest) -> HttpResponse:
        """Send with the operator's address policy; raise NodeError (network_error,
        blocked_address, timeout, too_large) on failure."""
        ...


# -- llm -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str | None
    prompt: str
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    api_key: str | None = None  # the node's own key (a secret), over the provider's

    def __repr__(self) -> str:  # never the key
        return f"ChatRequest(model={self.model!r}, api_key={'set' if self.api_key else None})"


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


class ChatProvider(Protocol):
    def stream(self, request: ChatRequest) -> AsyncIterator[str | Usage]:
        """Yield text chunks as they arrive, then one Usage; raise NodeError(provider_error)."""
        ...


# -- subflows --------------------------------------------------------------------------------


class StepBudget(Protocol):
    """A run's step count: a child run takes each of its steps from its parent's too."""

    def take_step(self) -> bool: ...


@dataclass(slots=True)
class ChildRunRequest:
    parent_run_id: str
    node: str
    item: int | None
    flow: str  # the child's slug
    version: int | str  # "published" or a number
    inputs: dict[str, Any]
    depth: int  # the child's depth (the top-level run is 0)
    lineage: tuple[str, ...]  # slugs from the top-level flow down to the parent
    steps: StepBudget | None = None  # the parent's: the child's steps count against it


class FlowRunner(Protocol):
    async def run_child(self, request: ChildRunRequest) -> dict[str, Any]:
        """Run another flow of the same owner as a child run and return its outputs.

        Raises NodeError: not_published, self_reference, invalid_param (bad inputs), or the
        child's own error when it fails. Cancelling the awaiting task cancels the child.
        """
        ...


@dataclass
class Services:
    """The ports node strategies may use; each is optional until a node type needs it."""

    llm_providers: dict[str, ChatProvider] = field(default_factory=dict)
    sandbox: CodeSandbox | None = None
    code_limits: CodeLimits = field(default_factory=CodeLimits)
    http: HttpClient | None = None
    flows: FlowRunner | None = None
    clock: Clock = SYSTEM_CLOCK  # engine/clock.py: tests pass a virtual one
    value_max_bytes: int = DEFAULT_VALUE_MAX_BYTES  # the largest value a node may make
    stored_max_bytes: int = DEFAULT_STORED_MAX_BYTES  # the most a run's nodes may record
    redactor: Redactor = NO_SECRETS  # secrets that never reach what a run records
    # The owner's secrets the run's plan references (`{{secrets.NAME}}`), by name. The
    # redactor knows each of them: they are read, never recorded.
    secrets: Mapping[str, str] = field(default_factory=dict)
