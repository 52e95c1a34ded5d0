"""What the pruning commands (`prune_runs`, `prune_audit`) take and check alike."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError

MAX_DAYS = 36_500  # a hundred years: beyond, the cut-off date itself overflows


def add_age_arguments(parser: Any, what: str, batch_size: int) -> None:
    parser.add_argument("--older-than", type=float, required=True, metavar="DAYS",
                        help=f"age in days (fractions allowed) of the {what} to delete")
    parser.add_argument("--batch-size", type=int, default=batch_size,
                        help=f"{what} deleted per transaction (default {batch_size})")
    parser.add_argument("--dry-run", action="store_true",
                        help=f"only count the {what} that would be deleted")


def check_age_arguments(older_than: float, batch_size: int) -> None:
    if not 0 <= older_than <= MAX_DAYS:  # nan and inf fail this too
        raise CommandError(f"--older-than must be a number of days from 0 to {MAX_DAYS}")
    if batch_size < 1:
        raise CommandError("--batch-size must be at least 1")
