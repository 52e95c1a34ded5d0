"""The tiered cache of compiled plans (docs/platform.md, Caching).

A plan is a pure function of its document, and documents are stored by content hash, so a
plan is keyed by that hash and never needs invalidating:

- L1: a bounded LRU of `Plan` objects in this process (cachetools);
- L2: `caches["default"]`: Redis through django-redis when `REDIS_URL` is set (which stores
  `plan.to_dict()` as MessagePack, never a pickle), else Django's in-process cache;
- L3: the `Document.plan` column;
- and when all miss, the document is compiled and stored back to L3 and L2.

Concurrent misses of one key in a process compute once: cachetools' `cached` with a
condition makes the other callers wait for the first. L2 expiries carry random jitter. Every
call to the shared cache goes through `shared_call`: when Redis fails, a circuit breaker
(`redis_breaker`) logs one warning per period, the callers carry on without Redis, and Redis
is tried again a few seconds later.

Counters per tier are in `cache_stats()`, read by tracing/metrics.py.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from cachetools import LRUCache, cached
from django.core.cache import caches
from django_redis.exceptions import ConnectionInterrupted
from redis.exceptions import RedisError

from engine import Plan, compile_plan
from engine.plan import PLAN_FORMAT
from flows.models import Document

logger = logging.getLogger(__name__)

L1_SIZE = 512  # plans kept in each process (a plan of a 10-node flow is a few KiB)
L2_TTL_S = 3600.0  # ± JITTER: hot keys written together do not all expire together
JITTER = 0.10
REDIS_RETRY_S = 5.0  # after a Redis failure, Redis is tried again after this
REDIS_WARN_EVERY_S = 60.0  # at most one warning per period while Redis stays down

# Failures of the shared cache: redis-py's, the socket's, and django-redis's wrapper of them.
SHARED_ERRORS: tuple[type[BaseException], ...] = (RedisError, ConnectionInterrupted, OSError)


def jittered(seconds: float, jitter: float = JITTER) -> float:
    """`seconds` ± `jitter` (a fraction), drawn uniformly."""
    return seconds * random.uniform(1 - jitter, 1 + jitter)


# --- Counters ---------------------------------------------------------------------------------


class CacheStats:
    """Counters by name ("plan.l2.hit", "flows.absent", …), safe between threads."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def incr(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


stats = CacheStats()

# Every counter, for a stable shape (flows/lookup.py counts the flows.* and versions.* ones).
COUNTERS = (
    "plan.l1.hit", "plan.l1.miss", "plan.l2.hit", "plan.l2.miss", "plan.l3.hit", "plan.l3.miss",
    "plan.compile", "plan.single_flight.wait", "flows.absent", "flows.deleted",
    "versions.hit", "versions.miss", "redis.error",
)


def cache_stats() -> dict[str, Any]:
    """Every counter (hits and misses per tier, compiles, waits, Redis failures, flow
    lookups answered without the database), with the L1 size and Redis's state."""
    counts: dict[str, Any] = {name: 0 for name in COUNTERS}
    counts.update(stats.snapshot())
    l1 = plan_cache.get.cache_info()
    counts.update({"plan.l1.hit": l1.hits, "plan.l1.miss": l1.misses,
                   "plan.l1.size": l1.currsize, "redis.available": not redis_breaker.down})
    return counts


# --- The shared cache, behind a circuit breaker -----------------------------------------------


def shared_cache() -> Any:
    return caches["default"]


class RedisBreaker:
    """Stops calling Redis for `retry_s` after a failure, then lets one call probe it.

    Warns at most once per `warn_every_s` while Redis stays down, and once when it is back.
    (pybreaker holds one lock for the whole of every call, which would queue all of a
    process's Redis calls behind a slow one.)
    """

    def __init__(self, retry_s: float = REDIS_RETRY_S, warn_every_s: float = REDIS_WARN_EVERY_S):
        self.retry_s = retry_s
        self.warn_every_s = warn_every_s
        self.down = False
        self._retry_at = 0.0
        self._warned_at = -float("inf")
        self._lock = threading.Lock()

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

    def succeeded(self) -> None:
        if not self.down:
            return
        with self._lock:
            was_down, self.down = self.down, False
        if was_down:
            logger.warning("Redis is back: the shared cache is used again")

    def reset(self) -> None:
        with self._lock:
            self.down = False
            self._retry_at = 0.0
            self._warned_at = -float("inf")


redis_breaker = RedisBreaker()


def shared_call(doing: str, operation: Callable[..., Any], *args: Any,
                default: Any = None) -> Any:
    """`operation(*args)` (a method of the shared cache) through the breaker; `default` while
    Redis is down or when this call fails."""
    if not redis_breaker.allow():
        return default
    try:
        result = operation(*args)
    except SHARED_ERRORS as error:
        redis_breaker.failed(error, doing)
        return default
    redis_breaker.succeeded()
    return result


# --- The plan cache -------------------------------------------------------------------------


class _CountedCondition(threading.Condition):
    """The condition cachetools waits on while another thread computes a key: counted."""

    def wait(self, timeout: float | None = None) -> bool:
        stats.incr("plan.single_flight.wait")
        return super().wait(timeout)


def _digest_only(digest: str, plan: Any = None, dsl: Any = None) -> str:
    return digest


class PlanCache:
    def __init__(self, l1_size: int = L1_SIZE):
        self.l1: LRUCache[str, Plan] = LRUCache(maxsize=l1_size)
        self._flight = _CountedCondition(threading.Lock())
        # get(digest, plan=None, dsl=None): the plan of the document `digest`, from L1, else
        # loaded once however many threads ask (the others wait for it: no stampede).
        # `plan` and `dsl` are the document's columns when the caller already holds them (they
        # spare a query); `dsl` also serves a document not stored yet (a draft's first run).
        # Raises Document.DoesNotExist when the document is neither stored nor given.
        self.get: Any = cached(self.l1, key=_digest_only, condition=self._flight,
                               info=True)(self._load)

    @staticmethod
    def l2_key(digest: str) -> str:
        return f"plan:{PLAN_FORMAT}:{digest}"

    def _load(self, digest: str, plan: Any = None, dsl: Any = None) -> Plan:
        """L2, else L3 or compile (stored back to L2)."""
        found = self._l2_get(digest)
        if found is None:
            found = self._l3_or_compile(digest, plan, dsl)
            self._l2_put(digest, found)
        return found

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
        stats.incr("plan.compile")
        found = compile_plan(dsl)
        if stored:
            Document.objects.filter(hash=digest).update(plan=found.to_dict())
        return found

    def _l2_get(self, digest: str) -> Plan | None:
        data = shared_call("reading a plan", shared_cache().get, self.l2_key(digest))
        if data is not None:
            try:
                found = Plan.from_dict(data)
            except (ValueError, KeyError, TypeError, AttributeError):
                logger.warning("an unreadable plan was in the shared cache under %s", digest)
            else:
                stats.incr("plan.l2.hit")
                return found
        stats.incr("plan.l2.miss")
        return None

    def _l2_put(self, digest: str, plan: Plan) -> None:
        shared_call("storing a plan", shared_cache().set, self.l2_key(digest), plan.to_dict(),
                    jittered(L2_TTL_S))

    # -- warming and clearing ------------------------------------------------------------------

    def warm(self, digest: str) -> Plan:
        """Make sure the plan is in L1 and L2 (and L3); the plan."""
        found = self.get(digest)
        self._l2_put(digest, found)
        return found

    def clear_l1(self) -> None:
        with self._flight:  # not get.cache_clear(): it would zero the hit and miss counts
            self.l1.clear()

    def forget(self, digest: str) -> None:
        """Drop one plan from L1 and L2 (benchmarks and tests; plans never go stale)."""
        with self._flight:
            self.l1.pop(digest, None)
        shared_call("dropping a plan", shared_cache().delete, self.l2_key(digest))


plan_cache = PlanCache()
