"""Changelists of huge tables: only the columns shown, no COUNT(*), one read per page."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.views.main import PAGE_VAR, ChangeList
from django.core.paginator import Paginator
from django.utils.functional import cached_property


class NoCountPaginator(Paginator):
    """Pages of a huge table without COUNT(*): it reads one row past the page, so it knows
    whether another page follows, and reports a count just big enough to say so.

    The rows it read are kept and are the page; ChangeList asks for them through `page()`.
    """

    def __init__(self, object_list: Any, per_page: int, page_number: int = 1, **kwargs: Any):
        super().__init__(object_list, per_page, **kwargs)
        self.page_number = max(1, page_number)

    @property
    def offset(self) -> int:
        return (self.page_number - 1) * self.per_page

    @cached_property
    def window(self) -> list[Any]:
        """The rows of the requested page, plus the first row of the next one if any."""
        return list(self.object_list[self.offset:self.offset + self.per_page + 1])

    @cached_property
    def count(self) -> int:
        return self.offset + len(self.window)

    @property
    def has_next(self) -> bool:
        return len(self.window) > self.per_page

    def page(self, number: Any) -> Any:
        number = self.validate_number(number)
        if number != self.page_number:
            return super().page(number)
        return self._get_page(self.window[:self.per_page], number, self)


class LeanChangeList(ChangeList):
    """A changelist that reads only what it shows: the model admin's `list_only` columns,
    or every column but its `list_defer` ones (large documents and JSON)."""

    def get_queryset(self, request: Any, exclude_parameters: Any = None) -> Any:
        queryset = super().get_queryset(request, exclude_parameters)
        only = getattr(self.model_admin, "list_only", None)
        if only:
            return queryset.only(*only)
        defer = getattr(self.model_admin, "list_defer", None)
        return queryset.defer(*defer) if defer else queryset


class NoCountChangeList(LeanChangeList):
    """A changelist paged by NoCountPaginator.

    With everything on one page, Django would read the rows a second time through an
    unsliced queryset; the paginator already holds them, so they are used instead.
    """

    def get_results(self, request: Any) -> None:
        super().get_results(request)
        paginator = self.paginator
        if isinstance(paginator, NoCountPaginator) and not self.multi_page:
            self.result_list = paginator.window
        # What the pagination template links to, since it cannot know how many pages exist.
        self.newer_url = (self.get_query_string({PAGE_VAR: self.page_num - 1})
                          if self.page_num > 1 else None)
        self.older_url = (self.get_query_string({PAGE_VAR: self.page_num + 1})
                          if getattr(paginator, "has_next", False) else None)


def requested_page(request: Any) -> int:
    try:
        return max(1, int(request.GET.get(PAGE_VAR, 1)))
    except (TypeError, ValueError):
        return 1
