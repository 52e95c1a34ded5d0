"""A value the database cannot store (a NUL character: PostgreSQL keeps none in text or
jsonb) never stops a run: its batch is stored again with U+FFFD in its place, once, and the
watchers get what was stored. Before, the run showed `running` with no events and was
executed again from the start at every lease."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import connection, connections

from engine import events as ev
from engine.events import envelope
from flows import services
from flows.execution.sink import DatabaseSink
from flows.models import NodeRun, Run, RunEvent
from flows.services.history import has_nul, without_nul

pytestmark = pytest.mark.django_db(transaction=True)

TS = "2026-01-01T00:00:00.000Z"


def test_nul_is_replaced_in_keys_and_values_at_any_depth():
    value = {"a\x00": ["x\x00y", {"k": "\x00"}], "n": 1, "none": None}
    cleaned = without_nul(value)
    assert cleaned == {"a\ufffd": ["x\ufffdy", {"k": "\ufffd"}], "n": 1, "none": None}
    assert has_nul(value) and not has_nul(cleaned)


async def test_a_batch_with_nul_is_stored_and_the_run_goes_on():
    owner = await sync_to_async(User.objects.create_user)("nul")
    flow = await sync_to_async(services.create_flow)(owner, {
        "dsl": "astron/v1", "name": "Nul", "nodes": [
            {"id": "start", "type": "start"}, {"id": "end", "type": "end", "inputs": {}}],
        "edges": [{"from": "start", "to": "end"}]})
    document = await sync_to_async(services.documents.store_document)(flow.draft)
    run = await sync_to_async(Run.objects.create)(owner=owner, flow=flow, inputs={},
                                                  document=document)
    run_id = str(run.pk)
    sink = DatabaseSink(run_id, {"code": "code"})
    sink.emit(envelope(1, ev.RUN_STARTED, TS, run_id, {"inputs": {}, "flow": "nul",
                                                       "version": "draft"}))
    sink.emit(envelope(2, ev.NODE_STARTED, TS, run_id, {"node": "code", "type": "code",
                                                        "attempt": 1, "inputs": {}}))
    sink.emit(envelope(3, ev.NODE_FINISHED, TS, run_id, {
        "node": "code", "status": "succeeded", "outputs": {"r": "a\x00b"}, "error": None,
        "elapsed_ms": 1.0, "attempts": 1, "logs": "printed\x00"}))
    await sink.drain()

    stored = await sync_to_async(list)(RunEvent.objects.filter(run=run).order_by("seq"))
    node = await sync_to_async(NodeRun.objects.get)(run=run, node="code")
    expected = "a\ufffdb" if connection.vendor == "postgresql" else "a\x00b"
    assert [event.seq for event in stored] == [1, 2, 3]  # no gap, nothing lost
    assert stored[-1].data["outputs"] == {"r": expected}
    assert node.outputs == {"r": expected} and node.status == "succeeded"
    await sync_to_async(connections.close_all)()  # the ORM thread's: for the teardown
