"""Calling the ORM from the executor's event loop, never blocking it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connection

T = TypeVar("T")


def fresh(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call `function` on this thread's connection, made fresh first."""
    # The executor's thread lives as long as the process: drop connections that broke or
    # outlived CONN_MAX_AGE, as Django does around each request.
    close_old_connections()
    return function(*args, **kwargs)


async def db(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a database function in Django's thread for sync code, from async code."""
    return await sync_to_async(fresh)(function, *args, **kwargs)


def give_back_connection() -> None:
    """Return this thread's connection to the pool now rather than at the end of the
    request, so that a request about to wait holds none. Not inside a transaction (a test
    case's): closing would end it."""
    if not connection.in_atomic_block:
        connection.close()

