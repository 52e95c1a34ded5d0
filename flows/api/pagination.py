"""Cursor pagination (docs/api.md, Pagination): opaque cursors, newest first, `?page_size=` up
to 200. A page is found by position, never by offset, so its cost does not grow with depth."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import pagination
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from flows.errors import ServiceError

_INT_RANGE = range(-(2**31), 2**31)


class NewestFirst(pagination.CursorPagination):
    ordering = ("-created_at", "-pk")
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def paginate_queryset(self, queryset, request, view=None):
        self.model = queryset.model
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise _invalid_cursor() from None
        if cursor is not None and cursor.position is None and not cursor.offset:
            # Decodable but says nothing (`?cursor=`, a forged empty one): no link of ours
            # looks like that, and silently serving the first page would hide the mistake.
            raise _invalid_cursor()
        if cursor is not None and cursor.position is not None:
            # A forged position must not reach the database as something it cannot compare.
            field = self.model._meta.get_field(self.ordering[0].lstrip("-"))
            try:
                value = field.to_python(cursor.position)
            except (DjangoValidationError, ValueError, TypeError, OverflowError):
                raise _invalid_cursor() from None
            if isinstance(value, int) and value not in _INT_RANGE:
                raise _invalid_cursor()
        return cursor

    def get_paginated_response(self, data):
        return Response({"results": data, "next": self.get_next_link(),
                         "previous": self.get_previous_link()})

    def get_paginated_response_schema(self, schema):
        link = {"type": "string", "format": "uri", "nullable": True}
        return {"type": "object", "required": ["results", "next", "previous"],
                "properties": {"results": schema, "next": link, "previous": link}}


class HighestVersionFirst(NewestFirst):
    ordering = ("-number",)


def _invalid_cursor() -> ServiceError:
    return ServiceError(400, "invalid_request", "the cursor is not valid",
                        [{"path": "cursor", "code": "invalid_value",
                          "message": "use the `next` or `previous` link of a page"}])


class ByName(NewestFirst):
    """Secrets, in the order of their names (unique per owner)."""

    ordering = ("name",)


class NewestEntriesFirst(NewestFirst):
    """The audit log: by time, ties (one transaction's entries) by id."""

    ordering = ("-at", "-id")
