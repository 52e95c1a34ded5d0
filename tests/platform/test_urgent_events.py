"""The events someone waits for are stored and published at once: a `run.waiting` (a person's
question on the run page) and a run's last batch (a `wait` request), whatever the batching
delay of the events before them (flows/execution/sink.py)."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connections

from engine import events as ev
from engine.events import envelope
from flows import services
from flows.execution import sink as sink_module
from flows.execution.sink import DatabaseSink
from flows.models import Run
from flows.services import lifecycle

pytestmark = pytest.mark.django_db(transaction=True)

FLOW = {"dsl": "astron/v1", "name": "Short",
        "nodes": [{"id": "start", "type": "start"}, {"id": "end", "type": "end", "inputs": {}}],
        "edges": [{"from": "start", "to": "end"}]}
TS = "2026-01-01T00:00:00.000Z"


@pytest.fixture
def leased_run():
    owner = User.objects.create_user("urgent")
    flow = services.create_flow(owner, FLOW)
    run = Run.objects.create(owner=owner, flow=flow, inputs={},
                             document=services.documents.store_document(flow.draft))
    claimed = lifecycle.claim(run.pk, "worker-a")
    return run, lifecycle.Lease(run.pk, "worker-a", claimed.lease_token)


def event(run, seq, kind, data):
    return envelope(seq, kind, TS, str(run.pk), data)


async def published_within(published, count, seconds=5.0):
    async def reached():
        while sum(len(batch) for batch in published) < count:
            await asyncio.sleep(0.01)
    await asyncio.wait_for(reached(), seconds)


@pytest.mark.parametrize("last", ["run.finished", "run.waiting", "drain"])
async def test_what_is_waited_for_does_not_wait_out_the_batching_delay(
        leased_run, monkeypatch, last):
    run, lease = leased_run
    monkeypatch.setattr(sink_module, "FLUSH_DELAY_S", 3600)  # an hour between batches
    sink = DatabaseSink(str(run.pk), {"start": "start"}, lease)
    published = []
    monkeypatch.setattr(sink.publisher, "send", published.append)

    sink.emit(event(run, 1, ev.RUN_STARTED, {"inputs": {}, "flow": "f", "version": "draft"}))
    await published_within(published, 1)  # after a quiet spell: at once
    sink.emit(event(run, 2, ev.NODE_STARTED,
                    {"node": "start", "type": "start", "attempt": 1, "inputs": {}}))
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(published) == 1  # an ordinary event waits for the next batch

    if last == "run.finished":
        sink.emit(event(run, 3, ev.RUN_FINISHED, {
            "status": "succeeded", "outputs": {}, "answer": None, "error": None,
            "elapsed_ms": 1.0, "recovered": 0}))
        await published_within(published, 3)
    elif last == "run.waiting":
        sink.emit(event(run, 3, ev.RUN_WAITING, {
            "node": "start", "question": "?", "options": [], "timeout_at": None}))
        await published_within(published, 3)
    else:
        await asyncio.wait_for(sink.drain(), 5)  # the end of an execution
        await published_within(published, 2)
    await sink.drain()
    await sync_to_async(connections.close_all)()
