"""A Celery worker's side of the scaled-out mode (`RUN_EXECUTOR=celery`, docs/scaling.md).

A worker process keeps one executor: one event loop with up to RUN_WORKER_CONCURRENCY runs.
The doorbell's task (flows/tasks.py) waits for room on that loop, hands the run over and
returns, so its message is acknowledged once the run is the worker's (its claim is the
lease, which drops a doubled message) and the broker holds the backlog. The executor's
heartbeat and sweep run here too: runs whose doorbell was lost, whose worker died or stopped,
and waiting runs with an answer, a cancel or a passed deadline are found by any worker.

SIGTERM (Celery's warm shutdown): no new message is taken; the runs executing here get
RUN_DRAIN_S to finish; those still executing are interrupted, their leases freed at once and
their doorbells rung, so another worker continues them now rather than after a lease.
"""

from __future__ import annotations

import logging

from celery.exceptions import Reject
from django.conf import settings

from flows.execution.admission import Admission
from flows.execution.doorbell import publish
from flows.execution.executor import executor

logger = logging.getLogger(__name__)

ROOM_CHECK_S = 1.0  # how often a task waiting for room looks whether the worker stops


def start() -> None:
    """Execute runs in this process (Celery's worker_ready)."""
    if executor.admission is None:
        executor.admission = Admission(settings.RUN_WORKER_CONCURRENCY)
    # What this process rings (a held run whose slot freed here) goes through the broker
    # like any doorbell (flows/apps.py set that up), so it waits for room like the others.
    executor.start()
    executor.prestart_sandbox()
    logger.info("worker %s executes up to %d runs at once", executor.worker,
                executor.admission.limit)


def admit(run_id: str, reason: str) -> None:
    """Wait until this worker has room, then hand it the run (the doorbell's task)."""
    if executor.admission is None:
        start()
    admission = executor.admission
    assert admission is not None
    while not admission.acquire(ROOM_CHECK_S):
        if executor.draining:
            raise Reject("the worker is stopping", requeue=True)
    if executor.draining:
        admission.release()
        raise Reject("the worker is stopping", requeue=True)
    executor.submit(run_id, reason).add_done_callback(lambda _: admission.release())


def drain() -> None:
    """Stop executing here (Celery's worker_shutdown): finish, or hand over and ring."""
    handed = executor.drain(settings.RUN_DRAIN_S)
    if handed:
        logger.warning("stopping: %d run(s) still executing were handed over", len(handed))
    for run_id in handed:
        publish(run_id, "handed_over")
