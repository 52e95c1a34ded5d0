"""The engine's clock: where it reads the time, so tests can make time pass without waiting.

The engine measures durations with `monotonic()` and stamps events and question deadlines
with `time()`. It sleeps and times out through asyncio (`asyncio.sleep`, `asyncio.timeout`,
`loop.call_later`), which run on the event loop's own clock; a `Clock` must therefore move
with the loop's `time()`. The system clock does (asyncio's loop time is `time.monotonic`);
engine/testing.py's virtual clock moves with a loop whose time jumps ahead whenever nothing
is ready to run, so an hour-long question timeout takes no real time in a test.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: the event loop's."""
        ...

    def time(self) -> float:
        """Seconds since the epoch (UTC), for timestamps and deadlines."""
        ...


class SystemClock:
    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)


SYSTEM_CLOCK = SystemClock()
