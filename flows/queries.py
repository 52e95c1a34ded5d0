"""Small query helpers shared by the services."""

from __future__ import annotations

import uuid
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


def uuid_or_none(value: Any) -> uuid.UUID | None:
    """`value` as a UUID, or None for anything that is not one (a lookup then finds nothing,
    and answers like a missing object)."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
