"""API tokens in the admin: created through the service with the key shown once, revoked,
never edited (only the key's hash is stored, and it is never shown)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from flows import services
from flows.admin.forms import TokenForm
from flows.models import ApiToken


class ActiveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: Any, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked"), ("expired", "Expired")]

    def queryset(self, request: Any, queryset: Any) -> Any:
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True).exclude(expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(expires_at__lte=now)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "prefix", "created_at", "last_used_at", "expires_at",
                    "revoked_at")
    list_select_related = ("user",)
    list_filter = (ActiveFilter,)
    search_fields = ("name", "prefix", "user__username")
    ordering = ("-created_at",)
    actions = ["revoke_tokens"]
    # key_hash is not here: nobody needs to see it, and nobody may edit it.
    fields = ("name", "user", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at")
    readonly_fields = fields

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_revoke_permission(self, request: Any, obj: Any = None) -> bool:
        return request.user.has_perm("flows.change_apitoken")

    def add_view(self, request: Any, form_url: str = "",
                 extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        """Create a token through the service and show its key on this response only: the
        key is in no redirect, message or session, so it cannot be shown again."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = TokenForm(request.POST or None,
                         initial={"user": request.user.get_username()})
        context = {**self.admin_site.each_context(request), "opts": self.opts,
                   "title": "Add API token", "form": form}
        if request.method == "POST" and form.is_valid():
            token, key = services.create_token(form.cleaned_data["user"],
                                               form.cleaned_data["name"],
                                               form.cleaned_data["expires_days"])
            self.log_addition(request, token, [{"added": {}}])
            response = TemplateResponse(request, "admin/flows/apitoken/created.html",
                                        {**context, "title": "API token created",
                                         "token": token, "key": key})
            add_never_cache_headers(response)
            return response
        return TemplateResponse(request, "admin/flows/apitoken/add.html", context)

    @admin.action(description="Revoke the selected tokens", permissions=["revoke"])
    def revoke_tokens(self, request: Any, queryset: Any) -> None:
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True):
            services.revoke_token(token)
            revoked += 1
        messages.success(request, f"Revoked {revoked} token(s).")
