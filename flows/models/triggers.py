"""What starts runs from outside and what they may use without holding it: an owner's
secrets (encrypted, docs/secrets.md), a flow's webhooks and its cron schedules
(docs/triggers.md)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Secret(models.Model):
    """A value a flow uses by name (`{{secrets.NAME}}`) and never records.

    `ciphertext` is a Fernet token (authenticated encryption, flows/encryption.py): the value
    itself is never stored, shown or logged."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="secrets")
    name = models.CharField(max_length=64)
    description = models.CharField(max_length=500, blank=True, default="")
    ciphertext = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"],
                                               name="secret_owner_name_unique")]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:  # the ciphertext stays out of tracebacks and shells too
        return f"<Secret {self.name} of {self.owner_id}>"


class Webhook(models.Model):
    """A URL that starts runs of one flow when a request signed with its secret arrives."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    flow = models.ForeignKey("flows.Flow", on_delete=models.CASCADE, related_name="webhooks")
    version = models.CharField(max_length=16, default="published")  # published, draft or n
    # Encrypted like a secret: the HMAC needs the key itself, so it cannot be a hash.
    signing_ciphertext = models.TextField(editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_delivery_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"webhook {self.id}"

    def __repr__(self) -> str:
        return f"<Webhook {self.id} of flow {self.flow_id}>"


class Schedule(models.Model):
    """A cron expression in a timezone that starts runs of one flow.

    `next_fire_at` is the next scheduled time not yet claimed: whoever moves it on (one
    conditional UPDATE) starts that time's run, so each time starts exactly one run
    (flows/services/schedules.py)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    flow = models.ForeignKey("flows.Flow", on_delete=models.CASCADE, related_name="schedules")
    cron = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64, default="UTC")
    inputs = models.JSONField(default=dict, blank=True)
    version = models.CharField(max_length=16, default="published")
    enabled = models.BooleanField(default=True)
    next_fire_at = models.DateTimeField(null=True, blank=True)
    last_fired_at = models.DateTimeField(null=True, blank=True)
    last_run = models.ForeignKey("flows.Run", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="+")
    last_error = models.JSONField(null=True, blank=True)  # why its last time started no run
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["next_fire_at"], name="schedule_due",
                                condition=Q(enabled=True))]

    def __str__(self) -> str:
        return f"{self.cron} ({self.timezone})"
