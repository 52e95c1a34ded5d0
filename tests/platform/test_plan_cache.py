"""The tiered plan cache (flows/cache.py): L1 process memory → L2 Redis (or the in-process
cache) → L3 `Document.plan` → compile; single flight, jitter, no pickles, Redis down.

Both passes: without REDIS_URL the L2 is Django's local-memory cache; with it, Redis through
django-redis. Every test uses documents of its own (a unique description), so tests running
side by side on one Redis never share a key.
"""

from __future__ import annotations

import logging
import threading
import time

import msgpack
import pytest
from django.core.cache import caches
from django.db import connection
from django.test import override_settings
from django_redis.serializers.msgpack import MSGPackSerializer

from engine import Plan, compile_plan, document_digest
from flows import services
from flows.cache import JITTER, L2_TTL_S, cache_stats, jittered, plan_cache, redis_breaker
from flows.models import Document
from flows.plans import plan_for

from . import factories
from .cache_helpers import DEAD_REDIS, REDIS, chain, queries, unique_hello


@pytest.fixture(autouse=True)
def redis_up():
    redis_breaker.reset()
    yield
    redis_breaker.reset()


def stored(owner, dsl=None) -> str:
    """A published flow's document; its hash. Publishing warms L1 and L2: dropped here."""
    flow = services.create_flow(owner, dsl or unique_hello())
    version, _ = services.publish_flow(flow)
    plan_cache.forget(version.document_id)
    return version.document_id


def counts() -> dict[str, int]:
    return cache_stats()


def delta(before: dict, name: str) -> int:
    return cache_stats()[name] - before[name]


def l2_value(digest: str) -> dict | None:
    """What L2 holds for a plan, as the cache gives it back."""
    return caches["default"].get(plan_cache.l2_key(digest))


def redis_raw(digest: str) -> bytes | None:
    """The bytes Redis holds for a plan."""
    from django_redis import get_redis_connection

    key = caches["default"].make_key(plan_cache.l2_key(digest))
    return get_redis_connection("default").get(key)


# --- The tiers ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_l1_hit_touches_neither_the_shared_cache_nor_the_database(owner, monkeypatch):
    digest = stored(owner)
    first = plan_cache.get(digest)

    def no_shared_cache():
        raise AssertionError("L1 hits must not reach the shared cache")

    monkeypatch.setattr("flows.cache.shared_cache", no_shared_cache)
    before = counts()
    with queries() as statements:
        again = plan_cache.get(digest)
    assert statements == []
    assert again is first
    assert delta(before, "plan.l1.hit") == 1


@pytest.mark.django_db
def test_an_l2_hit_after_clearing_l1_runs_no_query(owner):
    digest = stored(owner)
    plan_cache.get(digest)  # L3 → fills L2
    plan_cache.clear_l1()
    before = counts()
    with queries() as statements:
        plan = plan_cache.get(digest)
    assert statements == []
    assert delta(before, "plan.l2.hit") == 1 and delta(before, "plan.l3.hit") == 0
    assert plan.digest == digest
    assert digest in plan_cache.l1  # and L1 has it again


@pytest.mark.django_db
def test_l3_after_clearing_l1_and_l2_is_one_query_and_fills_l2(owner):
    digest = stored(owner)
    assert l2_value(digest) is None
    before = counts()
    with queries() as statements:
        plan = plan_cache.get(digest)
    assert len(statements) == 1 and "flows_document" in statements[0]
    assert '"dsl"' not in statements[0]  # the plan column only, never the document
    assert delta(before, "plan.l3.hit") == 1 and delta(before, "plan.compile") == 0
    assert Plan.from_dict(l2_value(digest)).to_dict() == plan.to_dict()


@pytest.mark.django_db
def test_nothing_cached_compiles_and_stores_back_to_l3_and_l2(owner):
    digest = stored(owner)
    Document.objects.filter(hash=digest).update(plan=None)
    before = counts()
    plan = plan_cache.get(digest)
    assert delta(before, "plan.compile") == 1 and delta(before, "plan.l3.miss") == 1
    assert Document.objects.get(hash=digest).plan == plan.to_dict()
    assert l2_value(digest) is not None
    plan_cache.clear_l1()
    assert plan_cache.get(digest).to_dict() == plan.to_dict()
    assert delta(before, "plan.compile") == 1  # from L2 this time


@pytest.mark.django_db
def test_an_unknown_document_is_refused(db):
    with pytest.raises(Document.DoesNotExist):
        plan_cache.get("sha256:" + "0" * 64)


@pytest.mark.django_db
def test_plan_for_takes_a_row_or_a_hash_and_never_loads_a_deferred_column(owner):
    digest = stored(owner)
    row = Document.objects.only("hash").get(hash=digest)
    with queries() as statements:
        by_row = plan_for(row)  # L3: one query for the plan column, not the deferred load
    assert len(statements) == 1 and '"dsl"' not in statements[0]
    assert plan_for(digest) is by_row


def test_stored_plans_round_trip_through_redis_serializer_as_through_json():
    serializer = MSGPackSerializer(options={})  # what django-redis stores L2 values with
    for name in ("hello", "approval", "batch", "fanout", "greet-team", "resilient", "router"):
        plan = compile_plan(factories.sample(name))
        packed = serializer.dumps(plan.to_dict())
        assert (Plan.from_dict(serializer.loads(packed)).to_dict()
                == Plan.from_dict(plan.to_dict()).to_dict())


# --- What L2 holds ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_l2_holds_the_plan_as_plain_data(owner):
    """Only the plan's data (no Python object) goes to the shared cache."""
    digest = stored(owner)
    plan = plan_cache.get(digest)
    value = l2_value(digest)
    assert isinstance(value, dict) and value["digest"] == digest
    assert msgpack.unpackb(msgpack.packb(value), raw=False) == value
    assert Plan.from_dict(value).to_dict() == plan.to_dict()


@pytest.mark.skipif(not REDIS, reason="needs REDIS_URL")
@pytest.mark.django_db
def test_in_redis_the_raw_value_is_the_messagepack_of_the_plan_never_a_pickle(owner):
    digest = stored(owner)
    plan = plan_cache.get(digest)
    raw = redis_raw(digest)
    assert isinstance(raw, bytes)
    assert not raw.startswith(b"\x80")  # every pickle protocol ≥ 2 starts so
    assert msgpack.unpackb(raw, raw=False) == plan.to_dict()


@pytest.mark.django_db
def test_expiries_carry_jitter(owner):
    ttls = [jittered(L2_TTL_S) for _ in range(50)]
    assert len({round(t, 3) for t in ttls}) > 40
    assert all(L2_TTL_S * (1 - JITTER) <= t <= L2_TTL_S * (1 + JITTER) for t in ttls)

    digests = [stored(owner) for _ in range(4)]
    for digest in digests:
        plan_cache.get(digest)  # L3 → L2 with its TTL
    cache = caches["default"]
    if REDIS:
        from django_redis import get_redis_connection

        client = get_redis_connection("default")
        stored_ttls = [client.pttl(cache.make_key(plan_cache.l2_key(d))) / 1000 for d in digests]
    else:
        now = time.time()
        stored_ttls = [cache._expire_info[cache.make_key(plan_cache.l2_key(d))] - now
                       for d in digests]
    assert len({round(t, 1) for t in stored_ttls}) > 1, stored_ttls
    assert all(L2_TTL_S * (1 - JITTER) - 5 <= t <= L2_TTL_S * (1 + JITTER) for t in stored_ttls)


# --- Single flight --------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_twenty_threads_on_a_cold_key_compile_once(owner):
    digest = stored(owner, chain(300))  # ~70 ms to compile: the threads meet in the middle
    Document.objects.filter(hash=digest).update(plan=None)
    before = counts()
    barrier = threading.Barrier(20)
    plans: list[Plan] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            barrier.wait()
            plans.append(plan_cache.get(digest))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(plans) == 20
    assert delta(before, "plan.compile") == 1
    assert all(plan is plans[0] for plan in plans)
    assert delta(before, "plan.single_flight.wait") >= 1  # they did meet
    assert delta(before, "plan.l1.miss") == 1  # the others took the plan it stored
    assert delta(before, "plan.l1.hit") == 19


# --- Redis down -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_with_redis_down_runs_start_on_l1_and_l3_with_one_warning_then_l2_again(
        owner, api, caplog, monkeypatch):
    warm = services.create_flow(owner, unique_hello(), slug="warm")
    services.publish_flow(warm)  # its plan is in L1
    cold_digest = stored(owner)  # L3 only
    cold = services.create_flow(owner, unique_hello(), slug="cold")
    services.publish_flow(cold)
    plan_cache.forget(cold.versions.get().document_id)
    monkeypatch.setattr(redis_breaker, "retry_s", 0.2)
    caplog.set_level(logging.WARNING, logger="flows.cache")

    with override_settings(CACHES=DEAD_REDIS):
        before = counts()
        started = time.perf_counter()
        for slug in ("warm", "cold", "warm", "cold"):
            response = api.post(f"/api/flows/{slug}/runs/", {"inputs": {"name": "Ada"}})
            assert response.status_code == 201, response.content
        assert time.perf_counter() - started < 5
        assert plan_cache.get(cold_digest).digest == cold_digest  # from L3
        assert factories.assert_error(api.get("/api/flows/no-such-flow/"), 404, "not_found")
        assert delta(before, "redis.error") >= 1
        assert cache_stats()["redis.available"] is False
        warnings = [r for r in caplog.records if "Redis is unavailable" in r.getMessage()]
        assert len(warnings) == 1  # one per period, however many calls failed

    # Redis is back (here: the settings point at a live cache again).
    time.sleep(0.25)
    plan_cache.clear_l1()
    plan_cache.forget(cold_digest)
    plan_cache.get(cold_digest)  # L3, and stored in L2 again
    plan_cache.clear_l1()
    before = counts()
    with queries() as statements:
        plan_cache.get(cold_digest)
    assert statements == [] and delta(before, "plan.l2.hit") == 1
    if REDIS:
        assert cache_stats()["redis.available"] is True
        assert any("Redis is back" in r.getMessage() for r in caplog.records)


@pytest.mark.django_db
def test_the_breaker_spares_a_dead_redis_between_retries(owner, monkeypatch):
    digest = stored(owner)
    monkeypatch.setattr(redis_breaker, "retry_s", 60)
    with override_settings(CACHES=DEAD_REDIS):
        plan_cache.clear_l1()
        plan_cache.get(digest)
        errors = cache_stats()["redis.error"]
        for _ in range(20):
            plan_cache.clear_l1()
            plan_cache.get(digest)  # L3 each time; Redis not tried again
        assert cache_stats()["redis.error"] == errors


# --- Drafts, the size of L1, the counters ------------------------------------------------------


@pytest.mark.django_db
def test_a_draft_run_compiles_its_document_once_and_stores_it_with_the_run(owner):
    dsl = unique_hello()
    flow = services.create_flow(owner, dsl)
    digest = document_digest(dsl)
    before = counts()
    run = factories.run(owner, flow, version="draft")
    assert run.document_id == digest
    assert Document.objects.get(hash=digest).plan == plan_cache.get(digest).to_dict()
    factories.run(owner, flow, version="draft")
    assert delta(before, "plan.compile") == 1


@pytest.mark.django_db
def test_process_memory_keeps_at_most_its_size_dropping_the_least_recently_used():
    from flows.cache import PlanCache

    cache = PlanCache(l1_size=2)
    digests = []
    for _ in range(3):
        dsl = unique_hello()
        digests.append(document_digest(dsl))
        cache.get(digests[-1], dsl=dsl)
        if len(digests) == 2:
            cache.get(digests[0])  # the first is used again: the second is now the oldest

    assert len(cache.l1) == 2
    assert cache.l1.get(digests[1]) is None
    assert cache.l1.get(digests[0]) is not None and cache.l1.get(digests[2]) is not None


@pytest.mark.django_db
def test_cache_stats_has_every_counter_and_the_l1_s_own_figures(owner):
    digest = stored(owner)
    before = counts()
    plan_cache.get(digest)
    plan_cache.get(digest)
    after = counts()
    for name in ("plan.l1.hit", "plan.l1.miss", "plan.l2.hit", "plan.l2.miss", "plan.l3.hit",
                 "plan.l3.miss", "plan.compile", "plan.single_flight.wait", "flows.absent",
                 "flows.deleted", "versions.hit", "versions.miss", "redis.error"):
        assert isinstance(after[name], int), name
    assert after["plan.l1.hit"] - before["plan.l1.hit"] == 1
    assert after["plan.l1.miss"] - before["plan.l1.miss"] == 1
    assert after["plan.l1.size"] == len(plan_cache.l1) >= 1
    assert after["redis.available"] is True
    plan_cache.clear_l1()  # clearing L1 does not take back what was counted
    assert counts()["plan.l1.hit"] == after["plan.l1.hit"]
