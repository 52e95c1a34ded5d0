"""Who executes a run: leases claimed by compare-and-swap, renewed while alive, taken over
when they expire (healthchecks' "only if nobody else took it", with an expiry)."""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from flows.models import Run


def new_worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_seconds() -> float:
    return float(getattr(settings, "RUN_LEASE_S", 30))


def claim(run_id: Any, worker: str) -> Run | None:
    """Take a run that needs executing, unless someone else holds a live lease on it."""
    run = Run.objects.filter(pk=run_id).first()
    now = timezone.now()
    if run is None or run.is_finished:
        return None
    leased = run.lease_owner and run.lease_expires_at and run.lease_expires_at > now
    if leased:
        return None
    if run.status == Run.Status.WAITING and not (
            run.pending_answers or run.cancel_requested
            or (run.wake_at is not None and run.wake_at <= now)):
        return None
    # A waiting run taken up executes again: it is `running` until it finishes or waits
    # anew, so that if this worker dies, the run's expired lease gets it taken over.
    status = Run.Status.RUNNING if run.status == Run.Status.WAITING else run.status
    taken = Run.objects.filter(
        pk=run.pk, status=run.status, lease_owner=run.lease_owner,
        lease_expires_at=run.lease_expires_at,
    ).update(lease_owner=worker, lease_expires_at=now + timedelta(seconds=lease_seconds()),
             wake_at=None, status=status,
             resumed_after_crash=run.resumed_after_crash + (run.status == Run.Status.RUNNING))
    if not taken:
        return None
    # Answers stay on the row until the run pauses or finishes having applied them: if this
    # worker dies first, the next one applies them (those already applied are no longer open).
    return Run.objects.select_related("document", "flow").get(pk=run.pk)


def renew(run_id: Any, worker: str) -> Run | None:
    """Extend our lease; None when it was lost (someone took the run over)."""
    now = timezone.now()
    renewed = Run.objects.filter(pk=run_id, lease_owner=worker).update(
        lease_expires_at=now + timedelta(seconds=lease_seconds()))
    if not renewed:
        return None
    return Run.objects.only("pending_answers", "answer_serial", "cancel_requested").get(pk=run_id)


def take_answers(run_id: Any, worker: str, serial: int) -> bool:
    """Remove the answers we read from the row, unless another arrived since (its serial)."""
    return bool(Run.objects.filter(pk=run_id, lease_owner=worker, answer_serial=serial)
                .update(pending_answers=[]))


def release(run_id: Any, worker: str, **changes: Any) -> bool:
    return bool(Run.objects.filter(pk=run_id, lease_owner=worker).update(
        lease_owner="", lease_expires_at=None, **changes))


def runs_needing_a_worker(limit: int = 100) -> list[Any]:
    """Runs whose lease expired (their worker died), that were never picked up, or that
    wait and have an answer, a cancel or a passed deadline."""
    now = timezone.now()
    grace = now - timedelta(seconds=lease_seconds())
    stale = Q(status__in=Run.ACTIVE) & (
        Q(lease_expires_at__lt=now) | Q(lease_expires_at__isnull=True, created_at__lt=grace))
    due = Q(status=Run.Status.WAITING, wake_at__lte=now)
    return list(Run.objects.filter(stale | due).order_by("created_at")
                .values_list("pk", flat=True)[:limit])
