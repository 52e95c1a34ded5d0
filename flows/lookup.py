"""Flow lookups that spare the database what it just answered (docs/platform.md, Caching).

A lookup that finds no flow for an (owner, slug) pair, or only a deleted one, leaves a
negative entry in Django's cache (Redis when `REDIS_URL` is set, so every process sees it)
for MISSING_TTL_S: the same pair asked again within that time is a 404 without a query, so a
client asking again and again for a slug that is not there does not reach the database. A new
flow deletes the entry of its pair (a `post_save` signal, so every way of creating one keeps
it right; again when its transaction commits, for a lookup that ran meanwhile). A flow whose
creation does not reach the cache this process reads (made by another process without Redis,
or written behind Django's back) is found once the entry expires.

`version_map` maps (flow, version number) to the version's id and document hash: versions
are frozen, so it never needs invalidating.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Any

from cachetools import LRUCache
from django.db import connections, transaction
from django.db.models.signals import post_save

from flows.cache import shared_cache, shared_call, stats
from flows.models import Flow, FlowVersion

# Short, because it is how late a flow whose creation could not delete the entry is found;
# a client asking again and again still reaches the database once per period at most.
MISSING_TTL_S = 2.0
VERSIONS_LIMIT = 4096

ABSENT = "absent"
DELETED = "deleted"


def _namespace() -> str:
    """The database's identity: flow ids and slugs only mean something within one."""
    settings = connections["default"].settings_dict
    return hashlib.blake2b(
        f"{settings['ENGINE']}|{settings.get('HOST')}|{settings.get('PORT')}|{settings['NAME']}"
        .encode(), digest_size=6).hexdigest()


def missing_key(owner_id: Any, slug: str) -> str:
    return f"flows:missing:{_namespace()}:{owner_id}:{slug}"


def known_missing(owner_id: Any, slug: str, include_deleted: bool = False) -> bool:
    """True when a lookup of the last MISSING_TTL_S found no such flow (or, unless
    `include_deleted`, only a deleted one): a 404 that needs no query."""
    entry = shared_call("looking up a flow", shared_cache().get, missing_key(owner_id, slug))
    if entry == ABSENT or (entry == DELETED and not include_deleted):
        stats.incr(f"flows.{entry}")  # a 404 without a query
        return True
    return False


def note_missing(owner_id: Any, slug: str, deleted: bool = False) -> None:
    """A lookup found no such flow (`deleted`: only a deleted one)."""
    shared_call("remembering a missing flow", shared_cache().set, missing_key(owner_id, slug),
                DELETED if deleted else ABSENT, MISSING_TTL_S)


def forget_missing(owner_id: Any, slug: str) -> None:
    shared_call("forgetting a missing flow", shared_cache().delete, missing_key(owner_id, slug))


def _flow_saved(sender: Any, instance: Flow, created: bool, update_fields: Any = None,
                **kwargs: Any) -> None:
    loaded = instance.__dict__
    owner_id, slug = loaded.get("owner_id"), loaded.get("slug")
    if owner_id is None or slug is None:
        return  # a partial save of a partly loaded row: neither changed
    if created:
        forget_missing(owner_id, slug)
        transaction.on_commit(lambda: forget_missing(owner_id, slug))
    elif update_fields is None or {"owner", "slug", "deleted_at"} & set(update_fields):
        forget_missing(owner_id, slug)  # it may be renamed (the shell) or restored (the admin)


post_save.connect(_flow_saved, sender=Flow, dispatch_uid="flows.lookup.flow_saved")


class VersionMap:
    """(flow, version number) → (version id, document hash), in process memory.

    Versions are frozen; the key carries the flow's creation time besides its id, so that a
    database emptied and filled again (tests) never meets a stale entry.
    """

    def __init__(self) -> None:
        self._known: LRUCache[tuple[Any, ...], tuple[int, str]] = LRUCache(VERSIONS_LIMIT)
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe by themselves

    def resolve(self, flow: Flow, number: int) -> tuple[int, str] | None:
        created = flow.__dict__.get("created_at")
        key = (_namespace(), flow.pk, created, number) if created is not None else None
        with self._lock:
            found = self._known.get(key) if key is not None else None
        if found is not None:
            stats.incr("versions.hit")
            return found
        stats.incr("versions.miss")
        row = (FlowVersion.objects.filter(flow_id=flow.pk, number=number)
               .values_list("id", "document_id").first())
        if row is None:
            return None
        if key is not None:
            with self._lock:
                self._known[key] = tuple(row)
        return tuple(row)

    def prime(self, flow_id: int, created_at: Any, number: int, version_id: int,
              digest: str) -> None:
        with self._lock:
            self._known[(_namespace(), flow_id, created_at, number)] = (version_id, digest)

    def clear(self) -> None:
        with self._lock:
            self._known.clear()


version_map = VersionMap()
