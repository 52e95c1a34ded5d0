"""Flows and their versions in the admin. Every change goes through `flows.services`."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from flows import services
from flows.admin.display import (
    ReadOnly,
    live_run_url,
    pretty_json,
    problem_line,
    problem_list,
)
from flows.admin.forms import FlowDraftForm, ImportForm, RunForm, problems_error
from flows.admin.paging import LeanChangeList
from flows.errors import ServiceError
from flows.models import Flow, FlowVersion


def report_refusal(request: Any, error: ServiceError) -> None:
    """A refused change as messages: the reason, then each problem's path, code and message."""
    messages.error(request, error.message)
    for detail in error.details:
        messages.error(request, problem_line(detail))


class PublishedFilter(admin.SimpleListFilter):
    title = "published"
    parameter_name = "published"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Published"), ("no", "Never published")]

    def queryset(self, request: Any, queryset: Any) -> Any:
        if self.value() in ("yes", "no"):
            return queryset.filter(published_version__isnull=self.value() == "no")
        return queryset


class DeletedFilter(admin.SimpleListFilter):
    title = "deleted"
    parameter_name = "deleted"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "Not deleted"), ("yes", "Deleted")]

    def queryset(self, request: Any, queryset: Any) -> Any:
        if self.value() in ("yes", "no"):
            return queryset.filter(deleted_at__isnull=self.value() == "no")
        return queryset


@admin.register(Flow)
class FlowAdmin(admin.ModelAdmin):
    form = FlowDraftForm
    list_display = ("slug", "name", "owner", "published_version", "updated_at", "is_deleted")
    list_select_related = ("owner",)
    list_defer = ("draft", "description")  # documents can be large; the list never shows them
    search_fields = ("name", "slug", "owner__username")
    list_filter = (("owner", admin.RelatedOnlyFieldListFilter), PublishedFilter, DeletedFilter)
    ordering = ("-updated_at",)
    actions = ["validate_drafts", "publish_drafts", "delete_flows"]
    readonly_fields = ("owner", "slug", "name", "description", "published", "draft_hash",
                       "created_at", "updated_at", "deleted_at", "runs", "document",
                       "problems")

    # -- permissions: no Django add or delete; creating is importing, deleting is soft ---------

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        # A deleted flow is gone for its owner (the API answers 404): it is only shown here.
        if obj is not None and obj.is_deleted:
            return False
        return super().has_change_permission(request, obj)

    def has_import_permission(self, request: Any) -> bool:
        return request.user.has_perm(f"flows.{get_permission_codename('add', self.opts)}")

    def has_publish_permission(self, request: Any, obj: Any = None) -> bool:
        return self.has_change_permission(request, obj)

    def has_soft_delete_permission(self, request: Any) -> bool:
        return super().has_delete_permission(request)

    def has_run_permission(self, request: Any) -> bool:
        return request.user.has_perm("flows.add_run")

    # -- lists and pages -----------------------------------------------------------------------

    def get_queryset(self, request: Any) -> Any:
        return super().get_queryset(request).select_related("owner")

    def get_changelist(self, request: Any, **kwargs: Any) -> type:
        return LeanChangeList

    def get_fieldsets(self, request: Any, obj: Any = None) -> list[Any]:
        fieldsets: list[Any] = [
            (None, {"fields": ["owner", "slug", "name", "description", "published",
                               "draft_hash", "created_at", "updated_at", "deleted_at",
                               "runs"]}),
            ("Draft", {"fields": ["document", "problems"]}),
        ]
        if self.has_change_permission(request, obj):
            fieldsets.append(("Capacity", {"fields": ["max_active_runs"]}))
            fieldsets.append(("Edit the draft", {"fields": ["draft"], "classes": ["collapse"]}))
        return fieldsets

    @admin.display(boolean=True, description="deleted", ordering="deleted_at")
    def is_deleted(self, flow: Flow) -> bool:
        return flow.is_deleted

    @admin.display(description="published version")
    def published(self, flow: Flow) -> str:
        versions = reverse("admin:flows_flowversion_changelist") + f"?flow__id__exact={flow.pk}"
        label = f"v{flow.published_version}" if flow.published_version else "never published"
        return format_html('{} (<a href="{}">all versions</a>)', label, versions)

    @admin.display(description="runs")
    def runs(self, flow: Flow) -> str:
        url = reverse("admin:flows_run_changelist") + f"?flow={flow.pk}"
        return format_html('<a href="{}">Runs of this flow</a>', url)

    @admin.display(description="draft (DSL)")
    def document(self, flow: Flow) -> str:
        return pretty_json(flow.draft)

    @admin.display(description="problems")
    def problems(self, flow: Flow) -> str:
        found = services.problems_of(flow.owner, flow.draft, flow.slug)
        return problem_list([problem.to_dict() for problem in found])

    def save_model(self, request: Any, obj: Flow, form: Any, change: bool) -> None:
        # The draft and the limit are the editable fields; they change through the service.
        changes = {name: form.cleaned_data[name] for name in ("draft", "max_active_runs")
                   if name in form.changed_data}
        if change and changes:
            if "draft" in changes:
                changes["dsl"] = changes.pop("draft")
            services.update_flow(obj, **changes)

    def changelist_view(self, request: Any, extra_context: dict[str, Any] | None = None) -> Any:
        extra_context = {**(extra_context or {}),
                         "has_import_permission": self.has_import_permission(request)}
        return super().changelist_view(request, extra_context)

    def change_view(self, request: Any, object_id: str, form_url: str = "",
                    extra_context: dict[str, Any] | None = None) -> Any:
        extra_context = {**(extra_context or {}),
                         "has_publish_permission": self.has_publish_permission(request),
                         "has_run_permission": self.has_run_permission(request)}
        return super().change_view(request, object_id, form_url, extra_context)

    # -- actions ---------------------------------------------------------------------------------

    @admin.action(description="Validate the drafts of the selected flows")
    def validate_drafts(self, request: Any, queryset: Any) -> None:
        for flow in queryset.defer(None):  # the list left the drafts unread
            found = services.problems_of(flow.owner, flow.draft, flow.slug)
            if not found:
                messages.success(request, f"{flow}: the draft is valid.")
                continue
            messages.error(request, f"{flow}: {len(found)} problem(s).")
            for problem in found:
                messages.error(request, f"{flow}: {problem_line(problem.to_dict())}")

    @admin.action(description="Publish the drafts of the selected flows",
                  permissions=["publish"])
    def publish_drafts(self, request: Any, queryset: Any) -> None:
        for flow in queryset.defer(None):
            self.publish(request, flow)

    @admin.action(description="Delete the selected flows (their runs stay)",
                  permissions=["soft_delete"])
    def delete_flows(self, request: Any, queryset: Any) -> None:
        deleted = 0
        for flow in queryset.filter(deleted_at__isnull=True):
            services.delete_flow(flow)
            deleted += 1
        messages.success(request, f"Deleted {deleted} flow(s).")

    def publish(self, request: Any, flow: Flow) -> FlowVersion | None:
        if flow.is_deleted:
            messages.error(request, f"{flow}: a deleted flow cannot be published.")
            return None
        try:
            version, created = services.publish_flow(flow)
        except ServiceError as error:
            report_refusal(request, error)
            return None
        if created:
            messages.success(request, f"{flow}: published version {version.number} "
                                      f"({version.hash}).")
        else:
            messages.info(request, f"{flow}: the draft is unchanged; version "
                                   f"{version.number} stays the latest.")
        return version

    # -- own pages: import, export, publish, run -------------------------------------------------

    def get_urls(self) -> list[Any]:
        def view(function: Any) -> Any:
            return self.admin_site.admin_view(function)

        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        return [
            path("import/", view(self.import_view), name=f"{prefix}_import"),
            path("<path:object_id>/export/", view(self.export_view), name=f"{prefix}_export"),
            path("<path:object_id>/publish/", view(self.publish_view), name=f"{prefix}_publish"),
            path("<path:object_id>/run/", view(self.run_view), name=f"{prefix}_run"),
            *super().get_urls(),
        ]

    def flow_or_404(self, request: Any, object_id: str) -> Flow:
        flow = self.get_object(request, object_id)
        if flow is None or not self.has_view_permission(request, flow):
            raise Http404("no such flow")
        return flow

    def page(self, request: Any, template: str, title: str, **context: Any) -> TemplateResponse:
        return TemplateResponse(request, f"admin/flows/flow/{template}", {
            **self.admin_site.each_context(request), "opts": self.opts, "title": title,
            **context})

    def import_view(self, request: Any) -> Any:
        if not self.has_import_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            form = ImportForm(request.POST, request.FILES)
            if form.is_valid():
                try:
                    flow = services.create_flow(form.cleaned_data["owner"],
                                                form.cleaned_data["file"],
                                                slug=form.cleaned_data["slug"])
                except ServiceError as error:
                    report_refusal(request, error)
                else:
                    self.log_addition(request, flow, [{"added": {}}])
                    messages.success(request, f'Imported the flow "{flow.slug}".')
                    return HttpResponseRedirect(
                        reverse("admin:flows_flow_change", args=[flow.pk]))
        else:
            form = ImportForm(initial={"owner": request.user.get_username()})
        return self.page(request, "import.html", "Import a flow", form=form)

    def export_view(self, request: Any, object_id: str) -> HttpResponse:
        flow = self.flow_or_404(request, object_id)
        response = HttpResponse(json.dumps(flow.draft, indent=2, ensure_ascii=False) + "\n",
                                content_type="application/json; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{flow.slug}.json"'
        return response

    def publish_view(self, request: Any, object_id: str) -> HttpResponse:
        return require_POST(self._publish_view)(request, object_id)

    def _publish_view(self, request: Any, object_id: str) -> HttpResponse:
        flow = self.flow_or_404(request, object_id)
        if not self.has_publish_permission(request, flow):
            raise PermissionDenied
        self.publish(request, flow)
        return HttpResponseRedirect(reverse("admin:flows_flow_change", args=[flow.pk]))

    def run_view(self, request: Any, object_id: str) -> HttpResponse:
        flow = self.flow_or_404(request, object_id)
        if not self.has_run_permission(request):
            raise PermissionDenied
        form = RunForm(request.POST or None, flow=flow)
        if request.method == "POST" and form.is_valid():
            if flow.is_deleted:
                form.add_error(None, "A deleted flow cannot be run.")
            else:
                try:
                    run, _ = services.start_run(flow.owner, flow, form.cleaned_data["inputs"],
                                                version=form.cleaned_data["version"],
                                                trigger={"type": "admin"})
                except ServiceError as error:
                    if error.code == "missing_secret":
                        form.add_error(None, error.message)
                    else:
                        field = "inputs" if error.code == "invalid_inputs" else "version"
                        form.add_error(field, problems_error(error))
                else:
                    messages.success(request, f"Started run {run.pk}.")
                    return HttpResponseRedirect(
                        live_run_url(run.pk) or reverse("admin:flows_run_change", args=[run.pk]))
        return self.page(request, "run.html", f"Run {flow}", form=form, flow=flow,
                         original=flow, input_specs=pretty_json(start_inputs(flow.draft)))


def start_inputs(dsl: Any) -> Any:
    """The inputs the draft's start node declares, to show beside the inputs box."""
    for node in dsl.get("nodes", []) if isinstance(dsl, dict) else []:
        if isinstance(node, dict) and node.get("type") == "start":
            params = node.get("params")
            return params.get("inputs", {}) if isinstance(params, dict) else {}
    return {}


@admin.register(FlowVersion)
class FlowVersionAdmin(ReadOnly, admin.ModelAdmin):
    """Published versions are frozen: the admin only shows them."""

    list_display = ("flow_label", "number", "hash", "created_at")
    list_select_related = ("flow__owner",)
    list_filter = (("flow", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("flow__slug", "=document__hash")
    ordering = ("-created_at",)
    fields = ("flow_link", "number", "hash", "created_at", "dsl")
    readonly_fields = fields


    def get_queryset(self, request: Any) -> Any:
        return super().get_queryset(request).select_related("flow__owner")

    @admin.display(description="flow", ordering="flow__slug")
    def flow_label(self, version: FlowVersion) -> str:
        return f"{version.flow.owner.get_username()}/{version.flow.slug}"

    @admin.display(description="flow")
    def flow_link(self, version: FlowVersion) -> str:
        url = reverse("admin:flows_flow_change", args=[version.flow_id])
        return format_html('<a href="{}">{}</a>', url, self.flow_label(version))

    @admin.display(description="document (DSL)")
    def dsl(self, version: FlowVersion) -> str:
        return pretty_json(version.document.dsl)
