"""Delete audit entries older than a number of days, for operators who must (retention
rules); nothing else deletes them, and `prune_runs` leaves them alone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from flows.models import AuditEntry

MAX_DAYS = 36_500


class Command(BaseCommand):
    help = ("Delete audit entries older than DAYS, in batches. The audit log is otherwise "
            "append-only: no endpoint, page or admin screen deletes entries.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--older-than", type=float, required=True, metavar="DAYS",
                            help="age in days (fractions allowed) of the entries to delete")
        parser.add_argument("--batch-size", type=int, default=5000)
        parser.add_argument("--dry-run", action="store_true",
                            help="only count the entries that would be deleted")

    def handle(self, *args: Any, older_than: float, batch_size: int, dry_run: bool,
               **options: Any) -> None:
        if not 0 <= older_than <= MAX_DAYS:  # nan and inf fail this too
            raise CommandError(f"--older-than must be a number of days from 0 to {MAX_DAYS}")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        old = AuditEntry.objects.filter(at__lt=timezone.now() - timedelta(days=older_than))
        if dry_run:
            self.stdout.write(f"Would delete {old.count()} audit entries (dry run).")
            return
        deleted = 0
        while True:
            batch = list(old.order_by("at").values_list("pk", flat=True)[:batch_size])
            if not batch:
                break
            # A queryset's delete, in SQL: the model's own delete() refuses, on purpose.
            deleted += AuditEntry.objects.filter(pk__in=batch).delete()[0]
        self.stdout.write(f"Deleted {deleted} audit entries older than {older_than:g} days.")
