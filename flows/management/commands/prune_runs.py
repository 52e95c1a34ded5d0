"""Delete old finished runs, with their node runs and events, in batches."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from flows import services
from flows.management.pruning import add_age_arguments, check_age_arguments


class Command(BaseCommand):
    help = ("Delete finished runs (succeeded, failed, cancelled) created more than DAYS ago, "
            "with their node runs and events. Queued, running and waiting runs are kept, and "
            "so are runs started with an Idempotency-Key in the last 24 hours.")

    def add_arguments(self, parser: Any) -> None:
        add_age_arguments(parser, "runs", batch_size=1000)

    def handle(self, *args: Any, older_than: float, batch_size: int, dry_run: bool,
               **options: Any) -> None:
        check_age_arguments(older_than, batch_size)
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
