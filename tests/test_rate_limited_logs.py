"""Repeated warnings are written once per interval and kind, with a count of those left out
(tracing/logs.py); the test advances a clock instead of waiting."""

from __future__ import annotations

import logging

from tracing import logs


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_is_one_line_then_a_count(caplog, monkeypatch):
    monkeypatch.setattr(logs, "_last", {})
    clock, logger = Clock(), logging.getLogger("astron.test")
    with caplog.at_level(logging.WARNING, logger="astron.test"):
        written = [logs.warn_now_and_then(logger, "publish", "publishing failed", clock=clock)
                   for _ in range(9_900)]
        clock.now += logs.INTERVAL_S
        logs.warn_now_and_then(logger, "publish", "publishing failed", clock=clock)
        logs.warn_now_and_then(logger, "store", "storing failed", clock=clock)  # its own kind

    assert written.count(True) == 1
    assert [record.getMessage() for record in caplog.records] == [
        "publishing failed",
        f"publishing failed (9899 more like it in the last {logs.INTERVAL_S:.0f} s not logged)",
        "storing failed",
    ]
