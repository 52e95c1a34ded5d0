"""State shared by every graph of one run: event numbering, step budget, concurrency slots."""

from __future__ import annotations

import asyncio
import time
from random import Random
from typing import Any

from engine.clock import SYSTEM_CLOCK, Clock
from engine.events import envelope
from engine.nodes.base import Registry
from engine.ports import EventSink, Services, StepBudget
from engine.values import canonical_json

MAX_EVENT_VALUE = 64 * 1024


class UtcClock:
    """ISO 8601 timestamps with milliseconds, each distinct one formatted once.

    Events are stamped several times per node and a burst of pure nodes fits in one
    millisecond; formatting a datetime each time would cost more than the nodes themselves.
    """

    __slots__ = ("_millisecond", "_prefix", "_second", "_text", "_time")

    def __init__(self, clock: Clock = SYSTEM_CLOCK) -> None:
        self._time = clock.time
        self._millisecond = self._second = -1
        self._prefix = self._text = ""

    def now(self) -> str:
        millisecond = int(self._time() * 1000)
        if millisecond != self._millisecond:
            self._millisecond = millisecond
            second, fraction = divmod(millisecond, 1000)
            if second != self._second:
                self._second = second
                self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._text = f"{self._prefix}.{fraction:03d}Z"
        return self._text


class RunContext:
    """One run's shared state. Only the engine's dispatchers and attempt loops change it."""

    def __init__(self, run_id: str, sink: EventSink, registry: Registry, services: Services,
                 concurrency: int, max_steps: int, rng: Random, next_seq: int = 1,
                 steps: int = 0, elapsed_ms: float = 0.0, depth: int = 0,
                 lineage: tuple[str, ...] = (), parent: StepBudget | None = None):
        self.run_id = run_id
        self.sink = sink
        self.registry = registry
        self.services = services
        self.slots = asyncio.Semaphore(concurrency)
        self.max_steps = max_steps
        self.steps = steps
        self.rng = rng
        self.next_seq = next_seq
        self.clock = UtcClock(services.clock)
        # Read where durations are measured; a bound method, as it is called on every node.
        self.monotonic = services.clock.monotonic
        self.wall_time = services.clock.time
        self.last_ts = ""
        self.elapsed_before_ms = elapsed_ms  # executing time of earlier segments (resumes)
        self.segment_started = self.monotonic()
        self.depth = depth  # 0 for a top-level run, n for a child n subflows down
        self.lineage = lineage  # flow slugs from the top-level run down to this one
        self.redact = services.redactor.value if services.redactor else None
        # A child run's steps count against its parent's max_steps too (and so on up).
        self.parent = parent
        self._spent_by_parent = False
        # What the run's nodes recorded (their outputs, as compact JSON), against
        # RUN_STORED_MAX_MB: counted as nodes end, and as a resume replays them.
        self.stored_bytes = 0
        self.stored_max_bytes = services.stored_max_bytes

    def emit(self, kind: str, data: dict[str, Any], scope: str | None = None,
             item: int | None = None) -> None:
        seq = self.next_seq
        self.next_seq = seq + 1
        self.last_ts = ts = self.clock.now()
        if self.redact is not None:
            data = self.redact(data)
        self.sink.emit(envelope(seq, kind, ts, self.run_id, data, scope, item))

    def record(self, size: int) -> str | None:
        """Count `size` bytes more of recorded values, or say why they would be too much
        (and count nothing: the node that would have recorded them fails instead)."""
        if self.stored_bytes + size > self.stored_max_bytes:
            return (f"the run's recorded values would exceed RUN_STORED_MAX_MB "
                    f"({self.stored_max_bytes:,} bytes)")
        self.stored_bytes += size
        return None

    def elapsed_ms(self) -> float:
        """Executing time of the run so far (time spent paused is not counted)."""
        return round(self.elapsed_before_ms + (self.monotonic() - self.segment_started) * 1000, 3)

    def max_steps_error(self) -> dict[str, Any]:
        message = ("the parent run used its steps (a subflow's count against them)"
                   if self._spent_by_parent else f"the run used its {self.max_steps} steps")
        return {"code": "max_steps", "message": message, "node": None, "attempt": None}

    def take_step(self) -> bool:
        """Count one attempt against `max_steps`, and the parent's; False when a budget is
        spent."""
        if self.steps >= self.max_steps:
            return False
        if self.parent is not None and not self.parent.take_step():
            self._spent_by_parent = True
            return False
        self.steps += 1
        return True


def capped(inputs: dict[str, Any], redact: Any = None) -> dict[str, Any]:
    """Inputs for an event: each value over 64 KiB as JSON is replaced by a cut-off text.
    `redact` (the context's) applies first, so a cut never leaves half a secret behind."""
    if not inputs:
        return {}
    if redact is not None:
        inputs = redact(inputs)
    out = {}
    for name, value in inputs.items():
        if isinstance(value, str):
            small = len(value) <= MAX_EVENT_VALUE // 4 or len(value.encode()) <= MAX_EVENT_VALUE
        else:
            small = value is None or isinstance(value, (bool, int, float)) or \
                len(text := canonical_json(value).encode()) <= MAX_EVENT_VALUE
        if small:
            out[name] = value
        else:
            raw = value.encode() if isinstance(value, str) else text
            out[name] = raw[:MAX_EVENT_VALUE].decode(errors="ignore") + "…[truncated]"
    return out
