"""Queries of the hot paths, counted (docs/platform.md, Hot paths): starting a run and
listing runs. Each statement left is listed there with the reason it is needed.

Transaction control (BEGIN, SAVEPOINT…) is left out of the counts: it differs between the
databases and between a test (inside a transaction) and a server.
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from unittest.mock import patch

import pytest
from django.db.backends.utils import CursorWrapper

from flows import services
from flows.cache import plan_cache
from flows.models import Run

from . import factories
from .cache_helpers import queries, slot_check, tables, unique_hello

INPUTS = {"inputs": {"name": "Ada"}}


@pytest.fixture
def published(owner, api):
    flow = services.create_flow(owner, unique_hello(), slug="hot")
    services.publish_flow(flow)
    # Warm: the key's last use is recorded (once a minute), the version and plan are cached.
    assert api.post("/api/flows/hot/runs/", INPUTS).status_code == 201
    return flow


@pytest.mark.django_db
def test_starting_a_published_run_with_a_warm_cache_is_four_queries(published, api):
    with queries() as statements:
        response = api.post("/api/flows/hot/runs/", INPUTS)
    assert response.status_code == 201
    assert tables(statements) == ["flows_apitoken", "flows_flow", *slot_check(),
                                  "flows_run"], statements
    assert statements[-2].startswith("SELECT COUNT(") and statements[-1].startswith("INSERT")
    flow_query = statements[1]
    assert '"draft"' not in flow_query  # the draft (the whole document) is not read
    body = response.json()
    assert body["status"] == "queued" and body["nodes"] == [] and body["flow"] == "hot"
    assert body["version"] == 1 and body["inputs"] == {"name": "Ada"}


@pytest.mark.django_db
def test_an_l2_hit_adds_no_query(published, api):
    plan_cache.clear_l1()
    with queries() as statements:
        assert api.post("/api/flows/hot/runs/", INPUTS).status_code == 201
    assert tables(statements) == ["flows_apitoken", "flows_flow", *slot_check(), "flows_run"]


@pytest.mark.django_db
def test_the_response_is_the_run_as_stored(published, api):
    created = api.post("/api/flows/hot/runs/", INPUTS).json()
    again = api.get(f"/api/runs/{created['id']}/").json()
    assert created == again


@pytest.mark.django_db
def test_starting_a_draft_run_is_four_queries(owner, api):
    services.create_flow(owner, unique_hello(), slug="drafty")
    assert api.post("/api/flows/drafty/runs/", INPUTS).status_code == 201
    with queries() as statements:
        assert api.post("/api/flows/drafty/runs/", INPUTS).status_code == 201
    assert tables(statements) == ["flows_apitoken", "flows_flow", "flows_document",
                                  *slot_check(), "flows_run"], statements
    assert '"dsl"' not in statements[2] and '"draft"' not in statements[1]


@pytest.mark.django_db
def test_with_an_idempotency_key_one_more_query_looks_for_the_first_run(published, api):
    with queries() as statements:
        response = api.post("/api/flows/hot/runs/", INPUTS, HTTP_IDEMPOTENCY_KEY="k1")
    assert response.status_code == 201
    assert tables(statements) == ["flows_apitoken", "flows_flow", "flows_run", *slot_check(),
                                  "flows_run"]
    repeat = api.post("/api/flows/hot/runs/", INPUTS, HTTP_IDEMPOTENCY_KEY="k1")
    assert repeat.status_code == 200 and repeat.json()["id"] == response.json()["id"]


@pytest.mark.django_db
def test_listing_runs_is_two_queries(owner, api, published):
    for _ in range(5):
        factories.run(owner, published)
    with queries() as statements:
        response = api.get("/api/runs/")
    assert response.status_code == 200 and len(response.json()["results"]) == 6
    assert tables(statements) == ["flows_apitoken", "flows_run"], statements


@pytest.mark.django_db
def test_listing_runs_of_one_flow_is_three_queries(owner, api, published):
    with queries() as statements:
        response = api.get("/api/runs/?flow=hot")
    assert response.status_code == 200 and len(response.json()["results"]) == 1
    assert tables(statements) == ["flows_apitoken", "flows_flow", "flows_run"], statements



@contextmanager
def statements_of_every_thread():
    """(SQL, parameters as text) of every statement any thread runs in the block, in order
    (transaction control goes through the connection, not a cursor: it is not seen)."""
    found: list[tuple[str, str]] = []
    original, original_many = CursorWrapper._execute, CursorWrapper._executemany

    def execute(self, sql, params, *rest):
        found.append((sql, repr(params)))
        return original(self, sql, params, *rest)

    def executemany(self, sql, param_list, *rest):
        param_list = list(param_list)
        found.append((sql, repr(param_list)))
        return original_many(self, sql, param_list, *rest)

    with patch.object(CursorWrapper, "_execute", execute), \
            patch.object(CursorWrapper, "_executemany", executemany):
        yield found


@pytest.mark.django_db(transaction=True)
def test_executing_a_run_started_here_is_four_statements(owner, api, stopped_executor):
    """A run started in this process is leased to its executor as it is inserted (no claim,
    no read of events it cannot have), and its one batch of events stores the run row (the
    lease's fence, given up with run.finished: no separate release), the events and the
    node runs.
    Counted: the statements that name the run (not the worker's heartbeat or maintenance)."""
    flow = services.create_flow(owner, unique_hello(), slug="hot")
    services.publish_flow(flow)
    with statements_of_every_thread() as seen:
        response = api.post("/api/flows/hot/runs/", INPUTS)
        assert response.status_code == 201
        run_id = response.json()["id"]
        assert asyncio.run(stopped_executor.until_settled(run_id, 10)) == "settled"
    named = [sql for sql, params in seen if run_id in params or run_id.replace("-", "") in params]
    assert tables(named) == ["flows_run", "flows_run", "flows_runevent", "flows_noderun"], named
    assert named[0].startswith("INSERT") and named[1].startswith("UPDATE")
    run = Run.objects.get(pk=run_id)
    assert run.status == "succeeded" and run.outputs == {"greeting": "Hello, Ada!"}
    assert (run.lease_owner, run.lease_expires_at, run.unfinished_executions) == ("", None, 0)
    assert run.node_runs.count() == 3
