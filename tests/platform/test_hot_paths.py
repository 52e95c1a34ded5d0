"""Queries of the hot paths, counted (docs/platform.md, Hot paths): starting a run and
listing runs. Each statement left is listed there with the reason it is needed.

Transaction control (BEGIN, SAVEPOINT…) is left out of the counts: it differs between the
databases and between a test (inside a transaction) and a server.
"""

from __future__ import annotations

import pytest

from flows import services
from flows.cache import plan_cache

from . import factories
from .cache_helpers import queries, tables, unique_hello

INPUTS = {"inputs": {"name": "Ada"}}


@pytest.fixture
def published(owner, api):
    flow = services.create_flow(owner, unique_hello(), slug="hot")
    services.publish_flow(flow)
    # Warm: the key's last use is recorded (once a minute), the version and plan are cached.
    assert api.post("/api/flows/hot/runs/", INPUTS).status_code == 201
    return flow


@pytest.mark.django_db
def test_starting_a_published_run_with_a_warm_cache_is_three_queries(published, api):
    with queries() as statements:
        response = api.post("/api/flows/hot/runs/", INPUTS)
    assert response.status_code == 201
    assert tables(statements) == ["flows_apitoken", "flows_flow", "flows_run"], statements
    assert statements[2].startswith("INSERT")
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
    assert tables(statements) == ["flows_apitoken", "flows_flow", "flows_run"]


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
                                  "flows_run"], statements
    assert '"dsl"' not in statements[2] and '"draft"' not in statements[1]


@pytest.mark.django_db
def test_with_an_idempotency_key_one_more_query_looks_for_the_first_run(published, api):
    with queries() as statements:
        response = api.post("/api/flows/hot/runs/", INPUTS, HTTP_IDEMPOTENCY_KEY="k1")
    assert response.status_code == 201
    assert tables(statements) == ["flows_apitoken", "flows_flow", "flows_run", "flows_run"]
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
