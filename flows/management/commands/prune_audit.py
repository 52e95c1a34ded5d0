"""Delete audit entries older than a number of days, for operators who must (retention
rules); nothing else deletes them, and `prune_runs` leaves them alone."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from flows import services
from flows.management.pruning import add_age_arguments, check_age_arguments


class Command(BaseCommand):
    help = ("Delete audit entries older than DAYS, in batches. The audit log is otherwise "
            "append-only: no endpoint, page or admin screen deletes entries.")

    def add_arguments(self, parser: Any) -> None:
        add_age_arguments(parser, "entries", batch_size=5000)

    def handle(self, *args: Any, older_than: float, batch_size: int, dry_run: bool,
               **options: Any) -> None:
        check_age_arguments(older_than, batch_size)
        count = services.prune_audit(older_than, batch_size, dry_run=dry_run)
        if dry_run:
            self.stdout.write(f"Would delete {count} audit entries (dry run).")
        else:
            self.stdout.write(f"Deleted {count} audit entries older than {older_than:g} days.")
