"""Before a node with side effects reaches the world, the events it depends on are stored:
a crash at that moment repeats that node at most, never one whose end was emitted
(docs/platform.md, "What a crash repeats")."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import OperationalError

from engine.ports import Usage
from flows import services
from flows.execution import grouping as grouping_module
from flows.execution import sink as sink_module
from flows.execution.executor import executor
from flows.execution.world import shared_world
from flows.models import Run, RunEvent

pytestmark = pytest.mark.django_db(transaction=True)

FLOW = {
    "dsl": "astron/v1", "name": "Ask after two steps",
    "nodes": [{"id": "start", "type": "start"},
              {"id": "first", "type": "template", "params": {"template": "one"}},
              {"id": "second", "type": "template", "params": {"template": "{{first.text}} two"}},
              {"id": "ask", "type": "llm",
               "params": {"provider": "probe", "prompt": "{{second.text}}"}},
              {"id": "end", "type": "end", "inputs": {"text": "{{ask.text}}"}}],
    "edges": [{"from": "start", "to": "first"}, {"from": "first", "to": "second"},
              {"from": "second", "to": "ask"}, {"from": "ask", "to": "end"}],
}


def stored():
    return [(event.type, event.data.get("node"))
            for event in RunEvent.objects.filter(run=Run.objects.get()).order_by("seq")]


class StoredEventsProbe:
    """An LLM provider that, when asked, reads what the database holds of the run."""

    def __init__(self):
        self.seen: list[tuple[str, str | None]] | None = None

    async def stream(self, request):
        self.seen = await sync_to_async(stored)()
        yield "answer"
        yield Usage(1, 1)


@pytest.fixture
def probe(monkeypatch):
    probe = StoredEventsProbe()
    monkeypatch.setitem(shared_world().llm_providers, "probe", probe)
    return probe


def test_the_events_before_a_side_effect_are_stored_when_it_starts(probe):
    owner = User.objects.create_user("careful")
    flow = services.create_flow(owner, FLOW)
    run = services.start_run(owner, flow, {}, version="draft")[0]
    executor.wait(run.pk, 15)

    run.refresh_from_db()
    assert run.status == "succeeded" and run.outputs == {"text": "answer"}
    # The two template nodes ran inline in the same instant; without the wait their ends
    # would still be in the sink's batch when the request goes out.
    assert probe.seen == [("run.started", None),
                          ("node.started", "start"), ("node.finished", "start"),
                          ("node.started", "first"), ("node.finished", "first"),
                          ("node.started", "second"), ("node.finished", "second"),
                          ("node.started", "ask")]


def test_a_side_effect_waits_while_nothing_can_be_stored_and_never_starts_if_it_stays_so(
        probe, monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("the server closed the connection unexpectedly")

    monkeypatch.setattr(grouping_module, "store_batches", refuse)
    monkeypatch.setattr(sink_module, "RETRY_FOR_S", 0.3)
    owner = User.objects.create_user("patient")
    flow = services.create_flow(owner, FLOW)

    run = services.start_run(owner, flow, {}, version="draft")[0]
    executor.wait(run.pk, 3)

    assert probe.seen is None  # the request was never sent
    assert str(run.pk) not in executor._live  # stopped here, to continue where it is claimed
