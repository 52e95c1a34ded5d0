"""Helpers for tests and benchmarks: an in-memory sink, a one-call runner, virtual time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from engine.clock import SYSTEM_CLOCK
from engine.compile import compile_plan
from engine.ports import Services
from engine.results import RunResult
from engine.run import Run

T = TypeVar("T")


class CollectingSink:
    """Keeps every event in memory, in order."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    async def durable(self) -> None:
        pass

    async def drain(self) -> None:
        pass


async def run_document(document: dict[str, Any], inputs: dict[str, Any] | None = None,
                       **run_kwargs: Any) -> tuple[RunResult, list[dict[str, Any]]]:
    """Compile and run a document; return the result and the events it emitted. On a
    VirtualTimeLoop the run reads that loop's clock."""
    sink = CollectingSink()
    run_kwargs["services"] = with_loop_clock(run_kwargs.get("services"))
    run = Run(compile_plan(document), inputs or {}, sink=sink, **run_kwargs)
    result = await run.execute()
    return result, sink.events


# -- virtual time ------------------------------------------------------------------------------

VIRTUAL_EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: where a virtual wall clock starts


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock jumps ahead whenever nothing is ready to run.

    `time()` is virtual. When the loop would wait for its next timer, it first polls for I/O
    without waiting; if none is ready it moves its clock to that timer at once (trio's
    "autojump" idea). Sleeps, `asyncio.timeout` and `call_later` therefore take no real time,
    and what a run does in virtual time is exact: a 0.5 s wait is 500.0 ms. Meant for code
    that waits only on timers and on itself; real sockets or processes would see their
    timeouts jump too.
    """

    def __init__(self) -> None:
        super().__init__()
        self._virtual_now = 0.0
        real_select = self._selector.select

        def select(timeout: float | None = None) -> list[Any]:
            ready = real_select(0)
            if not ready and timeout is not None and timeout > 0:
                self._virtual_now += timeout
            return ready

        self._selector.select = select  # type: ignore[method-assign]

    def time(self) -> float:
        return self._virtual_now


class VirtualClock:
    """The engine's Clock (engine/clock.py) for a run on a VirtualTimeLoop."""

    def __init__(self, loop: VirtualTimeLoop, epoch: float = VIRTUAL_EPOCH):
        self.loop = loop
        self.epoch = epoch

    def monotonic(self) -> float:
        return self.loop.time()

    def time(self) -> float:
        return self.epoch + self.loop.time()


def with_loop_clock(services: Services | None) -> Services:
    """`services` (or none) reading the running loop's virtual clock when there is one."""
    services = services or Services()
    loop = asyncio.get_running_loop()
    if isinstance(loop, VirtualTimeLoop) and services.clock is SYSTEM_CLOCK:
        return replace(services, clock=VirtualClock(loop))
    return services


def run_in_virtual_time(main: Callable[[VirtualClock], Awaitable[T]]) -> T:
    """Run `main(clock)` to the end on a fresh VirtualTimeLoop; pass `clock` to the engine
    (`Services(clock=clock)`) so its timestamps and durations follow the same time."""
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(main(VirtualClock(loop)))
    finally:
        loop.close()
