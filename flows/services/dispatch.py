"""The doorbell: how services tell whoever executes runs that a run needs looking at.

Services write a run's state and, once it is committed, ring; they never import the
executor. The process's executor (flows/execution/executor.py) registers itself here when
the app is ready (flows/apps.py), so the dependency points one way: execution → services.
"""

from __future__ import annotations

from typing import Any, Protocol


class Dispatcher(Protocol):
    # The name runs are leased to when this process executes them; None when it does not
    # (RUN_EXECUTOR=celery: it rings the broker, flows/execution/doorbell.py).
    worker: str | None

    def submit(self, run_id: Any, reason: str = "start") -> Any:
        """Look at the run: execute it, or pass it new answers or a cancel. `reason` says
        why (start, answer, cancel, wake, handed_over), for logs and metrics."""

    def adopt(self, run: Any) -> None:
        """Execute a new run whose row was inserted already leased to `worker` (no claim)."""

    def wait(self, run_id: Any, timeout: float) -> None:
        """Block until the run finishes or waits for a person, or `timeout` passes."""

    async def until_settled(self, run_id: Any, timeout: float) -> str | None:
        """Wait until a run started in this process settles ("settled") or moves to another
        process ("moved"); None after `timeout`. Holds no thread and no connection."""


_dispatcher: Dispatcher | None = None


def use(dispatcher: Dispatcher) -> None:
    global _dispatcher
    _dispatcher = dispatcher


def ring(run_id: Any, reason: str = "start") -> None:
    if _dispatcher is None:
        raise RuntimeError("no executor is registered (flows.apps registers it when ready)")
    _dispatcher.submit(run_id, reason)


def executing_worker() -> str | None:
    """The worker that executes the runs started in this process, to lease them to as they
    are inserted (so that no claim follows); None when no executor is registered."""
    return _dispatcher.worker if _dispatcher is not None else None


def hand_over(run: Any) -> None:
    """Have this process's executor execute a run inserted leased to it."""
    if _dispatcher is None:
        raise RuntimeError("no executor is registered (flows.apps registers it when ready)")
    _dispatcher.adopt(run)


def wait(run_id: Any, timeout: float) -> None:
    if _dispatcher is None:
        raise RuntimeError("no executor is registered (flows.apps registers it when ready)")
    _dispatcher.wait(run_id, timeout)


async def until_settled(run_id: Any, timeout: float) -> str | None:
    if _dispatcher is None:
        raise RuntimeError("no executor is registered (flows.apps registers it when ready)")
    return await _dispatcher.until_settled(run_id, timeout)
