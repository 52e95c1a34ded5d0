"""How a waiting request hears that its run settled: from this process's executor
(flows/execution/settling.py), or from the run's channel group when another process took
the run on (flows/fanout.py, until_settled_elsewhere)."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connections

from flows import services
from flows.execution.publisher import announce_pause, publish
from flows.execution.settling import MOVED, SETTLED, Settlements
from flows.fanout import until_settled_elsewhere
from flows.models import Run


def test_a_watcher_hears_once_that_the_run_settled():
    settlements, heard = Settlements(), []
    settlements.watch("r1", heard.append)
    settlements.settle("r1")
    settlements.settle("r1")
    assert heard == [SETTLED]


def test_a_watcher_that_comes_a_moment_late_hears_at_once_unless_the_run_resumed():
    settlements, heard = Settlements(), []
    settlements.settle("r1")
    settlements.watch("r1", heard.append)
    assert heard == [SETTLED]
    settlements.resume("r1")  # an answer: it executes again
    settlements.watch("r1", heard.append)
    assert heard == [SETTLED]
    settlements.watch("r2", heard.append, recent=False)
    assert heard == [SETTLED]


def test_a_run_that_moves_on_tells_its_watchers_and_one_that_stops_watching_hears_nothing():
    settlements, heard, ignored = Settlements(), [], []
    settlements.watch("r1", heard.append)
    stop = settlements.watch("r1", ignored.append)
    stop()
    settlements.moved("r1")
    assert heard == [MOVED] and ignored == []


def finished_event(run_id: str, seq: int) -> dict:
    return {"seq": seq, "type": "run.finished", "ts": "2026-01-01T00:00:00.000Z",
            "run_id": run_id, "scope": None, "item": None,
            "data": {"status": "succeeded", "outputs": {}, "answer": None, "error": None,
                     "elapsed_ms": 1.0, "recovered": 0}}


@pytest.fixture
def running_run(db):
    owner = User.objects.create_user("elsewhere")
    flow = services.create_flow(owner, {
        "dsl": "astron/v1", "name": "Short",
        "nodes": [{"id": "start", "type": "start"}, {"id": "end", "type": "end", "inputs": {}}],
        "edges": [{"from": "start", "to": "end"}]})
    return Run.objects.create(owner=owner, flow=flow, inputs={}, status="running",
                              lease_owner="another-process",
                              document=services.documents.store_document(flow.draft))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("news", ["finished", "paused"])
async def test_a_run_executed_elsewhere_is_heard_of_through_its_group(running_run, news):
    run_id = str(running_run.pk)
    waiter = asyncio.create_task(until_settled_elsewhere(run_id))
    for _ in range(50):  # joined, and its state read once: still running
        await asyncio.sleep(0.01)
    assert not waiter.done()
    if news == "finished":
        await publish(run_id, [finished_event(run_id, 7)])
    else:
        await announce_pause(run_id)
    await asyncio.wait_for(waiter, 5)
    await sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
async def test_a_run_that_settled_before_the_waiter_joined_is_read_as_such(running_run):
    await sync_to_async(Run.objects.filter(pk=running_run.pk).update)(
        status="succeeded", lease_owner="")
    await asyncio.wait_for(until_settled_elsewhere(str(running_run.pk)), 5)
    await sync_to_async(connections.close_all)()


@pytest.mark.django_db(transaction=True)
async def test_the_executor_says_moved_when_another_process_holds_the_run(running_run):
    from datetime import timedelta

    from django.utils import timezone

    from flows.execution.executor import Executor

    await sync_to_async(Run.objects.filter(pk=running_run.pk).update)(
        lease_expires_at=timezone.now() + timedelta(seconds=60))
    executor = Executor()
    executor.maintenance = False
    waiting = asyncio.create_task(executor.until_settled(running_run.pk, 10))
    await asyncio.sleep(0.05)
    await sync_to_async(executor.submit)(running_run.pk)  # its claim fails: the lease holds
    try:
        assert await asyncio.wait_for(waiting, 5) == MOVED
    finally:
        await sync_to_async(executor.stop, thread_sensitive=False)()
        await sync_to_async(connections.close_all)()
