"""Delete old finished runs, with their node runs and events, in batches."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from flows import services

MAX_DAYS = 36_500  # a hundred years: beyond, the cut-off date itself overflows


class Command(BaseCommand):
    help = ("Delete finished runs (succeeded, failed, cancelled) created more than DAYS ago, "
            "with their node runs and events. Queued, running and waiting runs are kept, and "
            "so are runs started with an Idempotency-Key in the last 24 hours.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--older-than", type=float, required=True, metavar="DAYS",
                            help="age in days (fractions allowed) of the runs to delete")
        parser.add_argument("--batch-size", type=int, default=1000,
                            help="runs deleted per transaction (default 1000)")
        parser.add_argument("--dry-run", action="store_true",
                            help="only count the runs that would be deleted")

    def handle(self, *args: Any, older_than: float, batch_size: int, dry_run: bool,
               **options: Any) -> None:
        if not 0 <= older_than <= MAX_DAYS:  # nan and inf fail this too
            raise CommandError(f"--older-than must be a number of days from 0 to {MAX_DAYS}")
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        age = f"older than {older_than:g} day{'' if older_than == 1 else 's'}"
        if dry_run:
            count = services.prune_runs(older_than, batch_size, dry_run=True)
            self.stdout.write(f"Would delete {count} finished run{'' if count == 1 else 's'} "
                              f"{age} (dry run: nothing deleted).")
            return
        count = services.prune_runs(
            older_than, batch_size,
            progress=lambda deleted: self.stdout.write(f"    deleted {deleted} runs so far"))
        self.stdout.write(f"Deleted {count} finished run{'' if count == 1 else 's'} {age}, "
                          "with their node runs and events.")
