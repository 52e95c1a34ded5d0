"""Keeping the tables small: old finished runs go, with their node runs and events; old
audit entries go only when an operator asks (`prune_audit`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from flows.models import AuditEntry, Run

IDEMPOTENCY_KEPT = timedelta(hours=24)


def prune_runs(older_than_days: float, batch_size: int = 1000, dry_run: bool = False,
               progress: Callable[[int], None] | None = None) -> int:
    """Delete finished runs created more than `older_than_days` ago; the number of runs
    deleted (child runs of subflows included: they go with their parent).

    Runs with an Idempotency-Key are kept for IDEMPOTENCY_KEPT whatever the age asked for.
    Deletes in batches, each in its own transaction, so the database never holds one huge
    transaction and other writers wait at most one batch. Queued, running and waiting runs
    are never touched, nor a finished run with an unfinished child (a cascade would take it).
    `progress` is called with the running total after each batch.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    now = timezone.now()
    cutoff = now - timedelta(days=older_than_days)
    prunable = (Run.objects.filter(status__in=Run.FINISHED, created_at__lt=cutoff)
                .exclude(children__status__in=[*Run.ACTIVE, Run.Status.WAITING])
                # docs/api.md keeps Idempotency-Keys at least a day: a repeat must still find its run.
                .exclude(idempotency_key__isnull=False, created_at__gte=now - IDEMPOTENCY_KEPT))
    if dry_run:
        return prunable.count()
    deleted = 0
    while True:
        with transaction.atomic():
            batch = list(prunable.order_by("created_at").values_list("pk", flat=True)
                         [:batch_size])
            if not batch:
                break
            _, per_model = prunable.filter(pk__in=batch).delete()
        deleted += per_model.get(Run._meta.label, 0)
        if progress is not None:
            progress(deleted)
    return deleted


def prune_audit(older_than_days: float, batch_size: int = 5000, dry_run: bool = False) -> int:
    """Delete audit entries older than `older_than_days`, `batch_size` at a time; the number
    deleted (with `dry_run`, the number that would be). Nothing else deletes them."""
    old = AuditEntry.objects.filter(at__lt=timezone.now() - timedelta(days=older_than_days))
    if dry_run:
        return old.count()
    deleted = 0
    while batch := list(old.order_by("at").values_list("pk", flat=True)[:batch_size]):
        # A queryset's delete, in SQL: the model's own delete() refuses, on purpose.
        deleted += AuditEntry.objects.filter(pk__in=batch).delete()[0]
    return deleted
