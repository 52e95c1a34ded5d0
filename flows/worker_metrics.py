"""What the workers report, for /metrics of any serving process (docs/observability.md).

A worker process (a Celery worker above all) serves no HTTP of its own; its heartbeat stores
its live runs and counters on its `Worker` row, and this collector reads the rows when
/metrics is scraped, with the number of runs queued and not executing (held for a slot, or
not yet taken by a worker). Two small queries per scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from flows.models import Run, Worker
from flows.services import lifecycle
from tracing.logs import warn_now_and_then

logger = logging.getLogger(__name__)

REPORTED_FOR = timedelta(minutes=10)  # a worker silent longer is no longer reported


class WorkerCollector:
    def describe(self) -> list[Any]:
        return []  # nothing is read at registration: the database may not be there yet

    def collect(self) -> Iterator[Any]:
        try:
            families = list(self._read())
        except Exception as error:  # the database away: /metrics still answers the rest
            warn_now_and_then(logger, "worker-metrics", "reading the workers for /metrics "
                              "failed: %r", error)
            return
        yield from families

    def _read(self) -> Iterator[Any]:
        live = GaugeMetricFamily("astron_worker_live_runs", "Runs each worker executed at its "
                                 "last heartbeat.", labels=["worker"])
        dropped = CounterMetricFamily("astron_worker_doorbells_dropped", "Doorbells each "
                                      "worker dropped: the run was another's, or needed "
                                      "nothing (a duplicate).", labels=["worker"])
        found = CounterMetricFamily("astron_worker_sweep_found", "Runs each worker's sweep "
                                    "took up (lost doorbells, dead or stopped workers, "
                                    "answered or due waiting runs).", labels=["worker"])
        alive = GaugeMetricFamily("astron_workers_alive", "Workers whose heartbeat is recent "
                                  "enough that their runs are not taken over.")
        since = timezone.now() - REPORTED_FOR
        stale = timezone.now() - timedelta(seconds=lifecycle.WORKER_STALE_S)
        beating = 0
        for name, heartbeat_at, runs, doorbells, sweeps in Worker.objects.filter(
                heartbeat_at__gte=since).values_list("name", "heartbeat_at", "live_runs",
                                                     "doorbells_dropped", "sweep_found"):
            live.add_metric([name], runs)
            dropped.add_metric([name], doorbells)
            found.add_metric([name], sweeps)
            beating += heartbeat_at >= stale
        alive.add_metric([], beating)
        yield from (live, dropped, found, alive)
        yield GaugeMetricFamily(
            "astron_runs_queued_not_executing", "Runs queued that no worker executes yet: "
            "held over a capacity limit, or their doorbell not yet taken.",
            value=Run.objects.filter(status=Run.Status.QUEUED, lease_owner="").count())
