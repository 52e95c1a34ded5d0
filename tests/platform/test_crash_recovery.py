"""A worker killed mid-run (SIGKILL): another takes the run over when its lease expires and
finishes it from the stored events, running no finished node twice."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from flows import services
from flows.execution.executor import executor
from flows.models import Run, RunEvent
from tests.processes import environment_for_another_process

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db(transaction=True)

WORKER = """
import os, sys, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "astron.settings")
import django
django.setup()
from flows.execution.executor import executor
executor.submit(sys.argv[1])
time.sleep(120)
"""


def slow_flow():
    return {
        "dsl": "astron/v1", "name": "Slow middle",
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "before", "type": "template", "params": {"template": "first"}},
            {"id": "pause", "type": "wait", "params": {"seconds": 1.5}},
            {"id": "after", "type": "template", "params": {"template": "{{before.text}} then"}},
            {"id": "end", "type": "end", "inputs": {"text": "{{after.text}}"}},
        ],
        "edges": [{"from": "start", "to": "before"}, {"from": "before", "to": "pause"},
                  {"from": "pause", "to": "after"}, {"from": "after", "to": "end"}],
    }


def wait_for(predicate, seconds):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def started(run, node):
    return RunEvent.objects.filter(run=run, type="node.started", data__node=node).count()


@pytest.fixture(autouse=True)
def short_leases(settings):
    settings.RUN_LEASE_S = 1
    executor.maintenance = False  # the test takes the run over itself, once
    yield
    executor.stop()
    executor.maintenance = True


def test_a_run_killed_mid_node_is_finished_by_another_worker(tmp_path):
    owner = User.objects.create_user("ada")
    flow = services.create_flow(owner, slow_flow())
    # A queued run row, as start_run writes it, executed by a separate process.
    run = Run.objects.create(owner=owner, flow=flow, document=services.documents.store_document(
        flow.draft), inputs={})
    environment = environment_for_another_process(RUN_LEASE_S="1")
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(run.pk)], cwd=ROOT,
                              env=environment, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        wait_for(lambda: started(run, "pause") == 1, 30)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    run.refresh_from_db()
    assert run.status == "running" and run.lease_owner  # the dead worker's lease remains
    before = list(RunEvent.objects.filter(run=run).values_list("seq", flat=True))

    wait_for(lambda: Run.objects.get(pk=run.pk).lease_expires_at.timestamp() < time.time(), 5)
    taken = executor.recover_now(10)
    assert taken == 1
    executor.wait(run.pk, 15)

    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.outputs == {"text": "first then"}
    assert run.resumed_after_crash == 1
    assert started(run, "before") == 1  # finished before the crash: not run again
    assert started(run, "pause") == 2  # running at the crash: run again (at least once)
    seqs = list(RunEvent.objects.filter(run=run).values_list("seq", flat=True))
    assert seqs[:len(before)] == before
    assert seqs == list(range(1, len(seqs) + 1))
    types = list(RunEvent.objects.filter(run=run).values_list("type", flat=True))
    assert types.count("run.started") == 1 and types[-1] == "run.finished"


def test_a_live_lease_is_not_taken_over():
    owner = User.objects.create_user("lin")
    flow = services.create_flow(owner, slow_flow())
    run = Run.objects.create(owner=owner, flow=flow, document=services.documents.store_document(
        flow.draft), inputs={})
    from flows.services import lifecycle

    claimed = lifecycle.claim(run.pk, "worker-a")
    assert claimed is not None
    assert lifecycle.claim(run.pk, "worker-b") is None
    assert lifecycle.renew(lifecycle.Lease(run.pk, "worker-b", claimed.lease_token)) is None
    assert lifecycle.renew(lifecycle.Lease(run.pk, "worker-a", claimed.lease_token)) is not None



def test_a_run_that_kills_every_worker_fails_with_worker_lost(settings):
    """A crash loop ends: after RUN_MAX_RECOVERIES executions in a row that died with their
    worker, the run fails instead of being taken up again (and killing the next one)."""
    settings.RUN_MAX_RECOVERIES = 2
    owner = User.objects.create_user("poison")
    flow = services.create_flow(owner, slow_flow())
    run = Run.objects.create(owner=owner, flow=flow, document=services.documents.store_document(
        flow.draft), inputs={})
    environment = environment_for_another_process(RUN_LEASE_S="1")
    for execution in (1, 2):  # each worker dies (SIGKILL) while executing the run
        worker = subprocess.Popen([sys.executable, "-c", WORKER, str(run.pk)], cwd=ROOT,
                                  env=environment, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda n=execution: started(run, "pause") == n, 30)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
        wait_for(lambda: Run.objects.get(pk=run.pk).lease_expires_at.timestamp() < time.time(),
                 5)

    assert executor.recover_now(10) == 1
    executor.wait(run.pk, 10)

    run.refresh_from_db()
    assert run.status == "failed"
    assert run.error["code"] == "worker_lost"
    assert "2 times in a row" in run.error["message"]
    assert started(run, "pause") == 2  # not executed a third time
    finished = RunEvent.objects.filter(run=run, type="node.finished", data__node="pause").get()
    assert finished.data["status"] == "cancelled"  # the execution cut off ends, like any
    assert run.lease_owner == "" and run.unfinished_executions == 0


def test_an_execution_that_ends_clears_the_count_of_deaths(settings):
    owner = User.objects.create_user("steady")
    flow = services.create_flow(owner, {**slow_flow(), "nodes": [
        n if n["id"] != "pause" else {**n, "params": {"seconds": 0}} for n in slow_flow()["nodes"]]})
    run = Run.objects.create(owner=owner, flow=flow, document=services.documents.store_document(
        flow.draft), inputs={}, unfinished_executions=1)  # its last worker died
    executor.submit(run.pk)
    executor.wait(run.pk, 10)
    run.refresh_from_db()
    assert run.status == "succeeded" and run.unfinished_executions == 0


def test_a_run_killed_mid_iteration_runs_only_the_items_that_had_not_finished():
    each = {"nodes": [{"id": "item_start", "type": "start"},
                      {"id": "pause", "type": "wait", "params": {"seconds": 0.4}},
                      {"id": "say", "type": "template", "params": {"template": "#{{item}}"}},
                      {"id": "end", "type": "end", "inputs": {"text": "{{say.text}}"}}],
            "edges": [{"from": "item_start", "to": "pause"}, {"from": "pause", "to": "say"},
                      {"from": "say", "to": "end"}]}
    document = {"dsl": "astron/v1", "name": "Items",
                "nodes": [{"id": "start", "type": "start"},
                          {"id": "each", "type": "iteration",
                           "params": {"items": [1, 2, 3, 4, 5, 6], "body": each,
                                      "concurrency": 2}},
                          {"id": "end", "type": "end", "inputs": {"results": "{{each.results}}"}}],
                "edges": [{"from": "start", "to": "each"}, {"from": "each", "to": "end"}]}
    owner = User.objects.create_user("iris")
    flow = services.create_flow(owner, document)
    run = Run.objects.create(owner=owner, flow=flow, document=services.documents.store_document(
        flow.draft), inputs={})

    def items_done():
        return set(RunEvent.objects.filter(run=run, type="node.finished", data__node="end",
                                           scope="each").values_list("item", flat=True))

    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(run.pk)], cwd=ROOT,
                              env=environment_for_another_process(RUN_LEASE_S="1"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(items_done()) >= 2, 30)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
    done = items_done()
    wait_for(lambda: Run.objects.get(pk=run.pk).lease_expires_at.timestamp() < time.time(), 5)
    assert executor.recover_now(10) == 1
    executor.wait(run.pk, 15)

    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.outputs == {"results": [{"text": f"#{n}"} for n in range(1, 7)]}
    pauses = list(RunEvent.objects.filter(run=run, type="node.started", data__node="pause",
                                          scope="each").values_list("item", flat=True))
    assert not {item for item in done if pauses.count(item) > 1}  # 0 finished items repeated
    assert sorted(set(pauses)) == list(range(6))
