"""The audit log in the admin: read-only for everyone, superusers included; filtered by
action, actor, door and date; a `flow.updated` entry shows what changed in the document."""

from __future__ import annotations

import difflib
import json
from typing import Any

from django.contrib import admin
from django.utils.html import format_html

from flows.admin.display import pretty_json
from flows.models import AuditEntry, Document


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("at", "actor_name", "via", "action", "object_type", "object_id", "owner")
    list_select_related = ("owner",)
    list_filter = ("action", "via", ("at", admin.DateFieldListFilter),
                   ("actor", admin.RelatedOnlyFieldListFilter))
    search_fields = ("object_id", "actor_name", "owner__username")
    ordering = ("-at", "-id")
    show_full_result_count = False
    fields = ("at", "owner", "actor_name", "via", "action", "object_type", "object_id", "flow",
              "run_id", "details_json", "document_diff")
    readonly_fields = fields

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: Any = None) -> bool:
        return False

    @admin.display(description="details")
    def details_json(self, entry: AuditEntry) -> str:
        return pretty_json(entry.details)

    @admin.display(description="what changed in the document")
    def document_diff(self, entry: AuditEntry) -> str:
        hashes = entry.details.get("dsl_hash") if entry.action == "flow.updated" else None
        if not isinstance(hashes, dict):
            return "—"
        documents = dict(Document.objects.filter(
            hash__in=[hashes.get("before"), hashes.get("after")]).values_list("hash", "dsl"))
        before, after = documents.get(hashes.get("before")), documents.get(hashes.get("after"))
        if before is None or after is None:
            return "One of the two documents is not stored."
        lines = difflib.unified_diff(
            json.dumps(before, indent=2, ensure_ascii=False).splitlines(),
            json.dumps(after, indent=2, ensure_ascii=False).splitlines(),
            "before", "after", lineterm="", n=3)
        return format_html('<pre class="audit-diff" style="white-space: pre-wrap">{}</pre>',
                           "\n".join(lines) or "(the same document)")
