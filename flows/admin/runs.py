"""Runs in the admin, tuned for millions of rows: no COUNT(*), related rows selected up front,
only the listed columns read, filters that use the created_at index."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import ShowFacets
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from flows import services
from flows.admin.display import EMPTY, ReadOnly, live_run_url, pretty_json
from flows.admin.paging import NoCountChangeList, NoCountPaginator, requested_page
from flows.api.filters import TRIGGERS
from flows.errors import ServiceError
from flows.models import Flow, NodeRun, Run

# How many of the newest runs the flow filter looks at to offer their flows.
RECENT_RUNS_FOR_FLOW_FILTER = 1000
FLOW_FILTER_CHOICES = 20


class RecentFlowFilter(admin.SimpleListFilter):
    """The flows of the newest runs, not every flow: listing them all would not scale.

    A flow chosen elsewhere (`?flow=<id>`, as the flow's page links) is offered too.
    """

    title = "flow"
    parameter_name = "flow"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        recent = (Run.objects.order_by("-created_at")
                  .values_list("flow_id", flat=True)[:RECENT_RUNS_FOR_FLOW_FILTER])
        ids = list(dict.fromkeys(recent))[:FLOW_FILTER_CHOICES]
        chosen = self.flow_id()
        if chosen is not None and chosen not in ids:
            ids.append(chosen)
        flows = {flow.pk: flow for flow in Flow.objects.filter(pk__in=ids).order_by()
                 .select_related("owner").only("slug", "owner__username")}
        return [(str(pk), f"{flows[pk].owner.get_username()}/{flows[pk].slug}")
                for pk in ids if pk in flows]

    def flow_id(self) -> int | None:
        """The chosen flow's id; None for anything that is not an id a row could have
        (SQLite cannot even compare an integer beyond 64 bits)."""
        try:
            value = int(self.value()) if self.value() is not None else None
        except ValueError:
            return None
        return value if value is not None and 0 < value < 2**63 else None

    def queryset(self, request: Any, queryset: Any) -> Any:
        if self.value() is None:
            return queryset
        return queryset.filter(flow_id=self.flow_id())


class CreatedWithinFilter(admin.SimpleListFilter):
    """Recent runs by a range on created_at (indexed); a date hierarchy would scan for dates."""

    title = "created"
    parameter_name = "created"
    WINDOWS = {"hour": ("Last hour", timedelta(hours=1)),
               "day": ("Last 24 hours", timedelta(days=1)),
               "week": ("Last 7 days", timedelta(days=7)),
               "month": ("Last 30 days", timedelta(days=30))}

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _) in self.WINDOWS.items()]

    def queryset(self, request: Any, queryset: Any) -> Any:
        window = self.WINDOWS.get(self.value() or "")
        if window is None:
            return queryset
        return queryset.filter(created_at__gte=timezone.now() - window[1])


class TriggerFilter(admin.SimpleListFilter):
    """What started the runs (`trigger -> 'type'`, indexed with the owner and created_at)."""

    title = "started by"
    parameter_name = "trigger"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [(kind, kind) for kind in TRIGGERS]

    def queryset(self, request: Any, queryset: Any) -> Any:
        if self.value() not in TRIGGERS:
            return queryset
        return queryset.filter(trigger__type=self.value())


class NodeRunInline(ReadOnly, admin.TabularInline):
    model = NodeRun
    ordering = ("position",)
    fields = ("node", "type", "status", "reused", "attempts", "started_at", "finished_at",
              "elapsed_ms", "inputs_json", "outputs_json", "error_json", "logs")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    @admin.display(description="inputs")
    def inputs_json(self, node_run: NodeRun) -> str:
        return pretty_json(node_run.inputs)

    @admin.display(description="outputs")
    def outputs_json(self, node_run: NodeRun) -> str:
        return pretty_json(node_run.outputs)

    @admin.display(description="error")
    def error_json(self, node_run: NodeRun) -> str:
        return pretty_json(node_run.error)


@admin.register(Run)
class RunAdmin(ReadOnly, admin.ModelAdmin):
    list_display = ("id", "flow_label", "version_label", "status", "executing", "created_at",
                    "elapsed_ms")
    list_select_related = ("flow", "owner")
    # Only what the list shows: inputs, outputs, errors and flow documents stay in the table.
    list_only = ("id", "status", "created_at", "elapsed_ms", "version_number",
                 "lease_owner", "lease_expires_at", "flow__slug", "owner__username")
    list_filter = ("status", TriggerFilter, RecentFlowFilter, CreatedWithinFilter)
    ordering = ("-created_at",)
    sortable_by = ("created_at",)  # the one indexed order; any other would sort the table
    show_full_result_count = False
    show_facets = ShowFacets.NEVER  # facets count every filter choice over the table
    list_per_page = 50
    list_max_show_all = 50  # "show all" only when everything fits on one page
    search_fields = ("=flow__slug",)
    search_help_text = "A run id, or a flow's slug (exact)."
    actions = ["cancel_runs"]
    inlines = [NodeRunInline]
    fieldsets = [
        (None, {"fields": ["id", "flow_link", "owner", "version_label", "dsl_hash", "trigger",
                           "retry_of_link", "status",
                           "executing", "live_page", "cancel_requested", "created_at",
                           "started_at", "finished_at", "elapsed_ms", "recovered",
                           "resumed_after_crash"]}),
        ("Data", {"fields": ["inputs_json", "outputs_json", "answer", "error_json",
                             "waiting_json"]}),
        ("Execution", {"classes": ["collapse"],
                       "fields": ["parent_link", "parent_node", "depth", "last_seq",
                                  "lease_owner", "lease_expires_at", "wake_at",
                                  "idempotency_key"]}),
    ]
    readonly_fields = [field for _, options in fieldsets for field in options["fields"]]

    # -- permissions: runs start from a flow's page and change only through services (ReadOnly);
    # staff may ask one to stop ---------------------------------------------------------------

    def has_cancel_permission(self, request: Any, obj: Any = None) -> bool:
        return request.user.has_perm("flows.change_run")

    @admin.display(description="executed by")
    def executing(self, run: Run) -> str:
        """The worker holding the run's lease, and until when (a run not executing: —)."""
        if run.status not in Run.ACTIVE or not run.lease_owner:
            return "—" if run.status != Run.Status.QUEUED else "waiting for a worker or a slot"
        until = timezone.localtime(run.lease_expires_at).strftime("%H:%M:%S") \
            if run.lease_expires_at else "?"
        return f"{run.lease_owner} (lease until {until})"

    # -- the list ------------------------------------------------------------------------------

    def get_queryset(self, request: Any) -> Any:
        return (super().get_queryset(request).select_related("flow", "owner")
                .defer("flow__draft", "flow__description"))

    def get_changelist(self, request: Any, **kwargs: Any) -> type:
        return NoCountChangeList

    def get_paginator(self, request: Any, queryset: Any, per_page: int, orphans: int = 0,
                      allow_empty_first_page: bool = True) -> NoCountPaginator:
        return NoCountPaginator(queryset, per_page, page_number=requested_page(request),
                                allow_empty_first_page=allow_empty_first_page)

    def get_search_results(self, request: Any, queryset: Any, search_term: str) -> Any:
        # Exact matches only: a substring search would read the whole table.
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(pk=uuid.UUID(term)), False
        except ValueError:
            return queryset.filter(flow__slug=term), False

    @admin.display(description="flow", ordering="flow__slug")
    def flow_label(self, run: Run) -> str:
        return f"{run.owner.get_username()}/{run.flow.slug}"

    @admin.display(description="version")
    def version_label(self, run: Run) -> Any:
        return run.version_label

    # -- the page of a run ---------------------------------------------------------------------

    @admin.display(description="flow")
    def flow_link(self, run: Run) -> str:
        url = reverse("admin:flows_flow_change", args=[run.flow_id])
        return format_html('<a href="{}">{}</a>', url, self.flow_label(run))

    @admin.display(description="document hash")
    def dsl_hash(self, run: Run) -> str:
        return run.document_id

    @admin.display(description="live page")
    def live_page(self, run: Run) -> str:
        url = live_run_url(run.pk)
        return format_html('<a href="{}">{}</a>', url, url) if url else EMPTY

    @admin.display(description="parent run")
    @admin.display(description="retries")
    def retry_of_link(self, run: Run) -> str:
        if run.retry_of_id is None:
            return EMPTY
        url = reverse("admin:flows_run_change", args=[run.retry_of_id])
        return format_html('<a href="{}">{}</a>', url, run.retry_of_id)

    def parent_link(self, run: Run) -> str:
        if run.parent_run_id is None:
            return EMPTY
        url = reverse("admin:flows_run_change", args=[run.parent_run_id])
        return format_html('<a href="{}">{}</a>', url, run.parent_run_id)

    @admin.display(description="inputs")
    def inputs_json(self, run: Run) -> str:
        return pretty_json(run.inputs)

    @admin.display(description="outputs")
    def outputs_json(self, run: Run) -> str:
        return pretty_json(run.outputs)

    @admin.display(description="error")
    def error_json(self, run: Run) -> str:
        return pretty_json(run.error)

    @admin.display(description="waiting (open questions)")
    def waiting_json(self, run: Run) -> str:
        return pretty_json(run.waiting) if run.waiting else EMPTY

    def change_view(self, request: Any, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> Any:
        extra_context = {**(extra_context or {}),
                         "has_cancel_permission": self.has_cancel_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    # -- cancelling ------------------------------------------------------------------------------

    @admin.action(description="Cancel the selected runs", permissions=["cancel"])
    def cancel_runs(self, request: Any, queryset: Any) -> None:
        cancelled, skipped = [], []
        for run in queryset.select_related(None).only("id", "status"):
            if run.is_finished:
                skipped.append(run)
                continue
            try:
                services.cancel_run(run)
            except ServiceError:  # it finished since the list was read
                skipped.append(run)
            else:
                cancelled.append(run)
        if cancelled:
            messages.success(request, f"Asked {len(cancelled)} run(s) to stop.")
        if skipped:
            messages.warning(request, f"Skipped {len(skipped)} finished run(s): "
                                      + ", ".join(str(run.pk) for run in skipped[:20])
                                      + (" …" if len(skipped) > 20 else ""))

    def get_urls(self) -> list[Any]:
        cancel = self.admin_site.admin_view(require_POST(self.cancel_view))
        return [path("<path:object_id>/cancel/", cancel, name="flows_run_cancel"),
                *super().get_urls()]

    def cancel_view(self, request: Any, object_id: str) -> HttpResponse:
        run = self.get_object(request, object_id)
        if run is None:
            raise Http404("no such run")
        if not self.has_cancel_permission(request, run):
            raise PermissionDenied
        try:
            services.cancel_run(run)
        except ServiceError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, "Asked the run to stop.")
        return HttpResponseRedirect(reverse("admin:flows_run_change", args=[run.pk]))
