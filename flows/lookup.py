"""Flow lookups that stop before the database (docs/platform.md, Caching).

`flow_index.might_exist(owner_id, slug)` answers False only for an (owner, slug) pair that
no flow has (deleted flows included), so `flow_of` answers 404 to it without a query: a
flood of requests for random slugs never reaches the database. It is a Bloom filter of the
pairs of the flow table (no false negatives; false positives, about one in a million at
100,000 flows, cost the query they would have cost anyway):

- with Redis, the filter lives in Redis, shared by every process: built from the table by
  the first process that needs it (under a lock), its bits OR-ed in so that a flow created
  meanwhile is never lost, rebuilt when it expires (hourly, with jitter); every new flow sets
  its bits there at once and again when its transaction commits. Each process keeps a local
  filter of the pairs it saw exist, so that known flows cost no Redis round trip. While Redis
  is down, lookups the local filter does not know go to the database, and flows created
  meanwhile are sent to the shared filter when Redis answers again.
- without Redis (embedded: one serving process), the local filter is the whole filter:
  built from the table on first use, and every flow created in this process is added at
  once. Before it answers "no such flow", it reads the flows added to the table since it
  last looked (one range of the primary key, at most every NEW_FLOWS_CHECK_S), so a flow
  created by another process (`manage.py demo`, a second server) is found within seconds;
  it is also rebuilt every few minutes.

A flow is added by a `post_save` signal, so every way of creating one (services, admin,
tests) keeps the filter right. A deleted flow stays deleted (its slug stays taken), so
`flow_of` remembers deleted pairs in process memory and answers them without a query too.

`version_map` maps (flow, version number) to the version's id and document hash: versions
are frozen, so it never needs invalidating either.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
import time
from typing import Any

from django.db import connections, transaction
from django.db.models.signals import post_save

from flows.cache import (
    LRU,
    SHARED_ERRORS,
    jittered,
    redis_breaker,
    redis_client,
    shared_cache,
    stats,
)
from flows.models import Flow, FlowVersion

logger = logging.getLogger(__name__)

BLOOM_BITS = 1 << 23  # 1 MiB: ~1e-6 false positives at 100,000 flows, ~2 % at a million
BLOOM_HASHES = 7
SHARED_TTL_S = 3600.0  # the shared filter is rebuilt from the table this often (± jitter)
LOCAL_REFRESH_S = 300.0  # without Redis: the local filter is rebuilt this often (± jitter)
NEW_FLOWS_CHECK_S = 2.0  # without Redis: flows added elsewhere are read at most this often
# Ids are handed out before commit: a flow with a lower id than the last one read may commit
# later (PostgreSQL, concurrent creations). Rereading this many ids back catches those.
NEW_FLOWS_OVERLAP = 64
BUILD_LOCK_S = 120.0
DELETED_LIMIT = 10_000
VERSIONS_LIMIT = 4096
BUILD_BATCH = 10_000
MISSED_LIMIT = 10_000  # flows created while Redis was down, remembered to be sent again


_EXPIRE_IF_PERSISTENT = (
    "if redis.call('pttl', KEYS[1]) == -1 then redis.call('pexpire', KEYS[1], ARGV[1]) end")


def _namespace() -> str:
    """The database's identity: flow ids and slugs only mean something within one."""
    settings = connections["default"].settings_dict
    return hashlib.blake2b(
        f"{settings['ENGINE']}|{settings.get('HOST')}|{settings.get('PORT')}|{settings['NAME']}"
        .encode(), digest_size=6).hexdigest()


def positions(owner_id: Any, slug: str) -> tuple[int, ...]:
    """The filter's bits for a pair (bit 0 is reserved: "this filter is complete")."""
    digest = hashlib.blake2b(f"{owner_id}\x00{slug}".encode(), digest_size=16).digest()
    h1 = int.from_bytes(digest[:8], "little")
    h2 = int.from_bytes(digest[8:], "little") | 1
    span = BLOOM_BITS - 1
    return tuple(1 + (h1 + i * h2) % span for i in range(BLOOM_HASHES))


class Bits:
    """A Bloom filter's bit array (only ever grows: OR semantics)."""

    def __init__(self) -> None:
        self.bytes = bytearray(BLOOM_BITS // 8)
        self._lock = threading.Lock()  # writers only: a merge must not lose a bit set meanwhile

    def add(self, bits: tuple[int, ...]) -> None:
        data = self.bytes
        with self._lock:
            for bit in bits:
                data[bit >> 3] |= 0x80 >> (bit & 7)  # Redis's bit order: bit 0 is the MSB

    def has(self, bits: tuple[int, ...]) -> bool:
        data = self.bytes
        return all(data[bit >> 3] & (0x80 >> (bit & 7)) for bit in bits)

    def merge(self, other: Bits) -> None:
        with self._lock:
            merged = int.from_bytes(self.bytes, "big") | int.from_bytes(other.bytes, "big")
            self.bytes[:] = merged.to_bytes(len(self.bytes), "big")


class _Local:
    """What this process knows about one database's flows."""

    def __init__(self) -> None:
        self.bits = Bits()
        self.complete = False  # built from the table (only relied upon without Redis)
        self.refresh_at = 0.0
        self.last_id = 0  # the highest flow id read from the table
        self.new_checked_at = float("-inf")
        self.building = threading.Lock()
        self.deleted = LRU(DELETED_LIMIT)


class FlowIndex:
    def __init__(self) -> None:
        self._locals: dict[str, _Local] = {}
        self._guard = threading.Lock()
        # New flows whose bits could not reach Redis, by database: sent again as soon as
        # Redis answers (redis_breaker.on_recovery); too many, and the shared filter is
        # dropped instead (the next lookup rebuilds it from the table).
        self._missed: dict[str, list[tuple[Any, str]]] = {}
        self._missed_lock = threading.Lock()

    def _local(self, namespace: str) -> _Local:
        local = self._locals.get(namespace)
        if local is None:
            with self._guard:
                local = self._locals.setdefault(namespace, _Local())
        return local

    @staticmethod
    def _shared_key(cache: Any, namespace: str) -> str:
        return cache.make_key(f"flows:bloom:{namespace}:{BLOOM_BITS}:{BLOOM_HASHES}")

    # -- lookups --------------------------------------------------------------------------------

    def might_exist(self, owner_id: Any, slug: str) -> bool:
        """False only when no flow (deleted ones included) has this owner and slug."""
        namespace = _namespace()
        local = self._local(namespace)
        bits = positions(owner_id, slug)
        if local.bits.has(bits):
            stats.incr("flows.bloom.local")
            return True
        cache = shared_cache()
        client = redis_client(cache)
        if client is None:
            if not local.complete or time.monotonic() >= local.refresh_at:
                self._build_local(local)
            if not local.complete:
                stats.incr("flows.bloom.unknown")
                return True  # being built by another thread: ask the database
            if local.bits.has(bits) or (self._read_new_flows(local) and local.bits.has(bits)):
                stats.incr("flows.bloom.local")
                return True
            stats.incr("flows.bloom.absent")
            return False
        answer = self._ask_shared(cache, client, namespace, local, bits)
        if answer is None:
            stats.incr("flows.bloom.unknown")
            return True
        if answer:
            local.bits.add(bits)  # known from now on: no round trip next time
            stats.incr("flows.bloom.shared")
            return True
        stats.incr("flows.bloom.absent")
        return False

    def _ask_shared(self, cache: Any, client: Any, namespace: str, local: _Local,
                    bits: tuple[int, ...]) -> bool | None:
        """The shared filter's answer; None when it cannot tell (Redis down, being built)."""
        if not redis_breaker.allow():
            return None
        key = self._shared_key(cache, namespace)
        args: list[Any] = ["GET", "u1", 0]
        for bit in bits:
            args += ["GET", "u1", bit]
        try:
            found = client.execute_command("BITFIELD", key, *args)
            if redis_breaker.succeeded():  # Redis is back: flows made meanwhile were sent again
                found = client.execute_command("BITFIELD", key, *args)
        except SHARED_ERRORS as error:
            redis_breaker.failed(error, "looking up a flow")
            return None
        if found[0]:
            return all(found[1:])
        # Missing, expired or not complete: build it (one process does, under a lock). This
        # lookup still goes to the database: a flow created during the build is certain to
        # be in the shared filter, not in what this process read from the table.
        built = self._build_shared(cache, client, namespace, local)
        return True if built is not None and built.has(bits) else None

    def known_deleted(self, owner_id: Any, slug: str) -> bool:
        known = self._local(_namespace()).deleted.get((owner_id, slug)) is not None
        if known:
            stats.incr("flows.deleted.hit")
        return known

    def note_deleted(self, owner_id: Any, slug: str) -> None:
        self._local(_namespace()).deleted.put((owner_id, slug), True)

    # -- changes --------------------------------------------------------------------------------

    def add(self, owner_id: Any, slug: str) -> None:
        """A flow exists now: set its bits here and in the shared filter."""
        namespace = _namespace()
        local = self._local(namespace)
        bits = positions(owner_id, slug)
        local.bits.add(bits)
        local.deleted.pop((owner_id, slug))
        cache = shared_cache()
        client = redis_client(cache)
        if client is None:
            return
        if not redis_breaker.allow():
            self._miss(namespace, owner_id, slug)
            return
        try:
            self._send(client, self._shared_key(cache, namespace), [bits])
        except SHARED_ERRORS as error:
            self._miss(namespace, owner_id, slug)
            redis_breaker.failed(error, "adding a flow to the lookup filter")
            return
        redis_breaker.succeeded()

    @staticmethod
    def _send(client: Any, key: str, pairs_bits: list[tuple[int, ...]]) -> None:
        pipe = client.pipeline(transaction=False)
        for bits in pairs_bits:
            for bit in bits:
                pipe.setbit(key, bit, 1)
        # A key these bits created (no filter there yet) must not live for ever.
        pipe.eval(_EXPIRE_IF_PERSISTENT, 1, key, int(jittered(SHARED_TTL_S) * 1000))
        pipe.execute()

    def _miss(self, namespace: str, owner_id: Any, slug: str) -> None:
        with self._missed_lock:
            pairs = self._missed.setdefault(namespace, [])
            if len(pairs) <= MISSED_LIMIT:  # beyond: the filter is dropped on recovery
                pairs.append((owner_id, slug))

    def catch_up(self) -> None:
        """Send the bits of flows created while Redis was down (on Redis's recovery)."""
        with self._missed_lock:
            missed, self._missed = self._missed, {}
        if not missed:
            return
        cache = shared_cache()
        client = redis_client(cache)
        if client is None:
            return
        for namespace, pairs in missed.items():
            key = self._shared_key(cache, namespace)
            try:
                if len(pairs) > MISSED_LIMIT:
                    client.delete(key)  # rebuilt from the table by the next lookup
                else:
                    self._send(client, key, [positions(*pair) for pair in pairs])
            except SHARED_ERRORS as error:
                for pair in pairs:
                    self._miss(namespace, *pair)
                redis_breaker.failed(error, "catching up with the flow lookup filter")
                return

    def forget_deleted(self, owner_id: Any, slug: str) -> None:
        self._local(_namespace()).deleted.pop((owner_id, slug))

    # -- building -------------------------------------------------------------------------------

    @staticmethod
    def _from_table(into: Bits | None = None, after_id: int = 0) -> tuple[Bits, int]:
        """The bits of the flows with an id above `after_id` (set in `into`, else in a new
        filter), and the highest id read."""
        built, last_id = into if into is not None else Bits(), after_id
        rows = Flow.objects.filter(pk__gt=after_id).values_list("pk", "owner_id", "slug")
        for pk, owner_id, slug in rows.order_by().iterator(chunk_size=BUILD_BATCH):
            built.add(positions(owner_id, slug))
            last_id = max(last_id, pk)
        return built, last_id

    def _read_new_flows(self, local: _Local) -> bool:
        """Add the flows created since the table was last read (by any process); False when
        it was read too recently to look again."""
        now = time.monotonic()
        if now - local.new_checked_at < NEW_FLOWS_CHECK_S:
            return False
        local.new_checked_at = now
        _, last_id = self._from_table(local.bits, max(local.last_id - NEW_FLOWS_OVERLAP, 0))
        local.last_id = max(local.last_id, last_id)
        stats.incr("flows.bloom.new_read")
        return True

    def _build_local(self, local: _Local) -> None:
        if not local.building.acquire(blocking=False):
            return
        try:
            built, last_id = self._from_table()
            local.last_id = max(local.last_id, last_id)
            local.new_checked_at = time.monotonic()
            local.bits.merge(built)  # OR: a flow added while the table was read stays in
            local.complete = True
            local.refresh_at = time.monotonic() + jittered(LOCAL_REFRESH_S)
            stats.incr("flows.bloom.build")
        finally:
            local.building.release()

    def _build_shared(self, cache: Any, client: Any, namespace: str,
                      local: _Local) -> Bits | None:
        """Build the shared filter from the table; None when another process is at it."""
        key = self._shared_key(cache, namespace)
        try:
            lock = client.lock(f"{key}:build", timeout=BUILD_LOCK_S)
            if not lock.acquire(blocking=False):
                return None
        except SHARED_ERRORS as error:
            redis_breaker.failed(error, "locking the flow lookup filter")
            return None
        try:
            built, _ = self._from_table()
            scratch = f"{key}:scratch"
            pipe = client.pipeline(transaction=True)
            pipe.set(scratch, bytes(built.bytes), px=int(BUILD_LOCK_S * 1000))
            pipe.bitop("OR", key, key, scratch)  # bits set meanwhile by new flows stay set
            pipe.setbit(key, 0, 1)  # complete
            pipe.pexpire(key, int(jittered(SHARED_TTL_S) * 1000))
            pipe.delete(scratch)
            pipe.execute()
            local.bits.merge(built)
            stats.incr("flows.bloom.build")
            return built
        except SHARED_ERRORS as error:
            redis_breaker.failed(error, "building the flow lookup filter")
            return None
        finally:
            with contextlib.suppress(Exception):  # expired, or Redis gone: it frees itself
                lock.release()

    def rebuild(self) -> None:
        """Build the filter from the table now (warm_cache, tests, benchmarks)."""
        namespace = _namespace()
        local = self._local(namespace)
        cache = shared_cache()
        client = redis_client(cache)
        if client is None:
            local.refresh_at = 0.0
            self._build_local(local)
            return
        if redis_breaker.allow() and self._drop_shared(cache, client, namespace):
            with self._missed_lock:
                self._missed.pop(namespace, None)
            self._build_shared(cache, client, namespace, local)

    def _drop_shared(self, cache: Any, client: Any, namespace: str) -> bool:
        try:
            client.delete(self._shared_key(cache, namespace))
        except SHARED_ERRORS as error:
            redis_breaker.failed(error, "dropping the flow lookup filter")
            return False
        return True

    def clear_local(self) -> None:
        """Forget what this process knows (tests, benchmarks: a process that just started)."""
        with self._guard:
            self._locals.clear()


flow_index = FlowIndex()
redis_breaker.on_recovery.append(flow_index.catch_up)


class VersionMap:
    """(flow, version number) → (version id, document hash), in process memory.

    Versions are frozen; the key carries the flow's creation time besides its id, so that a
    database emptied and filled again (tests) never meets a stale entry.
    """

    def __init__(self) -> None:
        self._known = LRU(VERSIONS_LIMIT)

    def resolve(self, flow: Flow, number: int) -> tuple[int, str] | None:
        created = flow.__dict__.get("created_at")
        key = (_namespace(), flow.pk, created, number) if created is not None else None
        found = self._known.get(key) if key is not None else None
        if found is not None:
            stats.incr("versions.hit")
            return found
        stats.incr("versions.miss")
        found = (FlowVersion.objects.filter(flow_id=flow.pk, number=number)
                 .values_list("id", "document_id").first())
        if found is not None and key is not None:
            self._known.put(key, tuple(found))
        return tuple(found) if found is not None else None

    def prime(self, flow_id: int, created_at: Any, number: int, version_id: int,
              digest: str) -> None:
        self._known.put((_namespace(), flow_id, created_at, number), (version_id, digest))

    def clear(self) -> None:
        self._known.clear()


version_map = VersionMap()


def _flow_saved(sender: Any, instance: Flow, created: bool, update_fields: Any = None,
                **kwargs: Any) -> None:
    loaded = instance.__dict__
    owner_id, slug = loaded.get("owner_id"), loaded.get("slug")
    if owner_id is None or slug is None:
        return  # a partial save of a partly loaded row: neither changed
    if not created:
        if loaded.get("deleted_at", True) is None:
            flow_index.forget_deleted(owner_id, slug)  # a deleted flow restored (admin, shell)
        if update_fields is None or {"owner", "slug"} & set(update_fields):
            flow_index.add(owner_id, slug)  # a whole-row save may have renamed it (shell)
        return
    flow_index.add(owner_id, slug)
    # Again once it commits: a shared filter built from the table meanwhile (which did not see
    # the uncommitted row) gets its bits too.
    transaction.on_commit(lambda: flow_index.add(owner_id, slug))


post_save.connect(_flow_saved, sender=Flow, dispatch_uid="flows.lookup.flow_saved")
