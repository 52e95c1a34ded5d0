"""Fencing: a worker that lost a run's lease cannot write the run, and stops executing it.

A claim bumps the run's lease token; every write of an execution (its events with their
projections, answers taken, pause, release, renewal) names the token it holds, and is
refused once another claim moved it on. The executor's renewals survive failures, and a
worker that cannot renew within its lease stops the run itself before another may claim it.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connections
from django.utils import timezone

from engine import events as ev
from engine.events import envelope
from engine.results import RunResult
from flows import services
from flows.errors import LeaseLost
from flows.execution import executor as executor_module
from flows.execution.sink import DatabaseSink
from flows.models import Run, RunEvent
from flows.services import lifecycle
from flows.services.history import store_events

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_FLOW = {
    "dsl": "astron/v1", "name": "Nap",
    "nodes": [{"id": "start", "type": "start"},
              {"id": "nap", "type": "wait", "params": {"seconds": 30}},
              {"id": "end", "type": "end", "inputs": {}}],
    "edges": [{"from": "start", "to": "nap"}, {"from": "nap", "to": "end"}],
}


@pytest.fixture
def run_row():
    owner = User.objects.create_user("fenced")
    flow = services.create_flow(owner, WAIT_FLOW)
    return Run.objects.create(owner=owner, flow=flow, inputs={},
                              document=services.documents.store_document(flow.draft))


def expire(run: Run) -> None:
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))


def started(run: Run, seq: int = 1) -> list:
    return [envelope(seq, ev.RUN_STARTED, "2026-01-01T00:00:00.000Z", str(run.pk),
                     {"inputs": {}, "flow": "nap", "version": "draft"})]


def test_each_claim_moves_the_token_on(run_row):
    first = lifecycle.claim(run_row.pk, "worker-a")
    expire(run_row)
    second = lifecycle.claim(run_row.pk, "worker-a")  # the same worker, a new execution
    assert second.lease_token == first.lease_token + 1


def test_a_taken_over_workers_events_are_refused_and_nothing_is_written(run_row):
    old = lifecycle.claim(run_row.pk, "worker-a")
    expire(run_row)
    new = lifecycle.claim(run_row.pk, "worker-b")
    stale = lifecycle.Lease(run_row.pk, "worker-a", old.lease_token)

    with pytest.raises(LeaseLost):
        store_events(run_row.pk, started(run_row), lease=stale)
    assert not RunEvent.objects.filter(run=run_row).exists()

    store_events(run_row.pk, started(run_row), lease=lifecycle.Lease(
        run_row.pk, "worker-b", new.lease_token))
    assert RunEvent.objects.filter(run=run_row).count() == 1


def test_a_stale_lease_cannot_renew_pause_take_answers_or_release(run_row):
    old = lifecycle.claim(run_row.pk, "worker-a")
    stale = lifecycle.Lease(run_row.pk, "worker-a", old.lease_token)
    expire(run_row)
    lifecycle.claim(run_row.pk, "worker-a")  # a newer execution by the same worker

    assert lifecycle.renew(stale) is None
    assert lifecycle.take_answers(stale, 0) is False
    assert lifecycle.release(stale) is False
    waiting = RunResult("waiting", None, None, None, 1.0, 0, 1, {}, 1, [])
    with pytest.raises(LeaseLost):
        lifecycle.pause(stale, waiting, 0)
    assert Run.objects.get(pk=run_row.pk).lease_owner == "worker-a"  # the newer one's


async def test_a_refused_batch_stops_the_sink_and_calls_back_once(run_row):
    from asgiref.sync import sync_to_async

    old = await sync_to_async(lifecycle.claim)(run_row.pk, "worker-a")
    await sync_to_async(expire)(run_row)
    await sync_to_async(lifecycle.claim)(run_row.pk, "worker-b")
    calls = []
    sink = DatabaseSink(str(run_row.pk), {}, lifecycle.Lease(run_row.pk, "worker-a",
                                                             old.lease_token),
                        on_lost=lambda: calls.append(1))
    sink.emit(started(run_row)[0])
    with pytest.raises(LeaseLost):
        await sink.drain()
    sink.emit(started(run_row, 2)[0])  # ignored: nothing more is stored from here
    await sink.drain()
    assert calls == [1]
    assert await sync_to_async(RunEvent.objects.filter(run=run_row).count)() == 0
    await sync_to_async(connections.close_all)()  # the ORM thread's: for the teardown


class FlakyRenewals:
    """lifecycle.renew_many (the executor's renewals, sent together), failing the first
    `failures` calls as a dropped connection would."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls = 0
        self.renew_many = lifecycle.renew_many

    def __call__(self, leases):
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError("server closed the connection unexpectedly")
        return self.renew_many(leases)


def execute_in_background(run_row, monkeypatch, settings, renew):
    settings.RUN_LEASE_S = 3  # renewals every second
    monkeypatch.setattr(executor_module, "RENEW_RETRY_S", 0.2)
    monkeypatch.setattr(lifecycle, "renew_many", renew)
    executor = executor_module.Executor()
    executor.maintenance = False
    executor.submit(run_row.pk)
    return executor


def wait_for(predicate, seconds: float) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_renewal_survives_failures_and_the_run_goes_on(run_row, monkeypatch, settings):
    renew = FlakyRenewals(failures=2)
    executor = execute_in_background(run_row, monkeypatch, settings, renew)
    try:
        assert wait_for(lambda: renew.calls >= 4, 10), "renewal stopped after a failure"
        row = Run.objects.get(pk=run_row.pk)
        assert row.status == Run.Status.RUNNING and row.lease_owner == executor.worker
        assert row.lease_expires_at > timezone.now()
    finally:
        executor.stop()


def test_a_worker_that_cannot_renew_stops_the_run_before_its_lease_ends(
        run_row, monkeypatch, settings):
    renew = FlakyRenewals(failures=10_000)
    executor = execute_in_background(run_row, monkeypatch, settings, renew)
    try:
        assert wait_for(lambda: str(run_row.pk) in executor._live, 5)
        assert wait_for(lambda: str(run_row.pk) not in executor._live, 6), \
            "the worker kept executing a run it could not renew"
        stopped_at = timezone.now()
        row = Run.objects.get(pk=run_row.pk)
        assert stopped_at < row.lease_expires_at  # before another worker could claim it
        # Stopped as an interruption: not finished, left for whoever claims it next.
        assert row.status == Run.Status.RUNNING
        assert not RunEvent.objects.filter(run=run_row, type=ev.RUN_FINISHED).exists()
    finally:
        executor.stop()


def test_leases_renewed_together_each_get_their_own_answer(run_row):
    other = Run.objects.create(owner=run_row.owner, flow=run_row.flow, inputs={},
                               document=run_row.document)
    mine = lifecycle.claim(run_row.pk, "worker-a")
    lost = lifecycle.claim(other.pk, "worker-a")
    expire(other)
    lifecycle.claim(other.pk, "worker-b")  # taken over: worker-a's lease on it is gone
    Run.objects.filter(pk=run_row.pk).update(
        pending_answers=[{"node": "ask", "answer": "yes"}], answer_serial=7,
        cancel_requested=True, lease_expires_at=timezone.now())

    rows = lifecycle.renew_many([lifecycle.Lease(run_row.pk, "worker-a", mine.lease_token),
                                 lifecycle.Lease(other.pk, "worker-a", lost.lease_token)])

    assert rows[str(other.pk)] is None
    renewed = rows[str(run_row.pk)]
    assert renewed.pending_answers == [{"node": "ask", "answer": "yes"}]
    assert (renewed.answer_serial, renewed.cancel_requested) == (7, True)
    assert Run.objects.get(pk=run_row.pk).lease_expires_at > timezone.now() + timedelta(
        seconds=lifecycle.lease_seconds() - 5)
    assert Run.objects.get(pk=other.pk).lease_owner == "worker-b"
