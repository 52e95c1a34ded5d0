"""`manage.py warm_cache`: published plans into L2 and L1."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from flows import services
from flows.cache import cache_stats, plan_cache
from flows.lookup import version_map
from flows.models import Document

from .cache_helpers import queries, slot_check, tables, unique_hello


def warm(*args: str) -> str:
    out = io.StringIO()
    call_command("warm_cache", *args, stdout=out)
    return out.getvalue()


def two_versions(owner, slug: str) -> tuple[str, str]:
    """A flow published twice; the hashes of its versions 1 and 2."""
    flow = services.create_flow(owner, unique_hello(), slug=slug)
    first, _ = services.publish_flow(flow)
    services.update_flow(flow, unique_hello())
    second, _ = services.publish_flow(flow)
    return first.document_id, second.document_id


def cold(*digests: str) -> None:
    """As if nothing were cached: not in L1, not in L2, not compiled in L3."""
    plan_cache.clear_l1()
    version_map.clear()
    for digest in digests:
        plan_cache.forget(digest)
    Document.objects.filter(hash__in=digests).update(plan=None)


@pytest.mark.django_db
def test_warm_cache_preloads_the_latest_published_versions(owner, api):
    old_a, new_a = two_versions(owner, "alpha")
    old_b, new_b = two_versions(owner, "beta")
    draft_only = services.create_flow(owner, unique_hello(), slug="gamma")
    deleted = services.create_flow(owner, unique_hello(), slug="delta")
    gone, _ = services.publish_flow(deleted)
    services.delete_flow(deleted)
    cold(old_a, new_a, old_b, new_b, gone.document_id)
    before = cache_stats()

    out = warm()

    assert "Warmed 2 plans of 2 published versions" in out
    assert "2 compiled" in out
    assert cache_stats()["plan.compile"] - before["plan.compile"] == 2
    assert new_a in plan_cache.l1 and new_b in plan_cache.l1
    assert old_a not in plan_cache.l1 and gone.document_id not in plan_cache.l1
    assert Document.objects.get(hash=new_a).plan is not None  # compiled into L3 too
    plan_cache.clear_l1()  # another process: L2 has them
    assert plan_cache._l2_get(new_a) is not None and plan_cache._l2_get(new_b) is not None
    assert draft_only.published_version is None

    # A run of a warmed version: its version and plan are known, no query for either.
    api.get("/api/flows/alpha/")  # the key's last use is recorded (once a minute)
    plan_cache.get(new_a)
    with queries() as statements:
        assert api.post("/api/flows/alpha/runs/", {"inputs": {"name": "Ada"}}).status_code == 201
    assert tables(statements) == ["flows_apitoken", "flows_flow", *slot_check(), "flows_run"]


@pytest.mark.django_db
def test_warm_cache_all_takes_every_version(owner):
    digests = [*two_versions(owner, "alpha"), *two_versions(owner, "beta")]
    cold(*digests)
    out = warm("--all")
    assert "Warmed 4 plans of 4 versions" in out and "4 compiled" in out
    assert all(digest in plan_cache.l1 for digest in digests)
    again = warm("--all")  # everything is there now: nothing compiled
    assert "4 already in memory" in again and "0 compiled" in again


@pytest.mark.django_db
def test_warm_cache_with_nothing_published(db):
    assert "Warmed 0 plans of 0 published versions" in warm()
