"""A channel layer that is slow or frozen (Redis stopped with SIGSTOP) never holds a run back:
publishing happens off the run's path, each send is bounded, and what piles up meanwhile is
announced by its last seq for watchers to read from the database."""

from __future__ import annotations

import asyncio

import pytest
from channels.layers import get_channel_layer
from django.contrib.auth.models import User

from flows import services
from flows.execution import publisher as publisher_module
from flows.execution.executor import executor
from flows.execution.publisher import Publisher, run_group
from flows.models import RunEvent

pytestmark = pytest.mark.django_db(transaction=True)

CHAIN = {
    "dsl": "astron/v1", "name": "Chain",
    "nodes": [{"id": "start", "type": "start"},
              {"id": "ask", "type": "llm", "params": {"provider": "echo", "prompt": "a b c"}},
              {"id": "nap", "type": "wait", "params": {"seconds": 0.05}},
              {"id": "again", "type": "llm", "params": {"provider": "echo", "prompt": "d e"}},
              {"id": "end", "type": "end", "inputs": {"text": "{{again.text}}"}}],
    "edges": [{"from": "start", "to": "ask"}, {"from": "ask", "to": "nap"},
              {"from": "nap", "to": "again"}, {"from": "again", "to": "end"}],
}


class FrozenLayer:
    """The configured channel layer, except that every group_send hangs until thawed."""

    def __init__(self):
        self.real = get_channel_layer()
        self.thawed = asyncio.Event()
        self.messages: list[dict] = []

    def __getattr__(self, name):
        return getattr(self.real, name)

    async def group_send(self, group, message):
        await self.thawed.wait()
        self.messages.append(message)


def test_a_frozen_channel_layer_does_not_hold_a_run_back(monkeypatch):
    frozen = FrozenLayer()
    monkeypatch.setattr(publisher_module, "get_channel_layer", lambda: frozen)
    owner = User.objects.create_user("calm")
    flow = services.create_flow(owner, CHAIN)

    run = services.start_run(owner, flow, {}, version="draft")[0]
    executor.wait(run.pk, 10)  # each batch would wait for ever if publishing were awaited

    run.refresh_from_db()
    assert run.status == "succeeded" and run.outputs == {"text": "d e"}
    seqs = list(RunEvent.objects.filter(run=run).values_list("seq", flat=True))
    assert seqs == list(range(1, run.last_seq + 1))


def event(seq):
    return {"seq": seq, "type": "node.chunk", "run": "r", "data": {"text": "x"}}


async def test_what_piles_up_behind_a_slow_send_stays_bounded_and_is_announced(monkeypatch):
    frozen = FrozenLayer()
    monkeypatch.setattr(publisher_module, "get_channel_layer", lambda: frozen)
    publisher = Publisher("r")
    publisher.send([event(1)])
    await asyncio.sleep(0)  # the first message is in flight, and hangs
    for batch in range(20):
        publisher.send([event(2 + batch * 100 + n) for n in range(100)])
    assert len(publisher._pending) <= publisher_module.MAX_MESSAGE_EVENTS

    frozen.thawed.set()
    await asyncio.wait_for(publisher.idle(), 5)

    assert frozen.messages == [
        {"type": "run.events", "events": [event(1)]},
        {"type": "run.events", "events": [], "stored_to": 2001}]  # read from the database


async def test_a_send_that_hangs_is_given_up(monkeypatch):
    frozen = FrozenLayer()
    monkeypatch.setattr(publisher_module, "get_channel_layer", lambda: frozen)
    monkeypatch.setattr(publisher_module, "PUBLISH_TIMEOUT_S", 0.05)
    publisher = Publisher("r")
    publisher.send([event(1)])

    await asyncio.wait_for(publisher.idle(), 5)  # while the layer is still frozen
    frozen.thawed.set()
    publisher.send([event(2)])
    await asyncio.wait_for(publisher.idle(), 5)

    assert frozen.messages == [{"type": "run.events", "events": [event(2)]}]


async def test_batches_sent_in_order_reach_the_group(monkeypatch):
    layer = get_channel_layer()
    channel = await layer.new_channel("test.")
    await layer.group_add(run_group("r"), channel)
    publisher = Publisher("r")
    publisher.send([event(1), event(2)])
    publisher.send([event(3)])
    await asyncio.wait_for(publisher.idle(), 5)

    received = []
    while len(received) < 3:
        message = await asyncio.wait_for(layer.receive(channel), 5)
        received += [e["seq"] for e in message["events"]]
    assert received == [1, 2, 3]
