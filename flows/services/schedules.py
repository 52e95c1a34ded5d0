"""Cron schedules: each scheduled time of an enabled schedule starts exactly one run of its
flow (docs/triggers.md, "Schedules").

Cron is parsed and matched by `cronsim` (the library healthchecks.io wrote for the same job)
over the *local wall time* of the schedule's timezone; the rules of a clock change are ours,
as docs/api.md states them: a local time that does not exist (the hour skipped in spring) does
not fire, and one that happens twice (the hour repeated in autumn) fires once, the first time.

Exactly once, whatever the number of processes: `next_fire_at` holds the next time not yet
claimed. The sweep of every executor (flows/execution/executor.py: the serving processes
inline, the workers in celery mode) looks for due schedules every few seconds, and whoever
moves `next_fire_at` on with a conditional UPDATE — `WHERE next_fire_at = <the time it read>`
— starts that time's run in the same transaction. Another process's UPDATE then matches no
row. The run's Idempotency-Key (`schedule:<id>:<time>`) makes a repeat impossible even so.
After an outage only the latest missed time fires.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from engine import InputsInvalid
from flows import audit
from flows.errors import ServiceError
from flows.models import Flow, Schedule
from flows.queries import one_or_none, uuid_or_none
from flows.services.runs import request_fingerprint, start_run
from flows.services.snapshots import resolve
from flows.services.webhooks import version_text, version_value

# One field of standard cron: lists of `*`, values and ranges (numbers or three-letter month
# and day names), each with an optional step. Extensions (L, W, #, ?, @daily) are refused.
_ITEM = r"(?:\*|[0-9]{1,2}|[A-Za-z]{3})(?:-(?:[0-9]{1,2}|[A-Za-z]{3}))?(?:/[0-9]{1,2})?"
CRON_FIELD = re.compile(rf"^{_ITEM}(?:,{_ITEM})*$")
FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")
MAX_CRON = 200
DUE_BATCH = 100
NEXT_SHOWN = 5
# How far back the latest missed time is looked for, widening until one is found.
LOOKBACK = (timedelta(hours=1), timedelta(days=2), timedelta(days=40), timedelta(days=400),
            timedelta(days=3000))


def schedules_of(flow: Flow) -> QuerySet[Schedule]:
    return Schedule.objects.filter(flow=flow).select_related("last_run").order_by("created_at")


def schedule_of(flow: Flow, schedule_id: Any) -> Schedule:
    schedule = one_or_none(Schedule.objects.filter(flow=flow, pk=uuid_or_none(schedule_id)))
    if schedule is None:
        raise ServiceError(404, "not_found", "there is no such schedule")
    return schedule


def create_schedule(flow: Flow, cron: Any, tz: Any = None, inputs: Any = None,
                    version: Any = None, enabled: Any = True) -> Schedule:
    schedule = Schedule(flow=flow)
    apply_fields(schedule, cron, tz, inputs, version, enabled)
    return save_checked(schedule, created=True)


def update_schedule(schedule: Schedule, cron: Any, tz: Any = None, inputs: Any = None,
                    version: Any = None, enabled: Any = True) -> Schedule:
    """Replace every field (PUT); the next time is counted again from now."""
    apply_fields(schedule, cron, tz, inputs, version, enabled)
    return save_checked(schedule, created=False)


def save_checked(schedule: Schedule, created: bool) -> Schedule:
    """Store a schedule whose fields `apply_fields` set and checked (the admin's form)."""
    with transaction.atomic():
        schedule.save()
        _record(schedule, "schedule.created" if created else "schedule.updated")
    return schedule


def set_enabled(schedule: Schedule, enabled: bool) -> Schedule:
    schedule.enabled = enabled
    schedule.next_fire_at = next_time(schedule.cron, schedule.timezone) if enabled else None
    with transaction.atomic():
        schedule.save(update_fields=["enabled", "next_fire_at", "updated_at"])
        _record(schedule, "schedule.updated")
    return schedule


def delete_schedule(schedule: Schedule) -> None:
    with transaction.atomic():
        schedule_id = schedule.pk
        schedule.delete()
        schedule.pk = schedule_id
        _record(schedule, "schedule.deleted")


def _record(schedule: Schedule, action: str) -> None:
    audit.record(schedule.flow.owner_id, action, "schedule", schedule.pk, flow=schedule.flow,
                 details={"cron": schedule.cron, "timezone": schedule.timezone,
                          "enabled": schedule.enabled, "version": schedule.version})


def apply_fields(schedule: Schedule, cron: Any, tz: Any, inputs: Any, version: Any,
                 enabled: Any) -> None:
    """Check every field before any is set: a refused request changes nothing."""
    cron = checked_cron(cron)
    zone_name = "UTC" if tz is None else tz
    checked_zone(zone_name)
    version = version_text(version)
    if not isinstance(enabled, bool):
        raise _invalid("/enabled", "enabled is true or false")
    inputs = {} if inputs is None else inputs
    snapshot = resolve(schedule.flow, version_value(version))
    try:
        snapshot.plan.apply_inputs(inputs)
    except InputsInvalid as invalid:
        raise ServiceError(400, "invalid_inputs", "the inputs do not match the flow's start node",
                           [problem.to_dict() for problem in invalid.problems]) from invalid
    schedule.cron, schedule.timezone, schedule.inputs = cron, zone_name, inputs
    schedule.version, schedule.enabled = version, enabled
    schedule.next_fire_at = next_time(cron, zone_name) if enabled else None


def checked_cron(cron: Any) -> str:
    if not isinstance(cron, str) or len(cron) > MAX_CRON:
        raise _invalid("/cron", "cron is a text of five fields: minute hour day month weekday")
    fields = cron.split()
    if len(fields) != 5:
        raise _invalid("/cron", f"cron has five fields (minute hour day month weekday), not "
                                f"{len(fields)}")
    for name, field in zip(FIELD_NAMES, fields, strict=True):
        if not CRON_FIELD.match(field):
            raise _invalid("/cron", f'the {name} field "{field[:20]}" is not standard cron '
                                    "(lists, ranges, steps, names)")
    text = " ".join(fields)
    try:
        CronSim(text, datetime(2000, 1, 1))
    except CronSimError as error:
        raise _invalid("/cron", f"{error} in {text!r}") from error
    return text


def checked_zone(name: Any) -> ZoneInfo:
    if not isinstance(name, str) or not name or len(name) > 64:
        raise _invalid("/timezone", "timezone is an IANA name such as Europe/Paris")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise _invalid("/timezone", f'"{name}" is not an IANA timezone') from error


def times_after(cron: str, zone: str | ZoneInfo, after: datetime) -> Iterator[datetime]:
    """The scheduled times strictly after `after`, in UTC, in order (DST rules above)."""
    tz = zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)
    after = after.astimezone(UTC)
    # Matched on wall time: cron says "at 02:30 local", whatever the offset that day. The
    # hour before the start covers a start inside an hour that is repeated.
    wall = after.astimezone(tz).replace(tzinfo=None) - timedelta(hours=1)
    for local in CronSim(cron, wall):
        moment = local.replace(tzinfo=tz)  # fold=0: a repeated time's first occurrence
        instant = moment.astimezone(UTC)
        if instant.astimezone(tz).replace(tzinfo=None) != local:
            continue  # a time the clock skipped: it does not exist, so it does not fire
        if instant > after:
            yield instant


def next_time(cron: str, zone: str, after: datetime | None = None) -> datetime:
    return next(times_after(cron, zone, after or timezone.now()))


def next_times(schedule: Schedule, count: int = NEXT_SHOWN,
               after: datetime | None = None) -> list[datetime]:
    times = times_after(schedule.cron, schedule.timezone, after or timezone.now())
    return [next(times) for _ in range(count)]


def latest_due(cron: str, zone: str, not_before: datetime, now: datetime) -> datetime:
    """The latest scheduled time in [not_before, now] (`not_before` is one)."""
    for window in LOOKBACK:
        start = max(not_before, now - window) - timedelta(microseconds=1)
        latest = None
        for moment in times_after(cron, zone, start):
            if moment > now:
                break
            latest = moment
        if latest is not None:
            return latest
        if start < not_before:
            break
    return not_before


def fire_due(now: datetime | None = None) -> int:
    """Start the run of every schedule whose time has come; the number started."""
    now = now or timezone.now()
    started = 0
    due = list(Schedule.objects.filter(enabled=True, next_fire_at__lte=now)
               .select_related("flow", "flow__owner").order_by("next_fire_at")[:DUE_BATCH])
    for schedule in due:
        if _fire(schedule, now):
            started += 1
    return started


def _fire(schedule: Schedule, now: datetime) -> bool:
    claimed_time = schedule.next_fire_at
    assert claimed_time is not None
    at = latest_due(schedule.cron, schedule.timezone, claimed_time, now)
    following = next_time(schedule.cron, schedule.timezone, now)
    flow = schedule.flow
    with transaction.atomic():
        claimed = Schedule.objects.filter(
            pk=schedule.pk, enabled=True, next_fire_at=claimed_time,
        ).update(next_fire_at=following, last_fired_at=at)
        if not claimed:
            return False  # another process took this time
        if flow.deleted_at is not None:
            Schedule.objects.filter(pk=schedule.pk).update(
                enabled=False, next_fire_at=None,
                last_error={"code": "not_found", "message": "the flow was deleted"})
            return False
        stamp = at.isoformat().replace("+00:00", "Z")
        try:
            with transaction.atomic():
                run, _ = start_run(
                    flow.owner, flow, schedule.inputs, version=version_value(schedule.version),
                    idempotency_key=f"schedule:{schedule.pk}:{stamp}",
                    fingerprint=request_fingerprint({"schedule": str(schedule.pk), "at": stamp}),
                    trigger={"type": "schedule", "schedule": str(schedule.pk), "at": stamp})
        except ServiceError as refused:
            # The time is used up either way; the schedule shows why it started nothing.
            Schedule.objects.filter(pk=schedule.pk).update(last_error=refused.body()["error"])
            return False
        Schedule.objects.filter(pk=schedule.pk).update(last_run=run, last_error=None)
    return True


def _invalid(path: str, message: str) -> ServiceError:
    return ServiceError(400, "invalid_value", message,
                        [{"path": path, "code": "invalid_value", "message": message}])
