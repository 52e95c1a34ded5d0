"""How many runs one worker process executes at once (RUN_WORKER_CONCURRENCY).

A permit is taken before a run is handed to the executor's loop and given back when the run
stops executing there (it finished, paused, or moved to another worker). The doorbell's
task waits for a permit, so the broker, not the process, holds the backlog; the sweep takes
only as many runs as there are permits free.
"""

from __future__ import annotations

import threading


class Admission:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._taken = 0
        self._room = threading.Condition()

    def acquire(self, timeout: float | None = None) -> bool:
        """Take a permit, waiting up to `timeout` seconds for one; False if none came."""
        with self._room:
            if not self._room.wait_for(lambda: self._taken < self.limit, timeout):
                return False
            self._taken += 1
            return True

    def try_acquire(self) -> bool:
        return self.acquire(timeout=0)

    def take(self) -> None:
        """Take a permit whether or not one is free: for a run already claimed (the sweep
        claims at most as many as were free; a doorbell may have taken one meanwhile)."""
        with self._room:
            self._taken += 1

    def release(self) -> None:
        with self._room:
            self._taken = max(0, self._taken - 1)
            self._room.notify()

    @property
    def free(self) -> int:
        return max(0, self.limit - self._taken)

    @property
    def taken(self) -> int:
        return self._taken
