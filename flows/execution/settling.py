"""Who in this process waits for a run to settle, and telling them when it does.

A run settles when it finishes or pauses for a person with nothing left to act on. The
executor says so (`settle`) right after it records that, and says when a run it executed
stops here without settling (`moved`: its lease was lost or fenced, so another process
continues it), so that a waiter can listen for it elsewhere (the channel layer). Callbacks
run on the executor's thread: they must only hand the news over (e.g. with
`loop.call_soon_threadsafe`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

SETTLED = "settled"
MOVED = "moved"
RECENT = 4096  # runs remembered as settled, for a waiter that comes a moment late

Callback = Callable[[str], None]


class Settlements:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watchers: dict[str, list[Callback]] = {}
        self._recent: OrderedDict[str, None] = OrderedDict()

    def watch(self, run_id: str, callback: Callback, *, recent: bool = True) -> Callable[[], None]:
        """Call `callback(SETTLED or MOVED)` once, when the run settles or moves away; at
        once if it settled a moment ago (`recent`: for a run just started, which may end
        before its starter begins to wait). Returns a function that stops watching."""
        with self._lock:
            already = recent and run_id in self._recent
            if not already:
                self._watchers.setdefault(run_id, []).append(callback)
        if already:
            callback(SETTLED)
            return lambda: None

        def unwatch() -> None:
            with self._lock:
                callbacks = self._watchers.get(run_id)
                if callbacks is not None and callback in callbacks:
                    callbacks.remove(callback)
                    if not callbacks:
                        del self._watchers[run_id]

        return unwatch

    def settle(self, run_id: str) -> None:
        with self._lock:
            callbacks = self._watchers.pop(run_id, [])
            self._recent[run_id] = None
            self._recent.move_to_end(run_id)
            while len(self._recent) > RECENT:
                self._recent.popitem(last=False)
        for callback in callbacks:
            callback(SETTLED)

    def resume(self, run_id: str) -> None:
        """The run executes again (an answer, a deadline): it is no longer settled."""
        with self._lock:
            self._recent.pop(run_id, None)

    def moved(self, run_id: str) -> None:
        with self._lock:
            callbacks = self._watchers.pop(run_id, [])
        for callback in callbacks:
            callback(MOVED)
