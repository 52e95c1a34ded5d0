"""Preload the plan cache: the plans of published versions into L2 (Redis, for every
process) and this process's L1, compiling (and storing in L3) any plan never compiled."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db.models import F
from django_redis.cache import RedisCache

from flows.cache import cache_stats, plan_cache, shared_cache
from flows.lookup import version_map
from flows.models import FlowVersion


class Command(BaseCommand):
    help = ("Preload the compiled plans of published versions (the latest of each flow, or "
            "every version with --all) into the shared cache and this process's memory.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--all", action="store_true", dest="all_versions",
                            help="every version of every flow, not only the latest ones")

    def handle(self, *args: Any, all_versions: bool, **options: Any) -> None:
        self.stdout.write(warm(all_versions))


def warm(all_versions: bool = False) -> str:
    """Warm the caches; a line saying what was done."""
    versions = FlowVersion.objects.order_by()
    if not all_versions:
        versions = versions.filter(flow__deleted_at__isnull=True,
                                   number=F("flow__published_version"))
    rows = list(versions.values_list("id", "number", "document_id", "flow_id",
                                     "flow__created_at"))
    before = cache_stats()
    digests: set[str] = set()
    for version_id, number, digest, flow_id, created_at in rows:
        version_map.prime(flow_id, created_at, number, version_id, digest)
        if digest not in digests:
            digests.add(digest)
            plan_cache.warm(digest)
    after = cache_stats()

    def delta(name: str) -> int:
        return after.get(name, 0) - before.get(name, 0)

    shared = "Redis" if isinstance(shared_cache(), RedisCache) else "the in-process cache"
    what = "versions" if all_versions else "published versions (latest of each flow)"
    return (f"Warmed {len(digests)} plan{'s' if len(digests) != 1 else ''} of {len(rows)} "
            f"{what} into {shared} and memory: {delta('plan.l1.hit')} already in memory, "
            f"{delta('plan.l2.hit')} from the shared cache, {delta('plan.l3.hit')} from the "
            f"database, {delta('plan.compile')} compiled.")
