"""Worker processes in the admin: who executes runs, how many, and whether each is alive.
Read-only: the rows are the processes' heartbeats (flows/execution/heartbeat.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.utils import timezone

from flows.models import Worker
from flows.services import lifecycle


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = ("name", "alive", "live_runs", "heartbeat_at", "started_at")
    search_fields = ("name",)
    ordering = ("-heartbeat_at",)
    fields = list_display
    readonly_fields = fields

    @admin.display(boolean=True, description="alive")
    def alive(self, worker: Worker) -> bool:
        """Beat within WORKER_STALE_S: otherwise its runs are taken over."""
        return timezone.now() - worker.heartbeat_at < timedelta(seconds=lifecycle.WORKER_STALE_S)

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False
