"""Take over the runs whose worker died (or that no worker picked up), once, and see them end.

Every Astron process does this on its own every few seconds; the command is for when none
is serving (after a crash, before a restart) or to see what was left behind.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

from django.core.management.base import BaseCommand

from flows.execution.executor import executor
from flows.management.settling import settled
from flows.models import Run
from flows.services import lifecycle

POLL_S = 0.1


class Command(BaseCommand):
    help = ("Execute here the runs that need a worker (expired lease, never picked up, or "
            "waiting with an answer, a cancel or a passed deadline), and wait for them to end.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                            help="wait for the runs taken over to end or to wait for an answer "
                                 "(default); with --no-wait, runs still executing when the "
                                 "command exits are left for another worker, once their lease "
                                 "expires")
        parser.add_argument("--timeout", type=float, default=60.0,
                            help="seconds to wait for the runs, all together (default 60)")

    def handle(self, *args: Any, wait: bool, timeout: float, **options: Any) -> None:
        # One explicit pass, without the executor's own maintenance loop: this list says
        # which runs it takes up.
        executor.maintenance = False
        needing = [str(run_id) for run_id in lifecycle.runs_needing_a_worker()]
        try:
            executor.recover_now()
            if not needing:
                self.stdout.write("No run needed a worker.")
                return
            self.stdout.write(f"Took over {plural(len(needing), 'run')}.")
            if wait:
                deadline = time.monotonic() + timeout
                for run_id in needing:
                    wait_for(run_id, deadline)
        finally:
            executor.stop()
        self.report(needing, waited=wait)

    def report(self, run_ids: list[str], waited: bool) -> None:
        runs = {str(run.pk): run for run in Run.objects.filter(pk__in=run_ids)
                .select_related("flow").only("id", "status", "error", "flow__slug")}
        endings: Counter[str] = Counter()
        for run_id in run_ids:
            run = runs.get(run_id)
            if run is None:
                ending = "gone"  # deleted meanwhile
            elif run.is_finished or run.status == Run.Status.WAITING:
                ending = run.status
            else:
                ending = "still executing" if waited else "not waited for"
            endings[ending] += 1
            where = f"{run.flow.slug}: " if run is not None else ""
            code = (run.error or {}).get("code") if run is not None else None
            self.stdout.write(f"    {run_id}  {where}{ending}" + (f" ({code})" if code else ""))
        self.stdout.write("Ended: " + ", ".join(f"{count} {ending}"
                                                  for ending, count in endings.most_common()))
        if endings["still executing"] or endings["not waited for"]:
            self.stdout.write("Runs still executing were interrupted when this command "
                              "stopped; a serving process continues them once their lease "
                              "expires.")


def wait_for(run_id: str, deadline: float) -> None:
    """Until the run ends or waits for an answer, or the deadline passes."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return
        executor.wait(run_id, remaining)
        if settled(run_id) is not None:
            return
        time.sleep(POLL_S)  # executor.wait returns at once for a waiting run about to resume


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
