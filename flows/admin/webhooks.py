"""Webhooks in the admin: listed with their URL, a copyable example and their last delivery;
created through the service with the signing secret shown once; deleted; never edited."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers
from django.utils.html import format_html

from flows.errors import ServiceError
from flows.models import Flow, Webhook
from flows.pages.examples import curl_example
from flows.services import webhooks as webhook_service

_viewing: ContextVar[Any] = ContextVar("admin_request_viewing_webhooks", default=None)


class WebhookForm(forms.Form):
    flow = forms.ModelChoiceField(Flow.objects.filter(deleted_at__isnull=True)
                                  .select_related("owner").order_by("owner__username", "slug"))
    version = forms.CharField(initial="published", max_length=16,
                              help_text='"published", "draft" or a version number.')

    def clean_version(self) -> Any:
        version = self.cleaned_data["version"].strip()
        value = int(version) if version.isdigit() else version
        try:
            webhook_service.version_text(value)
        except ServiceError as error:
            raise forms.ValidationError(error.message) from error
        return value


@admin.register(Webhook)
class WebhookAdmin(admin.ModelAdmin):
    list_display = ("id", "flow", "owner", "version", "url", "created_at", "last_delivery_at")
    list_select_related = ("flow", "flow__owner")
    list_filter = ("version", ("flow", admin.RelatedOnlyFieldListFilter))
    search_fields = ("id", "flow__slug", "flow__name", "flow__owner__username")
    ordering = ("-created_at",)
    fields = ("id", "flow", "version", "url", "example", "created_at", "last_delivery_at")
    readonly_fields = fields

    @admin.display(description="owner")
    def owner(self, hook: Webhook) -> str:
        return hook.flow.owner.get_username()

    @admin.display(description="URL")
    def url(self, hook: Webhook) -> str:
        return format_html("<code>{}</code>", self._absolute(f"/hooks/{hook.pk}/"))

    @admin.display(description="example (set ASTRON_WEBHOOK_SECRET first)")
    def example(self, hook: Webhook) -> str:
        return format_html('<textarea readonly rows="7" cols="100" style="font-family: '
                           'monospace">{}</textarea>',
                           curl_example(self._absolute(f"/hooks/{hook.pk}/"), hook.flow.draft))

    def _absolute(self, path: str) -> str:
        request = _viewing.get()
        return request.build_absolute_uri(path) if request is not None else path

    def get_queryset(self, request: Any) -> Any:
        # The list and the page build absolute URLs from the request that reads them; the
        # admin instance is shared by every thread, so the request is kept per context.
        _viewing.set(request)
        return super().get_queryset(request)

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: Any, obj: Any = None) -> bool:
        return request.user.has_perm("flows.view_webhook") or \
            request.user.has_perm("flows.delete_webhook")

    def add_view(self, request: Any, form_url: str = "",
                 extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        """Create through the service; the signing secret is on this response only."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = WebhookForm(request.POST or None)
        context = {**self.admin_site.each_context(request), "opts": self.opts,
                   "title": "Add webhook", "form": form}
        if request.method == "POST" and form.is_valid():
            hook, signing_secret = webhook_service.create_webhook(
                form.cleaned_data["flow"], form.cleaned_data["version"])
            self.log_addition(request, hook, [{"added": {}}])
            url = request.build_absolute_uri(f"/hooks/{hook.pk}/")
            response = TemplateResponse(request, "admin/flows/webhook/created.html", {
                **context, "title": "Webhook created", "hook": hook, "url": url,
                "signing_secret": signing_secret,
                "example": curl_example(url, hook.flow.draft, signing_secret)})
            add_never_cache_headers(response)
            return response
        return TemplateResponse(request, "admin/flows/webhook/add.html", context)

    def delete_model(self, request: Any, obj: Webhook) -> None:
        webhook_service.delete_webhook(obj)

    def delete_queryset(self, request: Any, queryset: Any) -> None:
        for hook in queryset.select_related("flow"):
            webhook_service.delete_webhook(hook)
