"""Django's ASGI handler, with each request's sync code on a thread kept from earlier requests.

Django's own handler gives every request a fresh thread for its middleware and view
(asgiref's ThreadSensitiveContext makes a one-thread executor per request) and, at the end,
starts another thread to join it. Starting a thread blocks the server's event loop until
the new thread runs, which waits on the GIL: under load (32 clients, bench/throughput.py)
the loop spent a fifth of its time there instead of reading requests. Here the one-thread
executors are kept and lent to requests in turn: a request still has one thread to itself,
for its whole length, as Django needs (its connection is that thread's).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.core.handlers.asgi import ASGIHandler

KEEP_IDLE = 64  # idle request threads kept; more are let go after their request


class ReusedThreadsASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()
        self._idle: list[ThreadPoolExecutor] = []
        self._made = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        executor = self._lend()
        try:
            async with ThreadSensitiveContext(executor=executor):
                await self.handle(scope, receive, send)
        finally:
            # Lent again only once its thread is free: a request cut short (the client went
            # away) may leave its sync code running, and the next borrower must not queue
            # behind it. The no-op runs after whatever is still queued.
            executor.submit(_nothing).add_done_callback(lambda _: self._give_back(executor))

    def _lend(self) -> ThreadPoolExecutor:
        try:
            return self._idle.pop()
        except IndexError:
            self._made += 1
            return ThreadPoolExecutor(max_workers=1,
                                      thread_name_prefix=f"astron-request-{self._made}")

    def _give_back(self, executor: ThreadPoolExecutor) -> None:
        # Called on the executor's own thread: list operations are atomic.
        if len(self._idle) < KEEP_IDLE:
            self._idle.append(executor)
        else:
            executor.shutdown(wait=False)

    @property
    def idle_threads(self) -> int:
        """Request threads free to be lent."""
        return len(self._idle)

    @property
    def threads_made(self) -> int:
        """Request threads started since this handler was made."""
        return self._made


def _nothing() -> None:
    return None
