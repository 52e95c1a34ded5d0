"""Secrets in the admin: the value is write-only. A form may set a new one; no page, list or
log entry ever shows the old (docs/secrets.md). Stored and changed through the service."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin

from flows.models import Secret
from flows.services import secrets as secret_store


class SecretForm(forms.ModelForm):
    value = forms.CharField(
        required=False, strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only: never shown again. On an existing secret, leave empty to keep "
                  "the current value.")

    class Meta:
        model = Secret
        fields = ("owner", "name", "description")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        adding = self.instance.pk is None
        value = cleaned.get("value")
        if adding and not value:
            self.add_error("value", "A new secret needs a value.")
        if adding and cleaned.get("name") and not secret_store.NAME.match(cleaned["name"]):
            self.add_error("name", "Capitals, digits and _, starting with a capital (OPENAI_KEY).")
        return cleaned


@admin.register(Secret)
class SecretAdmin(admin.ModelAdmin):
    form = SecretForm
    list_display = ("name", "owner", "description", "created_at", "updated_at", "last_used_at")
    list_select_related = ("owner",)
    list_filter = ("last_used_at",)
    search_fields = ("name", "description", "owner__username")
    ordering = ("owner__username", "name")
    readonly_fields = ("created_at", "updated_at", "last_used_at")

    def get_readonly_fields(self, request: Any, obj: Any = None) -> tuple[str, ...]:
        # A secret keeps its owner and name: flows name it, and a rename would break them.
        return (*self.readonly_fields, "owner", "name") if obj is not None else \
            self.readonly_fields

    def save_model(self, request: Any, obj: Secret, form: SecretForm, change: bool) -> None:
        value = form.cleaned_data.get("value")
        description = form.cleaned_data.get("description") or ""
        # The form checked the name, the value and that the name is free (the model's
        # unique constraint); the service encrypts.
        if change:
            if value:
                secret_store.update_secret(obj, value, description)
            else:
                obj.save(update_fields=["description", "updated_at"])
        else:
            created = secret_store.create_secret(obj.owner, obj.name, value, description)
            obj.pk = created.pk

    # Deleting goes through the service, like every change (the audit log records it).
    def delete_model(self, request: Any, obj: Secret) -> None:
        secret_store.delete_secret(obj)

    def delete_queryset(self, request: Any, queryset: Any) -> None:
        for secret in queryset:
            secret_store.delete_secret(secret)
