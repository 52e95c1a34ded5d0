"""Flow lookups answer a slug just found missing without the database (flows/lookup.py).

The negative entry lives in Django's cache: this process's memory without REDIS_URL, Redis
(shared by every process) with it.
"""

from __future__ import annotations

import secrets
import time
from types import SimpleNamespace

import pytest
from django.core.cache import caches
from django.test import override_settings

from flows import lookup, services
from flows.cache import cache_stats, redis_breaker
from flows.errors import ServiceError
from flows.models import Flow

from . import factories
from .cache_helpers import DEAD_REDIS, REDIS, queries, tables, unique_hello


@pytest.fixture(autouse=True)
def redis_up():
    redis_breaker.reset()
    yield
    redis_breaker.reset()


def random_slug() -> str:
    return f"x-{secrets.token_hex(8)}"


def refused(owner, slug: str) -> list[str]:
    """Look up a missing flow (a 404); the statements it ran."""
    with queries() as statements, pytest.raises(ServiceError) as error:
        services.flow_of(owner, slug)
    assert error.value.status == 404 and error.value.code == "not_found"
    return statements


def entry_ttl(owner, slug: str) -> float:
    """Seconds the negative entry of (owner, slug) has left to live."""
    cache = caches["default"]
    key = cache.make_key(lookup.missing_key(owner.pk, slug))
    if REDIS:
        from django_redis import get_redis_connection

        return get_redis_connection("default").pttl(key) / 1000
    return cache._expire_info[key] - time.time()


@pytest.mark.django_db
def test_an_unknown_slug_asked_again_is_a_404_without_any_query(owner):
    factories.flow(owner)
    slug = random_slug()
    assert tables(refused(owner, slug)) == ["flows_flow"]  # the first time: one query
    before = cache_stats()["flows.absent"]
    for _ in range(200):  # a client asking again and again
        assert refused(owner, slug) == []
    assert cache_stats()["flows.absent"] - before == 200


@pytest.mark.django_db
def test_through_the_api_an_unknown_slug_asked_again_costs_only_the_key_check(owner, api):
    factories.flow(owner)
    for path in ("/api/flows/{}/runs/", "/api/flows/{}/"):
        slug = random_slug()
        for _ in range(2):
            with queries() as statements:
                response = (api.post(path.format(slug), {"inputs": {}}) if "runs" in path
                            else api.get(path.format(slug)))
            factories.assert_error(response, 404, "not_found")
        assert "flows_flow" not in tables(statements), statements


@pytest.mark.django_db
def test_a_negative_entry_lives_a_short_while(owner):
    slug = random_slug()
    refused(owner, slug)
    assert 0 < entry_ttl(owner, slug) <= lookup.MISSING_TTL_S


@pytest.mark.django_db
def test_a_new_flow_is_found_at_once(owner, api):
    refused(owner, "fresh")
    refused(owner, "fresher")
    created = api.post("/api/flows/", {"dsl": unique_hello(), "slug": "fresh"})
    assert created.status_code == 201
    assert api.get("/api/flows/fresh/").status_code == 200
    assert api.post("/api/flows/fresh/runs/", {"inputs": {"name": "Ada"}}).status_code == 201
    flow = services.create_flow(owner, unique_hello(), slug="fresher")
    assert services.flow_of(owner, "fresher").pk == flow.pk


@pytest.mark.django_db(transaction=True)
def test_a_lookup_between_a_flow_s_creation_and_its_commit_is_forgotten_at_the_commit(owner):
    from django.db import transaction

    with transaction.atomic():
        flow = services.create_flow(owner, unique_hello(), slug="committing")
        # Another request looks the slug up before the commit: it sees no row yet.
        lookup.note_missing(owner.pk, "committing")
    assert services.flow_of(owner, "committing").pk == flow.pk


@pytest.mark.django_db
def test_a_flow_renamed_by_a_whole_row_save_is_found(owner):
    flow = factories.flow(owner, slug="before")
    refused(owner, "after")
    flow.slug = "after"
    flow.save()  # the shell, say: no service renames flows
    assert services.flow_of(owner, "after").pk == flow.pk


@pytest.mark.django_db
def test_someone_elses_flow_is_still_a_404(owner, outsider, outsider_api):
    factories.flow(owner, slug="mine")
    refused(outsider, "mine")
    assert refused(outsider, "mine") == []  # asked again: no query
    factories.assert_error(outsider_api.post("/api/flows/mine/runs/", {"inputs": {}}),
                           404, "not_found")
    assert services.flow_of(owner, "mine").slug == "mine"  # its owner's entry is its own


@pytest.mark.django_db
def test_a_deleted_flow_is_a_404_and_then_costs_no_query(owner):
    flow = factories.flow(owner, slug="gone")
    services.delete_flow(flow)
    assert tables(refused(owner, "gone")) == ["flows_flow"]  # it learns the flow is deleted
    before = cache_stats()["flows.deleted"]
    assert refused(owner, "gone") == []
    assert cache_stats()["flows.deleted"] - before == 1
    assert services.flow_of(owner, "gone", include_deleted=True).pk == flow.pk


@pytest.mark.django_db
def test_a_deleted_flow_restored_is_found(owner):
    flow = factories.flow(owner, slug="back")
    services.delete_flow(flow)
    refused(owner, "back")
    flow.deleted_at = None
    flow.save()  # the admin, say
    assert services.flow_of(owner, "back").pk == flow.pk


@pytest.mark.django_db
def test_a_flow_written_behind_djangos_back_is_found_once_the_entry_expires(owner,
                                                                           monkeypatch):
    """Rows written without Django's signals (bulk_create, COPY, a restore, another process
    without Redis): a pair never looked up is found at once, one just found missing once its
    entry has expired."""
    refused(owner, "from-elsewhere")
    Flow.objects.bulk_create([
        Flow(owner=owner, slug=slug, name="Elsewhere", draft=unique_hello(),
             draft_hash="sha256:" + "2" * 64) for slug in ("from-elsewhere", "bulk")])
    assert services.flow_of(owner, "bulk").slug == "bulk"
    assert refused(owner, "from-elsewhere") == []  # the entry still stands
    if REDIS:
        from django_redis import get_redis_connection

        key = caches["default"].make_key(lookup.missing_key(owner.pk, "from-elsewhere"))
        get_redis_connection("default").delete(key)  # as Redis expires it
    else:
        from django.core.cache.backends import locmem

        later = time.time() + lookup.MISSING_TTL_S + 0.1  # as time passes for the cache
        monkeypatch.setattr(locmem, "time", SimpleNamespace(time=lambda: later))
    assert services.flow_of(owner, "from-elsewhere").slug == "from-elsewhere"


@pytest.mark.django_db
def test_the_runs_filter_by_an_unknown_flow_asked_again_asks_nothing_about_flows(owner, api):
    factories.run(owner, factories.flow(owner))
    slug = random_slug()
    api.get(f"/api/runs/?flow={slug}")
    with queries() as statements:
        response = api.get(f"/api/runs/?flow={slug}")
    assert response.status_code == 200 and response.json()["results"] == []
    assert "flows_flow" not in tables(statements)
    assert len(api.get("/api/runs/?flow=hello").json()["results"]) == 1


@pytest.mark.django_db
def test_the_runs_filter_finds_the_runs_of_a_deleted_flow(owner, api):
    flow = factories.flow(owner, slug="old")
    factories.run(owner, flow)
    services.delete_flow(flow)
    refused(owner, "old")  # remembered as deleted: still a flow for the runs filter
    assert len(api.get("/api/runs/?flow=old").json()["results"]) == 1


@pytest.mark.django_db
def test_with_redis_down_lookups_go_to_the_database_and_stay_right(owner, monkeypatch):
    factories.flow(owner, slug="there")
    monkeypatch.setattr(redis_breaker, "retry_s", 60)
    with override_settings(CACHES=DEAD_REDIS):
        assert services.flow_of(owner, "there").slug == "there"
        for _ in range(2):
            assert tables(refused(owner, "not-there")) == ["flows_flow"]  # nothing to trust
        created = services.create_flow(owner, unique_hello(), slug="while-down")
        assert services.flow_of(owner, "while-down").pk == created.pk
