"""Small query helpers shared by the services."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet


def one_or_none(rows: QuerySet) -> Any | None:
    """The one row a filter on a unique key matches, or None.

    Like `.first()` without its ORDER BY: a lookup by a unique key has nothing to sort, and
    compiling the ordering is a measurable share of a hot read (docs/benchmarks.md).
    """
    try:
        return rows.get()
    except rows.model.DoesNotExist:
        return None
