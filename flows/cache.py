"""The tiered cache of compiled plans (docs/platform.md, Caching).

A plan is a pure function of its document, and documents are stored by content hash, so a
plan is keyed by that hash and never needs invalidating:

- L1: a bounded, thread-safe LRU of `Plan` objects in this process;
- L2: `caches["default"]`: Redis through django-redis when `REDIS_URL` is set (the raw
  MessagePack of `plan.to_dict()`, never a pickle), else Django's in-process cache;
- L3: the `Document.plan` column;
- and when all miss, the document is compiled and stored back to L3 and L2.

Concurrent misses of one key compute once per process (single flight) and, across
processes, once per Redis lock: the others poll L2 for a short while. L2 expiries carry
random jitter. When Redis fails, a circuit breaker (`redis_breaker`) logs one warning per
period, the cache carries on with L1 and L3, and tries Redis again a few seconds later.

Counters per tier are in `cache_stats()`; `set_metrics_hook(fn)` has `fn(name, n)` called on
every count, for the metrics helper.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

import msgpack
from django.core.cache import caches
from redis.exceptions import LockError, RedisError

from engine import Plan, compile_plan
from engine.plan import PLAN_FORMAT
from flows.models import Document

logger = logging.getLogger(__name__)

L1_SIZE = 512  # plans kept in each process (a plan of a 10-node flow is a few KiB)
L2_TTL_S = 3600.0  # ± JITTER: hot keys written together do not all expire together
JITTER = 0.10
LOCK_TTL_S = 10.0  # a lock whose holder died frees itself after this
LOCK_WAIT_S = 2.0  # how long other processes wait for the lock holder's L2 write
LOCK_POLL_S = 0.02
FLIGHT_WAIT_S = 30.0  # a follower whose leader hangs computes on its own after this
REDIS_RETRY_S = 5.0  # after a Redis failure, Redis is tried again after this
REDIS_WARN_EVERY_S = 60.0  # at most one warning per period while Redis stays down


def jittered(seconds: float, jitter: float = JITTER) -> float:
    """`seconds` ± `jitter` (a fraction), drawn uniformly."""
    return seconds * random.uniform(1 - jitter, 1 + jitter)


# --- Counters and the metrics hook ----------------------------------------------------------


class CacheStats:
    """Counters by name ("plan.l1.hit", "flows.bloom.absent", …), safe between threads."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.hook: Callable[[str, int], None] | None = None

    def incr(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n
        hook = self.hook
        if hook is not None:
            try:
                hook(name, n)
            except Exception:
                logger.exception("the cache metrics hook failed on %s", name)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()


stats = CacheStats()

# Every counter, for a stable shape (flows/lookup.py counts the flows.* and versions.* ones).
COUNTERS = (
    "plan.l1.hit", "plan.l1.miss", "plan.l2.hit", "plan.l2.miss", "plan.l3.hit", "plan.l3.miss",
    "plan.compile", "plan.single_flight.wait", "plan.lock.wait",
    "flows.bloom.local", "flows.bloom.shared", "flows.bloom.absent", "flows.bloom.unknown",
    "flows.bloom.build", "flows.deleted.hit", "versions.hit", "versions.miss", "redis.error",
)


def set_metrics_hook(hook: Callable[[str, int], None] | None) -> None:
    """Call `hook(name, n)` on every count (None: no hook). Names are those of cache_stats()."""
    stats.hook = hook


def cache_stats() -> dict[str, Any]:
    """Every counter (hits and misses per tier, compiles, waits, Redis failures, flow
    lookups answered without the database), with the L1 size and Redis's state."""
    counts: dict[str, Any] = {name: 0 for name in COUNTERS}
    counts.update(stats.snapshot())
    counts["plan.l1.size"] = len(plan_cache.l1)
    counts["redis.available"] = not redis_breaker.down
    return counts


# --- Redis: which backend, and a circuit breaker ---------------------------------------------


def shared_cache() -> Any:
    return caches["default"]


def redis_client(cache: Any = None) -> Any | None:
    """The raw Redis client behind the default cache when it is django-redis, else None."""
    cache = shared_cache() if cache is None else cache
    client = getattr(cache, "client", None)
    if client is None or not hasattr(client, "get_client"):
        return None
    return client.get_client(write=True)


class RedisBreaker:
    """Stops calling Redis for `retry_s` after a failure, then lets one call probe it.

    Warns at most once per `warn_every_s` while Redis stays down, and once when it is back.
    """

    def __init__(self, retry_s: float = REDIS_RETRY_S, warn_every_s: float = REDIS_WARN_EVERY_S):
        self.retry_s = retry_s
        self.warn_every_s = warn_every_s
        self.down = False
        self._retry_at = 0.0
        self._warned_at = -float("inf")
        self._lock = threading.Lock()
        self.on_recovery: list[Callable[[], None]] = []  # called when Redis answers again

    def allow(self) -> bool:
        if not self.down:
            return True
        now = time.monotonic()
        with self._lock:
            if now < self._retry_at:
                return False
            self._retry_at = now + self.retry_s  # this caller probes; the others wait
            return True

    def failed(self, error: BaseException, doing: str) -> None:
        stats.incr("redis.error")
        now = time.monotonic()
        with self._lock:
            self.down = True
            self._retry_at = now + self.retry_s
            warn = now - self._warned_at >= self.warn_every_s
            if warn:
                self._warned_at = now
        if warn:
            logger.warning("Redis is unavailable (%s while %s: %s); caches carry on with "
                           "process memory and the database, Redis is tried again every %gs",
                           type(error).__name__, doing, error, self.retry_s)

    def succeeded(self) -> bool:
        """Redis answered; True when that ends an outage (the recovery callbacks ran)."""
        if not self.down:
            return False
        with self._lock:
            was_down, self.down = self.down, False
        if not was_down:
            return False
        logger.warning("Redis is back: the shared cache is used again")
        for callback in self.on_recovery:
            try:
                callback()
            except Exception:
                logger.exception("catching up with Redis failed")
        return True

    def reset(self) -> None:
        with self._lock:
            self.down = False
            self._retry_at = 0.0
            self._warned_at = -float("inf")


redis_breaker = RedisBreaker()

# Failures of the shared cache: redis-py's, the socket's, and django-redis's wrapper of them.
try:
    from django_redis.exceptions import ConnectionInterrupted
except ImportError:  # pragma: no cover - django-redis is a dependency
    ConnectionInterrupted = RedisError  # type: ignore[misc,assignment]
SHARED_ERRORS: tuple[type[BaseException], ...] = (RedisError, ConnectionInterrupted, OSError)


# --- L1 -------------------------------------------------------------------------------------


class LRU:
    """A bounded LRU mapping, safe to share between threads."""

    def __init__(self, limit: int):
        self.limit = limit
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.limit:
                self._items.popitem(last=False)

    def pop(self, key: Any) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Any) -> bool:
        return key in self._items


# --- The plan cache -------------------------------------------------------------------------


def encode_plan(plan: Plan) -> bytes:
    return msgpack.packb(plan.to_dict(), use_bin_type=True)


def decode_plan(raw: bytes) -> Plan:
    return Plan.from_dict(msgpack.unpackb(raw, raw=False, strict_map_key=False))


class _Flight:
    """One computation of a key in this process; followers wait for its outcome."""

    __slots__ = ("done", "plan")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.plan: Plan | None = None


class PlanCache:
    def __init__(self, l1_size: int = L1_SIZE):
        self.l1 = LRU(l1_size)
        self._flights: dict[str, _Flight] = {}
        self._flights_lock = threading.Lock()

    @staticmethod
    def l2_key(digest: str) -> str:
        return f"plan:{PLAN_FORMAT}:{digest}"

    # -- reading -------------------------------------------------------------------------------

    def get(self, digest: str, plan: Any = None, dsl: Any = None) -> Plan:
        """The plan of the document `digest`: L1, L2, L3, or compiled (and stored back).

        `plan` and `dsl` are the document's columns when the caller already holds them (they
        spare a query); `dsl` also serves a document not stored yet (a draft's first run).
        Raises Document.DoesNotExist when the document is neither stored nor given.
        """
        found = self.l1.get(digest)
        if found is not None:
            stats.incr("plan.l1.hit")
            return found
        stats.incr("plan.l1.miss")
        with self._flights_lock:
            flight = self._flights.get(digest)
            leader = flight is None
            if leader:
                flight = self._flights[digest] = _Flight()
        assert flight is not None
        if not leader:
            stats.incr("plan.single_flight.wait")
            if flight.done.wait(FLIGHT_WAIT_S) and flight.plan is not None:
                return flight.plan
            # The leader failed (its error may be its own: a transaction that does not see a
            # row yet, say) or hangs: try on our own rather than share its fate.
            return self._load(digest, plan, dsl)
        try:
            found = self._load(digest, plan, dsl)
            self.l1.put(digest, found)
            flight.plan = found
            return found
        finally:
            with self._flights_lock:
                self._flights.pop(digest, None)
            flight.done.set()

    def _load(self, digest: str, plan: Any, dsl: Any) -> Plan:
        """L2, then (holding the cross-process lock when Redis is there) L3 or compile."""
        found = self._l2_get(digest)
        if found is not None:
            return found
        lock = self._lock(digest)
        if lock is False:  # another process computes it: wait for its L2 write
            stats.incr("plan.lock.wait")
            deadline = time.monotonic() + LOCK_WAIT_S
            while time.monotonic() < deadline and not redis_breaker.down:
                time.sleep(LOCK_POLL_S)
                found = self._l2_get(digest, count=False)
                if found is not None:
                    return found
        try:
            found = self._l3_or_compile(digest, plan, dsl)
            self._l2_put(digest, found)
            return found
        finally:
            if lock not in (None, False):
                self._unlock(lock)

    def _l3_or_compile(self, digest: str, plan: Any, dsl: Any) -> Plan:
        if plan is None:
            row = Document.objects.filter(hash=digest).values_list("plan").first()
            if row is None and dsl is None:
                stats.incr("plan.l3.miss")
                raise Document.DoesNotExist(f"no stored document {digest}")
            plan = row[0] if row is not None else None
            stored = row is not None
        else:
            stored = True
        if plan is not None:
            try:
                found = Plan.from_dict(plan)
            except (ValueError, KeyError, TypeError):
                logger.info("the stored plan of %s is of another format: compiling again", digest)
            else:
                stats.incr("plan.l3.hit")
                return found
        stats.incr("plan.l3.miss")
        if dsl is None:
            dsl = Document.objects.values_list("dsl", flat=True).get(hash=digest)
        found = self.compile(dsl)
        if stored:
            Document.objects.filter(hash=digest).update(plan=found.to_dict())
        return found

    def compile(self, dsl: Any) -> Plan:
        stats.incr("plan.compile")
        return compile_plan(dsl)

    @property
    def compiles(self) -> int:
        return stats.snapshot().get("plan.compile", 0)

    # -- L2 ------------------------------------------------------------------------------------

    def _l2_get(self, digest: str, count: bool = True) -> Plan | None:
        cache = shared_cache()
        client = redis_client(cache)
        key = self.l2_key(digest)
        if client is None:
            raw = cache.get(key)
        else:
            if not redis_breaker.allow():
                return None
            try:
                raw = client.get(cache.make_key(key))
            except SHARED_ERRORS as error:
                redis_breaker.failed(error, "reading a plan")
                return None
            redis_breaker.succeeded()
        if raw is None:
            if count:
                stats.incr("plan.l2.miss")
            return None
        try:
            found = decode_plan(raw)
        except Exception:
            logger.warning("an unreadable plan was in the shared cache under %s", key)
            if count:
                stats.incr("plan.l2.miss")
            return None
        stats.incr("plan.l2.hit")
        return found

    def _l2_put(self, digest: str, plan: Plan) -> None:
        cache = shared_cache()
        client = redis_client(cache)
        key = self.l2_key(digest)
        raw = encode_plan(plan)
        ttl = jittered(L2_TTL_S)
        if client is None:
            cache.set(key, raw, ttl)
            return
        if not redis_breaker.allow():
            return
        try:
            client.set(cache.make_key(key), raw, px=int(ttl * 1000))
        except SHARED_ERRORS as error:
            redis_breaker.failed(error, "storing a plan")
            return
        redis_breaker.succeeded()

    def _lock(self, digest: str) -> Any:
        """A held Redis lock, False when another process holds it, None without Redis."""
        cache = shared_cache()
        client = redis_client(cache)
        if client is None or not redis_breaker.allow():
            return None
        lock = client.lock(cache.make_key(f"plan-lock:{digest}"), timeout=LOCK_TTL_S)
        try:
            acquired = lock.acquire(blocking=False)
        except SHARED_ERRORS as error:
            redis_breaker.failed(error, "locking a plan")
            return None
        redis_breaker.succeeded()
        return lock if acquired else False

    @staticmethod
    def _unlock(lock: Any) -> None:
        try:
            lock.release()
        except LockError:
            pass  # it expired meanwhile: nothing to release
        except SHARED_ERRORS as error:
            redis_breaker.failed(error, "unlocking a plan")

    # -- warming and clearing ------------------------------------------------------------------

    def warm(self, digest: str) -> Plan:
        """Make sure the plan is in L1 and L2 (and L3); the plan."""
        found = self.get(digest)
        self._l2_put(digest, found)
        return found

    def clear_l1(self) -> None:
        self.l1.clear()

    def forget(self, digest: str) -> None:
        """Drop one plan from L1 and L2 (benchmarks and tests; plans never go stale)."""
        self.l1.pop(digest)
        cache = shared_cache()
        client = redis_client(cache)
        if client is None:
            cache.delete(self.l2_key(digest))
            return
        try:
            client.delete(cache.make_key(self.l2_key(digest)))
        except SHARED_ERRORS as error:
            redis_breaker.failed(error, "dropping a plan")


plan_cache = PlanCache()
