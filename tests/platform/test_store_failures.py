"""A store of events that fails (a dropped connection) loses nothing: the batch stays and is
tried again with backoff, events emitted meanwhile queue behind it, and the run's events
have no gap. A store that keeps failing stops the run here (an interruption), so that it
continues from what is stored wherever it is claimed next."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import OperationalError

from flows import services
from flows.execution import grouping as grouping_module
from flows.execution import sink as sink_module
from flows.execution.executor import executor
from flows.models import RunEvent

pytestmark = pytest.mark.django_db(transaction=True)

CHAIN = {
    "dsl": "astron/v1", "name": "Chain",
    "nodes": [{"id": "start", "type": "start"},
              {"id": "a", "type": "template", "params": {"template": "a"}},
              {"id": "nap", "type": "wait", "params": {"seconds": 0.05}},
              {"id": "b", "type": "template", "params": {"template": "{{a.text}}b"}},
              {"id": "end", "type": "end", "inputs": {"text": "{{b.text}}"}}],
    "edges": [{"from": "start", "to": "a"}, {"from": "a", "to": "nap"},
              {"from": "nap", "to": "b"}, {"from": "b", "to": "end"}],
}


class FailingStores:
    """The sink's store, failing its first `failures` calls as a terminated backend would."""

    def __init__(self, failures: int):
        self.failures = failures
        self.calls = 0
        self.real = grouping_module.store_batches

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.calls <= self.failures:
            raise OperationalError("terminating connection due to administrator command")
        return self.real(*args, **kwargs)


def test_a_failed_store_is_tried_again_and_no_event_is_lost(monkeypatch):
    stores = FailingStores(failures=3)
    monkeypatch.setattr(grouping_module, "store_batches", stores)
    owner = User.objects.create_user("flaky")
    flow = services.create_flow(owner, CHAIN)

    run = services.start_run(owner, flow, {}, version="draft")[0]
    executor.wait(run.pk, 15)

    run.refresh_from_db()
    assert run.status == "succeeded" and run.outputs == {"text": "ab"}
    seqs = list(RunEvent.objects.filter(run=run).values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1)) and seqs[-1] == run.last_seq
    assert stores.calls > 3


def test_a_store_that_keeps_failing_stops_the_run_here(monkeypatch):
    monkeypatch.setattr(grouping_module, "store_batches", FailingStores(10**9))
    monkeypatch.setattr(sink_module, "RETRY_FOR_S", 0.3)
    owner = User.objects.create_user("down")
    flow = services.create_flow(owner, CHAIN)

    run = services.start_run(owner, flow, {}, version="draft")[0]
    executor.wait(run.pk, 3)

    run.refresh_from_db()
    assert run.status == "queued"  # not even run.started was stored: nothing was lost either
    assert not RunEvent.objects.filter(run=run).exists()
    assert str(run.pk) not in executor._live  # stopped here
    # An interruption keeps the lease: the run is not handed back as if it had paused, and
    # another process takes it over once the lease runs out, from what is stored.
    assert run.lease_owner != ""

