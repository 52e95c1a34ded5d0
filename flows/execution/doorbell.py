"""The serving processes' side of the scaled-out mode (`RUN_EXECUTOR=celery`).

A run that needs looking at (started, answered, cancelled, handed over) is rung through the
broker, once the change is committed (services ring from `transaction.on_commit`); these
processes never execute runs. A publish the broker refuses loses nothing: the run's row says
it needs a worker, and the workers' sweep starts it within a few seconds
(lifecycle.runs_needing_a_worker).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import current_app

from flows.execution.settling import MOVED
from flows.services import lifecycle
from tracing import metrics
from tracing.logs import warn_now_and_then

logger = logging.getLogger(__name__)

WAIT_POLL_S = 0.1
LOOK_AT_RUN = "astron.look_at_run"  # the task's name (flows/tasks.py)


def publish(run_id: Any, reason: str) -> bool:
    """Ring a run's doorbell: a message `(run id, reason)` for whichever worker takes it."""
    try:
        current_app.send_task(LOOK_AT_RUN, (str(run_id), reason), retry=True)
    except Exception as error:  # the broker is away: the sweep finds the run
        metrics.doorbell_failed()
        warn_now_and_then(logger, "doorbell", "ringing run %s through the broker failed (%r); "
                          "the workers' sweep will find it", run_id, error)
        return False
    return True


def check_broker(timeout: float = 2.0) -> None:
    """Raise unless the broker accepts a connection within `timeout` seconds (/readyz)."""
    with current_app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=timeout)


class Doorbell:
    """The dispatcher of a process that does not execute runs (flows/services/dispatch.py)."""

    worker = None  # runs started here are inserted `queued`, for a worker to claim

    def submit(self, run_id: Any, reason: str = "start") -> None:
        publish(run_id, reason)

    def adopt(self, run: Any) -> None:
        raise RuntimeError("a process that rings doorbells executes no run")

    def wait(self, run_id: Any, timeout: float) -> None:
        """Block until the run settles or `timeout` passes (sync callers: commands)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not lifecycle.is_settled(run_id):
            time.sleep(WAIT_POLL_S)

    async def until_settled(self, run_id: Any, timeout: float) -> str | None:
        return MOVED  # a worker executes it: its channel group tells when it settles


doorbell = Doorbell()
