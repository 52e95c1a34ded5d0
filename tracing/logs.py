"""Logs: secrets of executing runs never reach them, and warnings that repeat are thinned.

- While a run executes here, its secrets (its redactor: engine/redaction.py) are replaced in
  every log record this process makes — a library logging a request's URL, an exception's
  message, a traceback — before any handler sees it (`hidden_in_logs`, `install_redaction`).
- Warnings that repeat (one per failed publish while Redis is down: about 9,900 lines in
  22 s) are written at most once per interval and kind, with the count of those left out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from engine.redaction import NO_SECRETS, Redactor

_hidden_lock = threading.Lock()
_hidden: dict[str, Redactor] = {}  # run id → the redactor of that run's secrets
_combined: Redactor = NO_SECRETS  # all of them: what every record is cleaned with
_installed = False


@contextmanager
def hidden_in_logs(key: str, redactor: Redactor) -> Iterator[None]:
    """Replace `redactor`'s secrets in every log record made meanwhile, in any thread."""
    if not redactor:
        yield
        return
    install_redaction()
    _change(key, redactor)
    try:
        yield
    finally:
        _change(key, None)


def hidden_now() -> Redactor:
    """The redactor of every secret hidden in logs at the moment (spans use it too)."""
    return _combined


def _change(key: str, redactor: Redactor | None) -> None:
    global _combined
    with _hidden_lock:
        if redactor is None:
            _hidden.pop(key, None)
        else:
            _hidden[key] = redactor
        _combined = Redactor.joined(_hidden.values())


def install_redaction() -> None:
    """Clean every log record as it is made (once per process): a record factory sees each
    record whatever logger, handler or library makes it."""
    global _installed
    with _hidden_lock:
        if _installed:
            return
        make = logging.getLogRecordFactory()

        def cleaned_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = make(*args, **kwargs)
            redactor = _combined
            if redactor:
                redact_record(record, redactor)
            return record

        logging.setLogRecordFactory(cleaned_record)
        _installed = True


def redact_record(record: logging.LogRecord, redactor: Redactor) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a broken format: logging reports it, with nothing of ours in it
        return
    clean = redactor.text(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and not record.exc_text:
        # Formatted now, cleaned, and kept: handlers use exc_text instead of formatting again.
        record.exc_text = redactor.text(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redactor.text(record.stack_info)

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
