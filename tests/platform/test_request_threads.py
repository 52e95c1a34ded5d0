"""Requests served through astron/handler.py run on threads kept from earlier requests: no
thread is started per request (starting one blocked the server's event loop), yet requests
at the same time each have a thread of their own."""

from __future__ import annotations

import asyncio
import threading

import pytest

from astron.handler import ReusedThreadsASGIHandler


def scope(path: str) -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": b"", "root_path": "", "headers": [(b"host", b"testserver")],
            "client": ("127.0.0.1", 5000), "server": ("testserver", 80)}


async def get(handler: ReusedThreadsASGIHandler, path: str = "/healthz") -> int:
    sent: list[dict] = []
    bodies = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict:
        if bodies:
            return bodies.pop()
        await asyncio.Event().wait()  # the client stays: Django stops listening when done
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        sent.append(message)

    await handler(scope(path), receive, send)
    return next(m["status"] for m in sent if m["type"] == "http.response.start")


def request_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("astron-request-")}


def all_back(handler: ReusedThreadsASGIHandler, count: int) -> None:
    """Wait (a bounded while) until `count` threads are free again: each is given back from
    its own thread once its request's work is done."""
    for _ in range(500):
        if handler.idle_threads == count:
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"{handler.idle_threads} threads free, not {count}")


@pytest.mark.django_db
def test_sequential_requests_reuse_one_thread():
    handler = ReusedThreadsASGIHandler()

    async def one_after_another() -> list[int]:
        statuses = []
        for _ in range(20):
            statuses.append(await get(handler))
            await asyncio.to_thread(all_back, handler, 1)
        return statuses

    assert asyncio.run(one_after_another()) == [200] * 20
    assert handler.threads_made == 1


@pytest.mark.django_db
def test_requests_at_the_same_time_each_have_their_own_thread_kept_for_the_next():
    handler = ReusedThreadsASGIHandler()

    async def together() -> list[int]:
        return await asyncio.gather(*(get(handler) for _ in range(5)))

    assert asyncio.run(together()) == [200] * 5
    assert handler.threads_made == 5  # none waited for another's thread
    all_back(handler, 5)
    assert asyncio.run(together()) == [200] * 5
    all_back(handler, 5)
    assert handler.threads_made == 5  # the same five again
    assert len(request_threads()) >= 5
