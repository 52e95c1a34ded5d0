"""Each process beats; a process that stops beating (killed, paused) has its runs taken over
within seconds rather than a lease, and a process that cannot beat stops its runs itself
before anyone may take them (flows/execution/heartbeat.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import OperationalError
from django.utils import timezone

from flows import services
from flows.execution.executor import executor
from flows.models import Run, RunEvent, Worker
from flows.services import lifecycle
from tests.processes import environment_for_another_process

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db(transaction=True)

WORKER = """
import os, sys, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "astron.settings")
import django
django.setup()
from flows.execution.executor import executor
executor.maintenance = False
executor.submit(sys.argv[1])
time.sleep(120)
"""


def napping_flow(seconds):
    return {"dsl": "astron/v1", "name": "Nap",
            "nodes": [{"id": "start", "type": "start"},
                      {"id": "nap", "type": "wait", "params": {"seconds": seconds}},
                      {"id": "end", "type": "end", "inputs": {"done": "yes"}}],
            "edges": [{"from": "start", "to": "nap"}, {"from": "nap", "to": "end"}]}


def wait_for(predicate, seconds):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def queued_run(owner, seconds):
    flow = services.create_flow(owner, napping_flow(seconds))
    return Run.objects.create(owner=owner, flow=flow, document=services.documents.store_document(
        flow.draft), inputs={})


@pytest.fixture
def quick_beats(monkeypatch):
    monkeypatch.setattr(lifecycle, "WORKER_HEARTBEAT_S", 0.1)
    monkeypatch.setattr(lifecycle, "WORKER_STALE_S", 0.8)


def test_each_executing_process_beats():
    executor.start()
    wait_for(lambda: Worker.objects.filter(name=executor.worker).exists(), 5)
    row = Worker.objects.get(name=executor.worker)
    assert timezone.now() - row.heartbeat_at < timedelta(seconds=5)


def test_the_runs_of_a_killed_process_are_taken_over_within_seconds_not_a_lease(settings):
    """Default settings: a 30 s lease. The killed worker's run continues here once its
    heartbeat is 6 s old, at the next beat of this process."""
    assert lifecycle.lease_seconds() == 30
    owner = User.objects.create_user("ada")
    run = queued_run(owner, 1.5)
    executor.start()
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(run.pk)], cwd=ROOT,
                              env=environment_for_another_process(),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: RunEvent.objects.filter(run=run, type="node.started",
                                                 data__node="nap").exists(), 30)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    killed = time.monotonic()

    wait_for(lambda: Run.objects.get(pk=run.pk).status == "succeeded", 20)

    taken_over_s = time.monotonic() - killed
    run.refresh_from_db()
    assert run.resumed_after_crash == 1 and run.lease_owner == ""
    assert taken_over_s < 12  # the lease alone would take 30 s
    print(f"taken over and finished {taken_over_s:.1f} s after the kill")


def test_a_gone_workers_rows_are_forgotten_once_its_runs_are_taken(quick_beats):
    owner = User.objects.create_user("lin")
    run = queued_run(owner, 0)
    long_ago = timezone.now() - timedelta(minutes=1)
    Worker.objects.create(name="ghost", heartbeat_at=long_ago)
    Run.objects.filter(pk=run.pk).update(status="running", lease_owner="ghost", lease_token=1,
                                         lease_expires_at=timezone.now() + timedelta(minutes=5))
    executor.start()

    wait_for(lambda: Run.objects.get(pk=run.pk).status == "succeeded", 10)
    wait_for(lambda: not Worker.objects.filter(name="ghost").exists(), 5)


def test_a_live_workers_runs_are_left_alone(quick_beats):
    owner = User.objects.create_user("kim")
    run = queued_run(owner, 0)
    Run.objects.filter(pk=run.pk).update(status="running", lease_owner="busy", lease_token=1,
                                         lease_expires_at=timezone.now() + timedelta(minutes=5))
    Worker.objects.create(name="busy", heartbeat_at=timezone.now() + timedelta(minutes=5))
    executor.start()
    time.sleep(1)  # several beats of this process

    assert executor.recover_now(5) == 0
    assert Run.objects.get(pk=run.pk).lease_owner == "busy"


def test_a_process_that_cannot_beat_stops_its_runs_then_takes_them_up_again(
        quick_beats, monkeypatch):
    owner = User.objects.create_user("mo")
    run = queued_run(owner, 3.0)
    executor.start()
    executor.submit(run.pk)
    wait_for(lambda: RunEvent.objects.filter(run=run, type="node.started",
                                             data__node="nap").exists(), 10)

    real_beat = lifecycle.beat

    def unreachable(*args):
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(lifecycle, "beat", unreachable)
    wait_for(lambda: str(run.pk) not in executor._live, 2)  # fenced: stopped mid-nap
    row = Run.objects.get(pk=run.pk)
    assert row.status == "running" and row.lease_owner == executor.worker  # nobody else's

    monkeypatch.setattr(lifecycle, "beat", real_beat)
    wait_for(lambda: Run.objects.get(pk=run.pk).status == "succeeded", 10)
    naps = RunEvent.objects.filter(run=run, data__node="nap").values_list("type", flat=True)
    assert list(naps) == ["node.started", "node.started", "node.finished"]  # taken up again
