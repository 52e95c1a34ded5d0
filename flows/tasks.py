"""The doorbell's task (`RUN_EXECUTOR=celery`): "look at run X", executed by a worker, and
what a worker process does as it starts and stops (flows/execution/worker.py).

Published by the serving processes once the change that needs it is committed
(flows/execution/doorbell.py); taken one at a time by each worker, acknowledged once the run
is handed to the worker's event loop.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task, signals

from flows.execution import worker
from flows.execution.doorbell import LOOK_AT_RUN


@shared_task(name=LOOK_AT_RUN, ignore_result=True)
def look_at_run(run_id: str, reason: str = "start") -> None:
    worker.admit(run_id, reason)


@signals.worker_ready.connect
def _start_executing(**_: Any) -> None:
    worker.start()


@signals.worker_shutdown.connect
def _drain(**_: Any) -> None:
    worker.drain()
