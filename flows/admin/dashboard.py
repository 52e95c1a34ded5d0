"""The admin dashboard (/admin/dashboard/): the last hour, at a glance.

Two sources, each saying what it covers:

- the database, for every process: the runs created in the last hour (one range of the
  `run_created` index) by their status now, the latency percentiles of those that finished
  and of their top-level node executions (NodeRun rows) by type, and the errors of those
  nodes by type and code. Percentiles come from at most SAMPLE rows, the newest runs first.
- this process's counters (tracing/metrics.py), for what is not stored: events delivered and
  plan-cache hits and misses per tier, over the last hour of this process's life.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.contrib import admin
from django.db.models import Count
from django.db.models.fields.json import KeyTextTransform
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from engine.sandbox import sandbox_status
from flows.models import NodeRun, Run
from tracing import metrics

SAMPLE = 10_000
WINDOW = timedelta(hours=1)
QUANTILES = (50, 95, 99)


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest rank of an ascending list (None when empty)."""
    if not ordered:
        return None
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n·q/100), at least 1
    return ordered[int(rank) - 1]


def latency(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)
    figures: dict[str, Any] = {f"p{q}": percentile(ordered, q) for q in QUANTILES}
    figures["count"] = len(ordered)
    return figures


def figures(now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    since = now - WINDOW
    runs = Run.objects.filter(created_at__gte=since).order_by()
    by_status = dict(runs.values_list("status").annotate(count=Count("pk")))
    finished = list(runs.filter(status__in=Run.FINISHED).order_by("-created_at")
                    .values_list("elapsed_ms", flat=True)[:SAMPLE])
    nodes = NodeRun.objects.filter(run__created_at__gte=since).order_by()
    node_samples: dict[str, list[float]] = defaultdict(list)
    for node_type, elapsed_ms in (nodes.filter(elapsed_ms__isnull=False)
                                  .values_list("type", "elapsed_ms")[:SAMPLE]):
        node_samples[node_type].append(elapsed_ms)
    errors = list(nodes.filter(status__in=["failed", "recovered"], error__isnull=False)
                  .annotate(code=KeyTextTransform("code", "error"))
                  .values("type", "code").annotate(count=Count("pk"))
                  .order_by("-count", "type", "code")[:50])
    process, process_since = metrics.process_window.last_hour()
    cache = defaultdict(dict)
    for key, value in process.items():
        if key.startswith(("cache_hits:", "cache_misses:")):
            kind, tier = key.split(":", 1)
            cache[tier][kind.removeprefix("cache_")] = int(value)
    for counts in cache.values():
        looked_up = counts.get("hits", 0) + counts.get("misses", 0)
        counts["ratio"] = counts.get("hits", 0) / looked_up if looked_up else None
    return {
        "now": now,
        "since": since,
        "runs_started": sum(by_status.values()),
        "runs_by_status": [(status, by_status.get(status, 0)) for status in Run.Status.values],
        "run_latency": latency(finished),
        "node_latency": sorted((t, latency(s)) for t, s in node_samples.items()),
        "node_errors": errors,
        "process_since": datetime.fromtimestamp(process_since, tz=now.tzinfo),
        "events_delivered": int(process.get("events_delivered", 0)),
        "events_unpublished": int(process.get("events_unpublished", 0)),
        "cache": sorted(cache.items()),
        "sandbox": sandbox_status(),
        "sample": SAMPLE,
    }


def dashboard_view(request: HttpRequest) -> HttpResponse:
    """The last hour's figures in the admin's frame (template: tracing/dashboard.html)."""
    context = {**admin.site.each_context(request), "title": "Dashboard: the last hour",
               **figures()}
    return TemplateResponse(request, "tracing/dashboard.html", context)


# Staff only, like the rest of the admin (anyone else is sent to its login page).
dashboard = admin.site.admin_view(dashboard_view)
