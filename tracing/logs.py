"""Warnings that repeat (one per failed publish while Redis is down: about 9,900 lines in 22 s)
are written at most once per interval and kind, with the count of those left out."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

INTERVAL_S = 10.0

_lock = threading.Lock()
_last: dict[str, tuple[float, int]] = {}  # kind → (when last written, how many left out)


def warn_now_and_then(logger: logging.Logger, kind: str, message: str, *args: Any,
                      exc_info: Any = None, clock: Any = time.monotonic) -> bool:
    """Log `message` unless a warning of `kind` was logged less than INTERVAL_S ago; True
    when it was written. The first one after a quiet interval says how many were skipped."""
    now = clock()
    with _lock:
        last, skipped = _last.get(kind, (None, 0))
        if last is not None and now - last < INTERVAL_S:
            _last[kind] = (last, skipped + 1)
            return False
        _last[kind] = (now, 0)
    if skipped:
        message += f" ({skipped} more like it in the last {INTERVAL_S:.0f} s not logged)"
    logger.warning(message, *args, exc_info=exc_info)
    return True
