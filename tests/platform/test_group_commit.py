"""Group commit (flows/execution/grouping.py): the batches runs store while another store is
under way go together in one transaction, and each batch keeps its own outcome."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import IntegrityError, connection, connections

from engine import events as ev
from engine.events import envelope
from flows import services
from flows.errors import LeaseLost
from flows.execution import grouping
from flows.execution import sink as sink_module
from flows.execution.sink import DatabaseSink
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


# -- a batch sent again --------------------------------------------------------------------------

def later_events(run: Run) -> list:
    run_id = str(run.pk)
    return [envelope(4, ev.NODE_STARTED, TS, run_id, {"node": "end", "type": "end",
                                                      "attempt": 1, "inputs": {}})]


def test_a_batch_stored_already_is_skipped_when_sent_again_and_only_its_new_events_go_in(runs):
    first, _, _, _ = runs
    store_batches([batch_of(first)])

    again = store_batches([batch_of(first)])  # its store committed, but the answer was lost
    overlapping = batch_of(first)
    overlapping.events = overlapping.events[1:] + later_events(first)
    more = store_batches([overlapping])

    assert [len(outcome) for outcome in again + more] == [3, 3]  # stored: none refused
    assert list(RunEvent.objects.filter(run=first).order_by("seq")
                .values_list("seq", flat=True)) == [1, 2, 3, 4]
    assert sorted(NodeRun.objects.filter(run=first).values_list("node", "status")) == [
        ("end", "running"), ("start", "succeeded")]
    assert Run.objects.get(pk=first.pk).last_seq == 4


def test_a_batch_sent_again_that_grew_finishes_the_node_its_first_store_started(runs):
    """The drain sends the buffer again with what was emitted meanwhile: the node-run row
    the first store made, which the sink never heard of, is updated, not inserted twice."""
    first, _, _, _ = runs
    started = batch_of(first)
    started.events = started.events[:2]  # run.started, node.started of start
    store_batches([started])

    [outcome] = store_batches([batch_of(first)])  # known_nodes still empty: never told

    assert isinstance(outcome, list)
    assert list(NodeRun.objects.filter(run=first).values_list("node", "status")) == [
        ("start", "succeeded")]
    assert RunEvent.objects.filter(run=first).count() == 3


def test_a_finishing_batch_sent_again_is_stored_not_taken_for_a_lost_lease(runs):
    """Storing run.finished gives the lease up: sent again, the batch finds no leased row,
    and must still be known for stored (its waiters told the run finished, not moved)."""
    first, _, _, _ = runs
    finishing = batch_of(first)
    finishing.events.append(envelope(4, ev.RUN_FINISHED, TS, str(first.pk), {
        "status": "succeeded", "outputs": {}, "answer": None, "error": None,
        "elapsed_ms": 1.0, "recovered": 0}))
    store_batches([finishing])
    assert Run.objects.get(pk=first.pk).lease_owner == ""

    [outcome] = store_batches([finishing])

    assert isinstance(outcome, list) and outcome[-1]["type"] == ev.RUN_FINISHED
    assert RunEvent.objects.filter(run=first).count() == 4
    assert Run.objects.get(pk=first.pk).status == "succeeded"


def test_events_without_a_lease_are_never_taken_for_a_batch_sent_again(runs):
    """Closing events (lifecycle.terminate) carry no lease: one whose seq is taken must fail
    loudly, not vanish as if it were stored."""
    first, _, _, _ = runs
    store_batches([batch_of(first)])
    unleased = batch_of(first)
    unleased.lease = None

    [outcome] = store_batches([unleased])

    assert isinstance(outcome, IntegrityError)
    assert RunEvent.objects.filter(run=first).count() == 3


def test_a_batch_sent_again_after_another_worker_claimed_the_run_is_refused(runs):
    first, _, _, _ = runs
    store_batches([batch_of(first)])
    Run.objects.filter(pk=first.pk).update(lease_owner="worker-b", lease_token=first.lease_token + 1)

    [outcome] = store_batches([batch_of(first)])

    assert isinstance(outcome, LeaseLost)


def test_a_store_that_committed_as_the_executor_stopped_is_not_stored_twice_by_the_drain(
        runs, monkeypatch):
    """The store's thread commits while the sink's flusher is cancelled (the executor
    stopping): the batch stays in the buffer, and the run's drain sends it again."""
    monkeypatch.setattr(sink_module, "RETRY_FOR_S", 0.5)
    committed, answer = threading.Event(), threading.Event()
    real = grouping.store_batches

    def store(batches):
        outcomes = real(batches)
        committed.set()
        answer.wait(5)  # the answer comes back only after the stop
        return outcomes

    monkeypatch.setattr(grouping, "store_batches", store)
    run = runs[0]

    async def stopped_then_drained() -> DatabaseSink:
        sink = DatabaseSink(str(run.pk), {"start": "start"},
                            lifecycle.Lease(run.pk, "worker-a", run.lease_token),
                            known_nodes=set())
        for event in batch_of(run).events:
            sink.emit(event)
        try:
            await asyncio.to_thread(committed.wait, 5)
            others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in others:  # as Executor.stop does
                task.cancel()
            answer.set()
            await asyncio.gather(*others, return_exceptions=True)
            await sink.drain()
            return sink
        finally:
            await sync_to_async(connections.close_all)()

    sink = asyncio.run(stopped_then_drained())

    assert not sink.lost
    assert list(RunEvent.objects.filter(run=run).order_by("seq")
                .values_list("seq", flat=True)) == [1, 2, 3]
    assert NodeRun.objects.filter(run=run).count() == 1
    assert Run.objects.get(pk=run.pk).last_seq == 3
