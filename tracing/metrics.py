"""The platform's metrics, in prometheus-client's registry, served as text at /metrics.

Each process counts what it executes (runs and nodes, from their events: tracing/runs.py),
the events it delivered, and reads the plan cache's hit and miss counts per tier from
the source flows registers (`read_cache_stats_from`). Prometheus sums processes and gives
rates and quantiles (`histogram_quantile(0.95, rate(astron_run_duration_seconds_bucket[5m]))`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

logger = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # "text/plain; version=0.0.4; charset=utf-8"

# No `*_created` series beside each counter and histogram: Prometheus does not need them.
disable_created_metrics()
# A dedicated registry: only Astron's figures (and the process's CPU and memory), and
# nothing another library registers by importing prometheus-client.
REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)

RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900,
               3600)
NODE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                0.5, 1, 2.5, 5, 10, 30, 60, 300)

RUNS_STARTED = Counter(
    "astron_runs_started", "Runs that began executing here (run.started events; subflow "
    "children included).", registry=REGISTRY)
RUNS_FINISHED = Counter(
    "astron_runs_finished", "Runs that finished executing here (run.finished events), by "
    "status.", ["status"], registry=REGISTRY)
RUN_DURATION = Histogram(
    "astron_run_duration_seconds", "Executing time of finished runs (run.finished elapsed_ms: "
    "time waiting for a person left out), by status.", ["status"], buckets=RUN_BUCKETS,
    registry=REGISTRY)
NODE_DURATION = Histogram(
    "astron_node_duration_seconds", "Time of node executions (node.finished elapsed_ms, "
    "retries included), by node type.", ["type"], buckets=NODE_BUCKETS, registry=REGISTRY)
NODE_ERRORS = Counter(
    "astron_node_errors", "Node executions that ended failed or recovered, by node type and "
    "error code.", ["type", "code"], registry=REGISTRY)
EVENTS_DELIVERED = Counter(
    "astron_events_delivered", "Run events stored and then published to their watchers.",
    registry=REGISTRY)
EVENTS_UNPUBLISHED = Counter(
    "astron_events_unpublished", "Run events stored whose publication to watchers failed "
    "(they replay from the database).", registry=REGISTRY)


# -- recording (called by tracing/runs.py and flows/execution/sink.py) ----------------------

_runs_finished: dict[str, Any] = {}
_run_durations: dict[str, Any] = {}
_node_durations: dict[str, Any] = {}
_node_errors: dict[tuple[str, str], Any] = {}


DOORBELLS_FAILED = Counter(
    "astron_doorbells_failed", "Doorbells (RUN_EXECUTOR=celery) the broker did not take: "
    "the workers' sweep starts those runs.", registry=REGISTRY)
DOORBELLS_DROPPED = Counter(
    "astron_doorbells_dropped", "Doorbells for a run another worker holds or that needs "
    "nothing: duplicates, dropped by the lease's claim.", registry=REGISTRY)
SWEEP_FOUND = Counter(
    "astron_sweep_found", "Runs the sweep took up: a lost doorbell, a dead or stopped "
    "worker, a waiting run with an answer, a cancel or a passed deadline.", registry=REGISTRY)


_worker_counts = {"doorbells_dropped": 0, "sweep_found": 0}  # the same, for the heartbeat


def doorbell_failed() -> None:
    DOORBELLS_FAILED.inc()


def doorbell_dropped() -> None:
    DOORBELLS_DROPPED.inc()
    _worker_counts["doorbells_dropped"] += 1


def sweep_found(count: int) -> None:
    SWEEP_FOUND.inc(count)
    _worker_counts["sweep_found"] += count


def worker_counts() -> dict[str, int]:
    """What this process's executor counted since it started: its heartbeat stores them."""
    return dict(_worker_counts)


def run_started() -> None:
    RUNS_STARTED.inc()


def run_finished(status: str, elapsed_ms: float | None) -> None:
    # The labelled children are looked up once per label value: labels() takes a lock.
    counter = _runs_finished.get(status)
    if counter is None:
        counter = _runs_finished[status] = RUNS_FINISHED.labels(status)
        _run_durations[status] = RUN_DURATION.labels(status)
    counter.inc()
    if elapsed_ms is not None:
        _run_durations[status].observe(elapsed_ms / 1000)


def node_finished(node_type: str, elapsed_ms: float | None) -> None:
    histogram = _node_durations.get(node_type)
    if histogram is None:
        histogram = _node_durations[node_type] = NODE_DURATION.labels(node_type)
    if elapsed_ms is not None:
        histogram.observe(elapsed_ms / 1000)


def node_failed(node_type: str, code: str) -> None:
    key = (node_type, code)
    counter = _node_errors.get(key)
    if counter is None:
        counter = _node_errors[key] = NODE_ERRORS.labels(node_type, code)
    counter.inc()


_events = {"events_delivered": 0, "events_unpublished": 0}  # the same, for the dashboard


def events_delivered(count: int, published: bool = True) -> None:
    if published:
        EVENTS_DELIVERED.inc(count)
        _events["events_delivered"] += count
    else:
        EVENTS_UNPUBLISHED.inc(count)
        _events["events_unpublished"] += count
    process_window.tick()


# -- the plan cache ---------------------------------------------------------------------------


_cache_stats_source: Callable[[], Mapping[str, Any]] | None = None


def read_cache_stats_from(source: Callable[[], Mapping[str, Any]]) -> None:
    """Where the plan cache's counters come from (flows registers `flows.cache.cache_stats`
    when it is ready): tracing sits below flows and never imports it."""
    global _cache_stats_source
    _cache_stats_source = source


def cache_stats() -> dict[str, Any]:
    """The registered cache counters, or {} while none is registered or it fails."""
    if _cache_stats_source is None:
        return {}
    try:
        stats = _cache_stats_source()
    except Exception:
        logger.warning("reading the cache's counters failed", exc_info=True)
        return {}
    return dict(stats) if isinstance(stats, Mapping) else {}


def cache_figures(stats: Mapping[str, Any] | None = None) -> dict[str, dict[str, int]]:
    """{tier: {"hits": n, "misses": m}} of this process, from `flows.cache.cache_stats()`.

    Its counters are named "plan.l1.hit", "plan.l1.miss", … "versions.hit": the tier is the
    name without "plan." and the outcome. {tier: {"hits", "misses"}} is understood too.
    """
    stats = cache_stats() if stats is None else stats
    tiers: dict[str, dict[str, int]] = {}
    for key, value in stats.items():
        if isinstance(value, Mapping):
            tiers[str(key)] = {"hits": _count(value.get("hits")),
                               "misses": _count(value.get("misses"))}
            continue
        name, _, outcome = str(key).rpartition(".")
        kind = OUTCOMES.get(outcome)
        if name and kind:
            tiers.setdefault(name.removeprefix("plan."), {"hits": 0, "misses": 0})[kind] = \
                _count(value)
    return tiers


OUTCOMES = {"hit": "hits", "hits": "hits", "miss": "misses", "misses": "misses"}


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def other_cache_counts(stats: Mapping[str, Any]) -> dict[str, int]:
    """The cache's other counters (compiles, single-flight waits, Redis errors, flows known absent…)."""
    return {str(key): value for key, value in stats.items()
            if isinstance(value, int) and not isinstance(value, bool)
            and str(key).rpartition(".")[2] not in OUTCOMES and not str(key).endswith(".size")}


class CacheCollector:
    """The cache's counts, read when scraped (so never counted twice)."""

    def describe(self) -> list[Any]:
        return []  # nothing is read at registration: flows.cache may not exist yet

    def collect(self) -> Iterator[Any]:
        hits = CounterMetricFamily("astron_cache_hits", "Plan cache hits of this process, by "
                                   "tier (flows.cache).", labels=["tier"])
        misses = CounterMetricFamily("astron_cache_misses", "Plan cache misses of this "
                                     "process, by tier (flows.cache).", labels=["tier"])
        other = CounterMetricFamily("astron_cache_events", "The plan cache's other counters "
                                    "of this process (compiles, waits, Redis errors, flow "
                                    "lookups…), by name (flows.cache).", labels=["name"])
        stats = cache_stats()
        for tier, counts in sorted(cache_figures(stats).items()):
            hits.add_metric([tier], counts["hits"])
            misses.add_metric([tier], counts["misses"])
        for name, count in sorted(other_cache_counts(stats).items()):
            other.add_metric([name], count)
        yield hits
        yield misses
        yield other
        if isinstance(stats.get("plan.l1.size"), int):
            yield GaugeMetricFamily("astron_cache_l1_plans", "Plans held in this process's "
                                    "L1 cache.", value=stats["plan.l1.size"])
        if isinstance(stats.get("redis.available"), bool):
            yield GaugeMetricFamily("astron_cache_redis_available", "1 while the cache uses "
                                    "Redis, 0 while its circuit breaker is open.",
                                    value=int(stats["redis.available"]))


REGISTRY.register(CacheCollector())


# -- this process's figures over the last hour (the dashboard) --------------------------------


def process_counts() -> dict[str, float]:
    counts: dict[str, float] = dict(_events)
    for tier, figures in cache_figures().items():
        counts[f"cache_hits:{tier}"] = figures["hits"]
        counts[f"cache_misses:{tier}"] = figures["misses"]
    return counts


class HourWindow:
    """What cumulative counters of this process did over about the last hour.

    A snapshot of the counters is taken at most once a minute, whenever the process
    delivers events, is scraped or shows the dashboard; `last_hour()` subtracts the last
    snapshot taken an hour ago or earlier, and says from when the figures count (an hour
    and at most a minute ago while snapshots are taken every minute; earlier after a quiet
    spell). A process younger than an hour counts from its start (a snapshot of zeros).
    """

    def __init__(self, read: Callable[[], dict[str, float]], span_s: float = 3600,
                 every_s: float = 60, clock: Callable[[], float] = time.time):
        self.read = read
        self.span_s = span_s
        self.every_s = every_s
        self.clock = clock
        self._lock = threading.Lock()
        self._snapshots: deque[tuple[float, dict[str, float]]] = deque([(clock(), {})])

    def tick(self) -> None:
        now = self.clock()
        if now - self._snapshots[-1][0] < self.every_s:
            return
        self._record(now, self.read())

    def last_hour(self) -> tuple[dict[str, float], float]:
        """(counts over the window, the time it starts from)."""
        now = self.clock()
        current = self.read()
        if now - self._snapshots[-1][0] >= self.every_s:
            self._record(now, current)
        with self._lock:
            older = [s for s in self._snapshots if s[0] <= now - self.span_s]
            since, base = older[-1] if older else self._snapshots[0]
        return {key: value - base.get(key, 0) for key, value in current.items()}, since

    def _record(self, now: float, values: dict[str, float]) -> None:
        with self._lock:
            if now - self._snapshots[-1][0] < self.every_s:
                return
            self._snapshots.append((now, values))
            # One snapshot from before the window is kept: the window's base.
            while len(self._snapshots) > 2 and self._snapshots[1][0] <= now - self.span_s:
                self._snapshots.popleft()


process_window = HourWindow(process_counts)


def metrics_text() -> bytes:
    """The registry in Prometheus's text format (0.0.4)."""
    process_window.tick()
    return generate_latest(REGISTRY)
