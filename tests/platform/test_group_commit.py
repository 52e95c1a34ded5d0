"""Group commit (flows/execution/grouping.py): the batches runs store while another store is
under way go together in one transaction, and each batch keeps its own outcome."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connection, connections

from engine import events as ev
from engine.events import envelope
from flows import services
from flows.errors import LeaseLost
from flows.execution import grouping
from flows.models import NodeRun, Run, RunEvent
from flows.services import lifecycle
from flows.services.history import Batch, store_batches
from tests.platform import factories
from tracing import logs

pytestmark = pytest.mark.django_db(transaction=True)

TS = "2026-01-01T00:00:00.000Z"


@pytest.fixture
def runs():
    owner = User.objects.create_user("grouped")
    flow = services.create_flow(owner, factories.sample("hello"))
    document = services.documents.store_document(flow.draft)
    return [Run.objects.create(owner=owner, flow=flow, inputs={}, document=document,
                               **lifecycle.leased_to("worker-a")) for _ in range(4)]


def batch_of(run: Run, value: str = "Ada", lease_token: int | None = None) -> Batch:
    run_id = str(run.pk)
    events = [
        envelope(1, ev.RUN_STARTED, TS, run_id, {"inputs": {}, "flow": "hello",
                                                 "version": "draft"}),
        envelope(2, ev.NODE_STARTED, TS, run_id, {"node": "start", "type": "start",
                                                  "attempt": 1, "inputs": {"name": value}}),
        envelope(3, ev.NODE_FINISHED, TS, run_id, {
            "node": "start", "status": "succeeded", "outputs": {"name": value}, "error": None,
            "attempts": 1, "elapsed_ms": 0.1}),
    ]
    token = run.lease_token if lease_token is None else lease_token
    return Batch(run.pk, events, {"start": "start"}, lifecycle.Lease(run.pk, "worker-a", token),
                 known_nodes=set())


def test_batches_of_several_runs_are_stored_together_each_fenced_by_its_own_lease(runs):
    first, stale, third, _ = runs
    outcomes = store_batches([batch_of(first), batch_of(stale, lease_token=99),
                              batch_of(third)])

    assert [len(o) if isinstance(o, list) else type(o) for o in outcomes] == [3, LeaseLost, 3]
    assert RunEvent.objects.filter(run=first).count() == 3
    assert RunEvent.objects.filter(run=third).count() == 3
    assert not RunEvent.objects.filter(run=stale).exists()  # refused whole, nothing written
    assert not NodeRun.objects.filter(run=stale).exists()
    assert NodeRun.objects.get(run=first).outputs == {"name": "Ada"}
    assert Run.objects.get(pk=third.pk).last_seq == 3
    assert Run.objects.get(pk=stale.pk).last_seq == 0


def test_a_batch_the_database_refuses_fails_alone(runs, caplog, monkeypatch):
    monkeypatch.setattr(logs, "_last", {})  # no earlier warning of its kind holds this one back
    first, second, _, _ = runs
    clashing = batch_of(second)
    clashing.events[1] = {**clashing.events[1], "seq": 1}  # seq 1 twice: the unique index

    outcomes = store_batches([batch_of(first), clashing])

    assert isinstance(outcomes[0], list) and isinstance(outcomes[1], Exception)
    assert "storing 2 runs' batches together failed" in caplog.text  # an operator sees it
    assert RunEvent.objects.filter(run=first).count() == 3
    assert not RunEvent.objects.filter(run=second).exists()


def test_a_nul_in_one_batch_of_a_group_is_cleaned_and_the_others_stored_as_they_are(runs):
    first, second, _, _ = runs
    outcomes = store_batches([batch_of(first), batch_of(second, value="a\x00b")])

    assert all(isinstance(outcome, list) for outcome in outcomes)
    # PostgreSQL stores no NUL in jsonb: there it is replaced; SQLite keeps it.
    kept = "a\ufffdb" if connection.vendor == "postgresql" else "a\x00b"
    assert NodeRun.objects.get(run=second).outputs == {"name": kept}
    assert NodeRun.objects.get(run=first).outputs == {"name": "Ada"}


def test_batches_queued_while_a_store_is_under_way_go_in_the_next_transaction(
        runs, monkeypatch):
    calls: list[int] = []
    first_store_started, let_it_finish = threading.Event(), threading.Event()
    real = grouping.store_batches

    def store(batches):
        calls.append(len(batches))
        if len(calls) == 1:
            first_store_started.set()
            let_it_finish.wait(5)
        return real(batches)

    monkeypatch.setattr(grouping, "store_batches", store)

    async def four_runs_store() -> list:
        committer = grouping.GroupCommit()
        first = asyncio.ensure_future(committer.store(batch_of(runs[0])))
        await asyncio.to_thread(first_store_started.wait, 5)
        others = [asyncio.ensure_future(committer.store(batch_of(run))) for run in runs[1:]]
        await asyncio.sleep(0)
        let_it_finish.set()
        try:
            return await asyncio.gather(first, *others)
        finally:  # the storing thread's connection, closed before the database is dropped
            await sync_to_async(connections.close_all)()

    stored = asyncio.run(four_runs_store())

    assert calls == [1, 3]
    assert [len(events) for events in stored] == [3, 3, 3, 3]
    assert RunEvent.objects.count() == 12
