"""The sweep's batch claim on PostgreSQL (lifecycle.claim_stale, docs/scaling.md "The
sweep"): runs that hold a slot and lost their worker are taken over in one statement, each
once, by one of several sweeps running at once (SKIP LOCKED), and nothing else is taken."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import connection, connections
from django.utils import timezone

from flows import services
from flows.models import Document, Run
from flows.services import lifecycle

from .factories import sample

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def runs_of(db):
    owner = User.objects.create_user("sweep")
    flow = services.create_flow(owner, sample("hello"))
    document = Document.objects.get_or_create(hash=flow.draft_hash,
                                              defaults={"dsl": flow.draft})[0]

    def make(count: int, **fields) -> list[Run]:
        return Run.objects.bulk_create(Run(owner=owner, flow=flow, document=document,
                                           inputs={}, **fields) for _ in range(count))
    return make


def expired(**fields):
    return {"status": "running", "lease_owner": "dead:1:x", "lease_token": 3,
            "lease_expires_at": timezone.now() - timedelta(seconds=1), **fields}


@pytest.mark.skipif(connection.vendor == "postgresql", reason="the SQLite side of it")
def test_on_sqlite_the_sweep_claims_one_by_one(runs_of):
    runs_of(3, **expired())
    assert lifecycle.claim_stale("me:2:y", 10) == []
    assert len(lifecycle.runs_needing_a_worker()) == 3  # each then claimed by `claim`


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SKIP LOCKED: PostgreSQL")
def test_the_runs_that_lost_their_worker_are_taken_over_in_one_statement(runs_of):
    stale = runs_of(3, **expired())
    handed_over = runs_of(1, status="running", lease_owner="", lease_expires_at=None)
    of_a_gone_worker = runs_of(1, **expired(lease_owner="gone:3:z",
                                            lease_expires_at=timezone.now()
                                            + timedelta(seconds=30)))
    untouched = [*runs_of(1, **expired(lease_expires_at=timezone.now()
                                       + timedelta(seconds=30))),  # a live lease
                 *runs_of(1, status="queued"),  # never claimed: its claim checks its slot
                 *runs_of(1, status="waiting"),
                 *runs_of(1, **expired(lease_owner="me:2:y"))]  # its own

    claimed = lifecycle.claim_stale("me:2:y", 100, gone=["gone:3:z"])

    expected = {run.pk for run in [*stale, *handed_over, *of_a_gone_worker]}
    assert {row.pk for row in claimed} == expected
    for row in claimed:
        assert row.lease_owner == "me:2:y" and row.lease_expires_at > timezone.now()
        assert row.unfinished_executions == 1
        assert row.flow.slug and row.document_id  # ready to execute
    assert {row.pk: row.lease_token for row in claimed}[stale[0].pk] == 4
    assert Run.objects.get(pk=stale[0].pk).resumed_after_crash == 1
    for run in untouched:
        before = (run.lease_owner, run.lease_token)
        run.refresh_from_db()
        assert (run.lease_owner, run.lease_token) == before


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SKIP LOCKED: PostgreSQL")
def test_sweeps_running_at_once_split_the_runs_and_take_each_once(runs_of):
    stale = {run.pk for run in runs_of(40, **expired())}
    taken: dict[str, list] = {}
    start = threading.Barrier(4)

    def sweep(worker: str) -> None:
        try:
            start.wait()
            taken[worker] = [row.pk for row in lifecycle.claim_stale(worker, 40)]
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sweep, args=(f"w{n}:9:{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    everything = [pk for pks in taken.values() for pk in pks]
    assert sorted(everything) == sorted(stale)  # all of them, each by one sweep
    owners = dict(Run.objects.filter(pk__in=stale).values_list("pk", "lease_owner"))
    assert all(owners[pk] == worker for worker, pks in taken.items() for pk in pks)
    assert set(Run.objects.filter(pk__in=stale).values_list("lease_token", flat=True)) == {4}
