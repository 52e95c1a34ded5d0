"""Schedules in the admin: each with its next five times in its own timezone and the last run
it started; enabled and disabled in bulk. Checked and changed through the service."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from flows.errors import ServiceError
from flows.models import Schedule
from flows.services import schedules as schedule_service


class ScheduleForm(forms.ModelForm):
    version = forms.CharField(initial="published", max_length=16,
                              help_text='"published", "draft" or a version number.')

    class Meta:
        model = Schedule
        fields = ("flow", "cron", "timezone", "inputs", "version", "enabled")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors or cleaned.get("flow") is None:
            return cleaned
        version = cleaned["version"].strip()
        self.instance.flow = cleaned["flow"]
        try:
            schedule_service.apply_fields(
                self.instance, cleaned.get("cron"), cleaned.get("timezone"),
                cleaned.get("inputs"), int(version) if version.isdigit() else version,
                cleaned.get("enabled", False))
        except ServiceError as error:
            raise forms.ValidationError(error.message) from error
        # As the service wrote them: the cron normalised, the version as stored.
        cleaned["cron"], cleaned["version"] = self.instance.cron, self.instance.version
        return cleaned


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    list_display = ("flow", "owner", "cron", "timezone", "enabled", "next_at", "last_run_link",
                    "problem")
    list_select_related = ("flow", "flow__owner")
    list_filter = ("enabled", ("flow", admin.RelatedOnlyFieldListFilter))
    search_fields = ("flow__slug", "flow__name", "flow__owner__username", "cron")
    ordering = ("next_fire_at",)
    readonly_fields = ("next_times", "last_fired_at", "last_run_link", "last_error",
                       "created_at", "updated_at")
    actions = ["enable", "disable"]

    @admin.display(description="owner")
    def owner(self, schedule: Schedule) -> str:
        return schedule.flow.owner.get_username()

    @admin.display(description="next time", ordering="next_fire_at")
    def next_at(self, schedule: Schedule) -> str:
        if schedule.next_fire_at is None:
            return "—"
        return schedule.next_fire_at.astimezone(ZoneInfo(schedule.timezone)).strftime(
            "%a %Y-%m-%d %H:%M %Z")

    @admin.display(description="next 5 times (its timezone)")
    def next_times(self, schedule: Schedule) -> str:
        if schedule._state.adding or not schedule.enabled:  # (a new one has its uuid already)
            return "—"
        zone = ZoneInfo(schedule.timezone)
        return format_html("<ul>{}</ul>", format_html_join(
            "", "<li>{}</li>", ((moment.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z"),)
                                for moment in schedule_service.next_times(schedule))))

    @admin.display(description="last run")
    def last_run_link(self, schedule: Schedule) -> str:
        if schedule.last_run_id is None:
            return "—"
        return format_html('<a href="{}">{}</a>',
                           reverse("admin:flows_run_change", args=[schedule.last_run_id]),
                           schedule.last_fired_at.strftime("%Y-%m-%d %H:%M")
                           if schedule.last_fired_at else schedule.last_run_id)

    @admin.display(description="started nothing because")
    def problem(self, schedule: Schedule) -> str:
        return (schedule.last_error or {}).get("message", "")

    # Every change goes through the service (the audit log records it).
    def save_model(self, request: Any, obj: Schedule, form: Any, change: bool) -> None:
        # The form's clean() applied and checked the fields through the service already.
        schedule_service.save_checked(obj, created=not change)

    def delete_model(self, request: Any, obj: Schedule) -> None:
        schedule_service.delete_schedule(obj)

    def delete_queryset(self, request: Any, queryset: Any) -> None:
        for schedule in queryset.select_related("flow"):
            schedule_service.delete_schedule(schedule)

    @admin.action(description="Enable the selected schedules")
    def enable(self, request: Any, queryset: Any) -> None:
        for schedule in queryset:
            schedule_service.set_enabled(schedule, True)
        messages.success(request, f"Enabled {queryset.count()} schedule(s).")

    @admin.action(description="Disable the selected schedules")
    def disable(self, request: Any, queryset: Any) -> None:
        for schedule in queryset:
            schedule_service.set_enabled(schedule, False)
        messages.success(request, f"Disabled {queryset.count()} schedule(s).")
