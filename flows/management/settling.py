"""When a command may stop watching a run: it ended, or it waits with nothing to do."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from flows.models import Run

FIELDS = ("status", "last_seq", "lease_owner", "pending_answers", "cancel_requested", "wake_at")


def settled(run_id: Any) -> Run | None:
    """The run's row when it finished, or waits for an answer with no worker on it and
    nothing that would wake it; else None (it executes, or is about to)."""
    row = Run.objects.only(*FIELDS).get(pk=run_id)
    if row.is_finished:
        return row
    woken = row.pending_answers or row.cancel_requested or (
        row.wake_at is not None and row.wake_at <= timezone.now())
    if row.status == Run.Status.WAITING and not row.lease_owner and not woken:
        return row
    return None
