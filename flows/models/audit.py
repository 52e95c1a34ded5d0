"""The audit log: who changed what, written by the services in the transaction of the change
(flows/audit.py). Append-only: no endpoint or admin screen changes or deletes an entry; only
`manage.py prune_audit` deletes old ones, for operators who must."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AuditEntry(models.Model):
    class Via(models.TextChoices):
        API = "api"
        PAGE = "page"
        ADMIN = "admin"
        COMMAND = "command"
        WEBHOOK = "webhook"
        SCHEDULE = "schedule"
        SYSTEM = "system"

    at = models.DateTimeField(auto_now_add=True)
    # Whose object it is: the audit log a user reads is theirs (their flows, tokens, …).
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="audit_entries")
    # Who did it (an owner, or staff in the admin); null for the system. The name is kept:
    # an entry outlives its actor's account.
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="audit_actions")
    actor_name = models.CharField(max_length=150, blank=True, default="")
    via = models.CharField(max_length=10, choices=Via.choices)
    action = models.CharField(max_length=40)
    object_type = models.CharField(max_length=20)
    object_id = models.CharField(max_length=100)
    # For the filters `?flow=` and `?run=`; a flow is never deleted (only marked), a run may be.
    flow = models.ForeignKey("flows.Flow", null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="audit_entries")
    run_id = models.UUIDField(null=True, blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(fields=["owner", "-at", "-id"], name="audit_owner_recent"),
            models.Index(fields=["owner", "action", "-at", "-id"], name="audit_owner_action"),
            models.Index(fields=["owner", "flow", "-at", "-id"], name="audit_owner_flow"),
            models.Index(fields=["owner", "run_id", "-at", "-id"], name="audit_owner_run"),
            models.Index(fields=["at"], name="audit_at"),  # pruning, the admin's date filter
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.object_type} {self.object_id}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None:
            raise PermissionError("audit entries are never changed")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("audit entries are deleted only by `manage.py prune_audit`")
