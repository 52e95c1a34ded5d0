"""Run starts that wait for their run (docs/api.md, "Waiting for a run"), holding nothing.

The start itself is an ordinary DRF view on a thread: authentication, throttling,
validation, the insert. When the body asks to `wait`, the view only notes what to wait for
and gives its database connection back to the pool; the wait then happens here, on the
server's event loop (no thread, no connection): news from this process's executor, or from
the run's channel group when the run moved on to another process. The run is read back on
a thread once it settled or the time is up.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest

from flows import services
from flows.api import serializers as s
from flows.execution.database import give_back_connection
from flows.execution.settling import MOVED
from flows.fanout import until_settled_elsewhere


@dataclass(slots=True)
class RunWait:
    run_id: Any
    seconds: float

    def answer(self, request: HttpRequest) -> dict[str, Any]:
        try:
            run = services.run_of(request.user, self.run_id)
            return s.RunDetailSerializer(run, context={"just_created": False}).data
        finally:
            give_back_connection()


def wait_later(request: Any, run_id: Any, seconds: float) -> None:
    """From the DRF view: wait for the run once the view has returned (its response's data
    are replaced by the run as it is then)."""
    request._request.run_wait = RunWait(run_id, seconds)


def waiting(view: Callable[..., Any]) -> Callable[..., Any]:
    """`view` (a DRF view function) as an async view that does the waits it asks for."""

    def start(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        response = view(request, *args, **kwargs)
        if getattr(request, "run_wait", None) is not None:
            give_back_connection()  # to the pool for the length of the wait
        return response

    async def waiting_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        response = await sync_to_async(start)(request, *args, **kwargs)
        wait = getattr(request, "run_wait", None)
        if wait is None:
            return response
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait.seconds
        if await services.until_settled(wait.run_id, wait.seconds) == MOVED:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    await until_settled_elsewhere(str(wait.run_id))
        response.data = await sync_to_async(wait.answer)(request)
        return response

    # What Django and drf-spectacular read from a DRF view function.
    for name in ("cls", "initkwargs", "csrf_exempt"):
        if hasattr(view, name):
            setattr(waiting_view, name, getattr(view, name))
    return waiting_view
