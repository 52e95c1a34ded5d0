"""Flow lookups stop before the database for flows that do not exist (flows/lookup.py).

Without REDIS_URL the Bloom filter is this process's, built from the table; with it, the
filter is shared in Redis and each process remembers the flows it saw.
"""

from __future__ import annotations

import secrets

import pytest
from django.core.cache import caches
from django.test import override_settings

from flows import lookup, services
from flows.cache import redis_breaker, redis_client
from flows.errors import ServiceError
from flows.lookup import BLOOM_BITS, Bits, flow_index, positions
from flows.models import Flow

from . import factories
from .cache_helpers import DEAD_REDIS, REDIS, queries, tables, unique_hello


@pytest.fixture(autouse=True)
def redis_up():
    redis_breaker.reset()
    yield
    redis_breaker.reset()


def random_slugs(count: int) -> list[str]:
    return [f"x-{secrets.token_hex(8)}" for _ in range(count)]


def warmed_up(owner) -> None:
    """One lookup of a missing flow: builds the filter when it is not there yet."""
    with pytest.raises(ServiceError):
        services.flow_of(owner, random_slugs(1)[0])


@pytest.mark.django_db
def test_an_unknown_slug_is_a_404_without_any_query(owner):
    factories.flow(owner)
    warmed_up(owner)
    for slug in random_slugs(200):  # a flood of random slugs
        with queries() as statements, pytest.raises(ServiceError) as refused:
            services.flow_of(owner, slug)
        assert refused.value.status == 404 and refused.value.code == "not_found"
        assert statements == []


@pytest.mark.django_db
def test_through_the_api_an_unknown_slug_costs_only_the_key_check(owner, api):
    factories.flow(owner)
    warmed_up(owner)
    for path in ("/api/flows/{}/runs/", "/api/flows/{}/"):
        slug = random_slugs(1)[0]
        with queries() as statements:
            response = (api.post(path.format(slug), {"inputs": {}}) if "runs" in path
                        else api.get(path.format(slug)))
        factories.assert_error(response, 404, "not_found")
        assert "flows_flow" not in tables(statements), statements


@pytest.mark.django_db
def test_a_new_flow_is_found_at_once(owner, api):
    warmed_up(owner)
    created = api.post("/api/flows/", {"dsl": unique_hello(), "slug": "fresh"})
    assert created.status_code == 201
    assert api.get("/api/flows/fresh/").status_code == 200
    assert api.post("/api/flows/fresh/runs/", {"inputs": {"name": "Ada"}}).status_code == 201
    flow = services.create_flow(owner, unique_hello(), slug="fresher")
    assert services.flow_of(owner, "fresher").pk == flow.pk


@pytest.mark.django_db
def test_a_flow_renamed_by_a_whole_row_save_is_found(owner):
    flow = factories.flow(owner, slug="before")
    warmed_up(owner)
    flow.slug = "after"
    flow.save()  # the shell, say: no service renames flows
    assert services.flow_of(owner, "after").pk == flow.pk


@pytest.mark.django_db
def test_someone_elses_flow_is_still_a_404(owner, outsider, outsider_api):
    factories.flow(owner, slug="mine")
    warmed_up(outsider)
    with queries() as statements, pytest.raises(ServiceError) as refused:
        services.flow_of(outsider, "mine")
    assert refused.value.status == 404
    assert statements == []  # (outsider, "mine") is a pair no flow has
    factories.assert_error(outsider_api.post("/api/flows/mine/runs/", {"inputs": {}}),
                           404, "not_found")


@pytest.mark.django_db
def test_a_deleted_flow_is_a_404_and_then_costs_no_query(owner):
    flow = factories.flow(owner, slug="gone")
    services.delete_flow(flow)
    with pytest.raises(ServiceError):
        services.flow_of(owner, "gone")  # one query: it learns the flow is deleted
    with queries() as statements, pytest.raises(ServiceError) as refused:
        services.flow_of(owner, "gone")
    assert refused.value.status == 404 and statements == []
    assert services.flow_of(owner, "gone", include_deleted=True).pk == flow.pk


@pytest.mark.django_db
def test_a_flow_created_elsewhere_is_found(owner):
    """Another process created it: this one's memory does not know it, the filter does
    (Redis), or the table does (rebuilt on first use without Redis)."""
    flow = factories.flow(owner, slug="elsewhere")
    flow_index.clear_local()
    assert services.flow_of(owner, "elsewhere").pk == flow.pk


@pytest.mark.django_db
def test_a_rebuild_finds_flows_written_behind_djangos_back(owner):
    """Rows written without Django's signals (bulk_create, COPY, a restore) are in the filter
    once it is rebuilt from the table (manage.py warm_cache does)."""
    warmed_up(owner)
    dsl = unique_hello()
    Flow.objects.bulk_create([Flow(owner=owner, slug="bulk", name="Bulk", draft=dsl,
                                   draft_hash="sha256:" + "1" * 64)])
    flow_index.rebuild()
    assert services.flow_of(owner, "bulk").slug == "bulk"


@pytest.mark.skipif(REDIS, reason="the process's own filter is the whole filter without Redis")
@pytest.mark.django_db
def test_without_redis_a_flow_another_process_created_is_found_within_seconds(owner,
                                                                             monkeypatch):
    """`manage.py demo` or a second server wrote it: this process never saw it created."""
    warmed_up(owner)
    Flow.objects.bulk_create([Flow(owner=owner, slug="from-elsewhere", name="Elsewhere",
                                   draft=unique_hello(), draft_hash="sha256:" + "2" * 64)])
    with pytest.raises(ServiceError):  # just looked: not again before NEW_FLOWS_CHECK_S
        services.flow_of(owner, "from-elsewhere")

    monkeypatch.setattr(lookup, "NEW_FLOWS_CHECK_S", 0.0)  # the seconds have passed

    assert services.flow_of(owner, "from-elsewhere").slug == "from-elsewhere"


@pytest.mark.skipif(REDIS, reason="the process's own filter is the whole filter without Redis")
@pytest.mark.django_db
def test_without_redis_a_flood_of_unknown_slugs_reads_new_flows_at_most_once(owner,
                                                                           monkeypatch):
    factories.flow(owner)
    warmed_up(owner)
    monkeypatch.setattr(lookup, "NEW_FLOWS_CHECK_S", 3600.0)
    lookup.flow_index._local(lookup._namespace()).new_checked_at = float("-inf")
    with queries() as statements:
        for slug in random_slugs(100):
            with pytest.raises(ServiceError):
                services.flow_of(owner, slug)
    assert tables(statements) == ["flows_flow"]  # one read of the newest ids, then none


@pytest.mark.django_db
def test_the_runs_filter_by_an_unknown_flow_asks_nothing_about_flows(owner, api):
    factories.run(owner, factories.flow(owner))
    warmed_up(owner)
    with queries() as statements:
        response = api.get(f"/api/runs/?flow={random_slugs(1)[0]}")
    assert response.status_code == 200 and response.json()["results"] == []
    assert "flows_flow" not in tables(statements)
    assert len(api.get("/api/runs/?flow=hello").json()["results"]) == 1


@pytest.mark.django_db
def test_with_redis_down_lookups_go_to_the_database_and_stay_right(owner, monkeypatch):
    factories.flow(owner, slug="there")
    monkeypatch.setattr(redis_breaker, "retry_s", 60)
    with override_settings(CACHES=DEAD_REDIS):
        flow_index.clear_local()  # nothing known locally: every answer needs the filter
        assert services.flow_of(owner, "there").slug == "there"
        with queries() as statements, pytest.raises(ServiceError):
            services.flow_of(owner, "not-there")
        assert tables(statements) == ["flows_flow"]  # no filter to trust: the database
        created = services.create_flow(owner, unique_hello(), slug="while-down")
        assert services.flow_of(owner, "while-down").pk == created.pk


@pytest.mark.skipif(not REDIS, reason="needs REDIS_URL")
@pytest.mark.django_db
def test_the_shared_filter_is_rebuilt_when_redis_lost_it(owner):
    flow = factories.flow(owner, slug="kept")
    cache = caches["default"]
    client = redis_client(cache)
    client.delete(flow_index._shared_key(cache, _namespace()))  # Redis restarted, say
    flow_index.clear_local()
    with pytest.raises(ServiceError):
        services.flow_of(owner, "lost")  # builds the filter, and asks the database this once
    with queries() as statements, pytest.raises(ServiceError):
        services.flow_of(owner, "lost-too")
    assert statements == []
    assert services.flow_of(owner, "kept").pk == flow.pk


@pytest.mark.skipif(not REDIS, reason="needs REDIS_URL")
@pytest.mark.django_db
def test_a_flow_created_while_redis_was_down_is_in_the_shared_filter_after(owner, monkeypatch):
    warmed_up(owner)
    monkeypatch.setattr(redis_breaker, "retry_s", 0.0)
    with override_settings(CACHES=DEAD_REDIS):
        services.create_flow(owner, unique_hello(), slug="made-while-down")
    assert redis_breaker.down
    # Redis answers again: the first call that reaches it sends the missed bits.
    flow_index.clear_local()  # (as another process would: it never saw the flow)
    assert services.flow_of(owner, "made-while-down").slug == "made-while-down"
    assert not redis_breaker.down
    flow_index.clear_local()
    cache = caches["default"]
    key = flow_index._shared_key(cache, _namespace())
    bits = positions(owner.pk, "made-while-down")
    assert all(redis_client(cache).getbit(key, bit) for bit in bits)


def test_the_filter_has_no_false_negatives_and_few_false_positives():
    bits = Bits()
    pairs = [(owner, f"flow-{n}") for owner in range(50) for n in range(200)]
    for owner, slug in pairs:
        bits.add(positions(owner, slug))
    assert all(bits.has(positions(owner, slug)) for owner, slug in pairs)
    strangers = [(owner, f"other-{n}") for owner in range(50) for n in range(200)]
    assert sum(bits.has(positions(o, s)) for o, s in strangers) == 0
    assert all(0 < p < BLOOM_BITS for p in positions(1, "hello"))
    merged = Bits()
    merged.merge(bits)
    assert merged.bytes == bits.bytes


def _namespace() -> str:
    from flows.lookup import _namespace as namespace

    return namespace()
