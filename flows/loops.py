"""One object per running event loop: what the coroutines of one loop share (a process has
the server's loop and the executor's; each test has its own)."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def per_loop(make: Callable[[], T]) -> Callable[[], T]:
    """A function that returns the running loop's instance, made on first use and dropped
    with the loop."""
    instances: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = \
        weakref.WeakKeyDictionary()

    def current() -> T:
        loop = asyncio.get_running_loop()
        instance = instances.get(loop)
        if instance is None:
            instance = instances[loop] = make()
        return instance

    return current
