"""How many runs execute at once (docs/api.md, Capacity; docs/platform.md, Capacity).

A run holds a slot while it executes: `running`, or `queued` and already leased to a worker
(claimed, its run.started not stored yet). A run waiting for a person holds none. Before a
run takes a slot — inserted leased by the process that starts it, or claimed from `queued`
or `waiting` — `has_slot` checks the owner's RUN_MAX_ACTIVE_PER_OWNER and the flow's
`max_active_runs`, under a lock per owner (a PostgreSQL advisory lock; SQLite's IMMEDIATE
transactions already let one writer in at a time), so that concurrent starts in any number
of processes never exceed either.

Runs over a limit stay `queued` ("held"). Runs ahead of a run count against it: the flow's
older held runs, and the owner's older held runs of flows without a limit of their own, so
runs start in the order they were created. A held run is rung again when a run of its owner
lets its slot go (`ring_held`), and the sweep finds any whose ring was missed. A flag in the
shared cache says that an owner may have held runs, so that a run's end costs no query when
none are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Count, Q
from django.utils import timezone

from flows.cache import shared_cache, shared_call
from flows.models import Flow, Run
from flows.queries import one_or_none

HELD_FLAG_S = 300  # a missed flag costs a held run the sweep's delay, no more
RING_AT_ONCE = 20  # held runs rung when a slot frees; each is checked again as it is claimed
_LOCK_CLASS = 0x61737472  # "astr": the advisory locks' first key, so others' cannot collide


def _holding() -> Q:
    return Q(status=Run.Status.RUNNING) | (Q(status=Run.Status.QUEUED) & ~Q(lease_owner=""))


def _held() -> Q:
    return Q(status=Run.Status.QUEUED, lease_owner="")


def lock_owner(owner_id: Any) -> None:
    """Let one start at a time through the owner's gate until the transaction ends."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_CLASS, owner_id])


def has_slot(owner_id: Any, flow_id: Any, flow_limit: int | None, created_at: datetime,
             itself: Any = None) -> bool:
    """Whether a run of the flow created at `created_at` may execute now (inside the
    transaction that takes the slot, after `lock_owner`). `itself`: the run's id, when it
    exists already."""
    older_held = _held() & Q(created_at__lt=created_at)
    counts = Run.objects.filter(owner_id=owner_id, status__in=Run.ACTIVE).exclude(
        pk=itself).aggregate(
        owner=Count("pk", filter=_holding() | (older_held
                                               & Q(flow__max_active_runs__isnull=True))),
        flow=Count("pk", filter=Q(flow_id=flow_id) & (_holding() | older_held)))
    if counts["owner"] >= settings.RUN_MAX_ACTIVE_PER_OWNER:
        return False
    return flow_limit is None or counts["flow"] < flow_limit


def flow_limit(flow_id: Any) -> int | None:
    return one_or_none(Flow.objects.filter(pk=flow_id).values_list("max_active_runs",
                                                                     flat=True))


def note_held(owner_id: Any) -> None:
    shared_call("noting held runs", shared_cache().set, _flag(owner_id), 1, HELD_FLAG_S)


def held_runs(owner_id: Any, limit: int = RING_AT_ONCE) -> list[Any]:
    """The owner's oldest runs waiting for a slot (or for a worker to take them up), when
    the flag says there may be some; the flag is cleared when there are none."""
    if not shared_call("reading held runs", shared_cache().get, _flag(owner_id), default=1):
        return []
    due = Q(status=Run.Status.WAITING, wake_at__lte=timezone.now())
    run_ids = list(Run.objects.filter(_held() | due, owner_id=owner_id)
                   .order_by("created_at").values_list("pk", flat=True)[:limit])
    if not run_ids:
        shared_call("clearing held runs", shared_cache().delete, _flag(owner_id))
    return run_ids


def _flag(owner_id: Any) -> str:
    return f"runs:held:{owner_id}"
