"""Cron schedules (docs/api.md, Schedules): which times exist (DST both ways, Feb 29, day of
month with day of week), exactly one run per time whoever races for it, only the latest
missed time after an outage, and the API's refusals."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from flows.models import Run, Schedule
from flows.services import schedules

from .factories import api_client, assert_error, flow, no_rows_change, user


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def first(cron: str, zone: str, after: datetime, count: int) -> list[datetime]:
    times = schedules.times_after(cron, zone, after)
    return [next(times) for _ in range(count)]


# --- which times exist ----------------------------------------------------------------------


def test_paris_spring_forward_skips_the_time_that_does_not_exist():
    # 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day.
    assert first("30 2 * * *", "Europe/Paris", utc(2026, 3, 27, 12), 3) == [
        utc(2026, 3, 28, 1, 30),  # 02:30 CET
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST: the 29th had none
        utc(2026, 3, 31, 0, 30)]


def test_paris_fall_back_fires_a_repeated_time_once():
    # 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:00–02:59 happen twice.
    assert first("30 2 * * *", "Europe/Paris", utc(2026, 10, 24, 12), 2) == [
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST, the first time; not again at 01:30Z
        utc(2026, 10, 26, 1, 30)]
    assert first("*/30 * * * *", "Europe/Paris", utc(2026, 10, 24, 23, 45), 4) == [
        utc(2026, 10, 25, 0, 0), utc(2026, 10, 25, 0, 30),  # 02:00 and 02:30 CEST
        utc(2026, 10, 25, 2, 0), utc(2026, 10, 25, 2, 30)]  # 03:00 CET: the repeat skipped


def test_new_york_both_ways():
    # 2026-03-08 02:00 EST → 03:00 EDT; 2026-11-01 02:00 EDT → 01:00 EST.
    assert first("30 2 * * *", "America/New_York", utc(2026, 3, 7), 2) == [
        utc(2026, 3, 7, 7, 30), utc(2026, 3, 9, 6, 30)]
    assert first("30 1 * * *", "America/New_York", utc(2026, 10, 31, 12), 2) == [
        utc(2026, 11, 1, 5, 30),  # 01:30 EDT; 01:30 EST (06:30Z) does not fire again
        utc(2026, 11, 2, 6, 30)]


def test_a_start_inside_the_repeated_hour_does_not_fire_its_times_again():
    # 01:10Z is 02:10 CET, the second pass of 02:10: 02:30 was already at 00:30Z.
    assert first("30 2 * * *", "Europe/Paris", utc(2026, 10, 25, 1, 10), 1) == [
        utc(2026, 10, 26, 1, 30)]


def test_february_the_29th_comes_every_leap_year():
    assert first("0 12 29 2 *", "UTC", utc(2026, 1, 1), 3) == [
        utc(2028, 2, 29, 12), utc(2032, 2, 29, 12), utc(2036, 2, 29, 12)]


def test_day_of_month_and_day_of_week_together_mean_either():
    # Both restricted: the 13th, or a Friday (cron's rule). January 2026: Fri 2, 9, Tue 13.
    assert first("0 0 13 * 5", "UTC", utc(2026, 1, 1), 4) == [
        utc(2026, 1, 2), utc(2026, 1, 9), utc(2026, 1, 13), utc(2026, 1, 16)]
    # One of them `*`: only the other counts.
    assert first("0 0 * * FRI", "UTC", utc(2026, 1, 1), 2) == [utc(2026, 1, 2), utc(2026, 1, 9)]
    assert first("0 0 13 * *", "UTC", utc(2026, 1, 1), 2) == [utc(2026, 1, 13), utc(2026, 2, 13)]


def test_names_ranges_lists_and_steps():
    assert first("*/15 9-10 * JAN MON-FRI", "UTC", utc(2026, 1, 2, 10, 40), 3) == [
        utc(2026, 1, 2, 10, 45), utc(2026, 1, 5, 9), utc(2026, 1, 5, 9, 15)]
    assert first("0 0,12 1 */6 *", "UTC", utc(2026, 1, 1, 6), 3) == [
        utc(2026, 1, 1, 12), utc(2026, 7, 1), utc(2026, 7, 1, 12)]


@pytest.mark.parametrize("cron", ["61 * * * *", "* * * *", "* * * * * *", "0 0 L * *",
                                  "@daily", "0 0 30 2 *", "0 0 * * MON#2", "0 0 ? * *",
                                  "", 5, None, "0 0 * * FUNDAY", "0 24 * * *"])
def test_what_is_not_standard_cron_is_refused(cron):
    with pytest.raises(Exception) as refused:
        schedules.checked_cron(cron)
    assert refused.value.code == "invalid_value"


# --- the API --------------------------------------------------------------------------------


pytestmark = pytest.mark.django_db


@pytest.fixture
def hello(owner):
    return flow(owner, "hello", slug="hello", publish=True)


def test_a_schedule_is_created_with_its_next_five_times(api, hello):
    created = api.post("/api/flows/hello/schedules/", {
        "cron": "0 9 * * MON-FRI", "timezone": "Europe/Paris", "inputs": {"name": "Ada"}},
        format="json")
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["cron"] == "0 9 * * MON-FRI" and body["timezone"] == "Europe/Paris"
    assert body["version"] == "published" and body["enabled"] is True
    assert len(body["next_runs"]) == 5
    times = [datetime.fromisoformat(moment.replace("Z", "+00:00")) for moment in body["next_runs"]]
    assert times == sorted(times) and all(moment.minute == 0 for moment in times)
    assert all(moment.hour in (7, 8) for moment in times)  # 09:00 in Paris, in UTC
    listed = api.get("/api/flows/hello/schedules/").json()["results"]
    assert [row["id"] for row in listed] == [body["id"]]
    assert api.get(f"/api/flows/hello/schedules/{body['id']}/").json() == {
        **body, "next_runs": listed[0]["next_runs"]}


def test_a_schedule_is_replaced_disabled_and_deleted(api, hello):
    made = api.post("/api/flows/hello/schedules/", {"cron": "* * * * *",
                                                    "inputs": {"name": "Ada"}},
                    format="json").json()
    path = f"/api/flows/hello/schedules/{made['id']}/"
    changed = api.put(path, {"cron": "0 0 1 1 *", "inputs": {"name": "Bob"}, "enabled": False},
                      format="json")
    assert changed.status_code == 200, changed.content
    assert changed.json()["enabled"] is False and changed.json()["next_runs"] == []
    assert Schedule.objects.get().next_fire_at is None
    assert api.delete(path).status_code == 204
    assert_error(api.get(path), 404, "not_found")


@pytest.mark.parametrize("body, code", [
    ({"cron": "61 * * * *"}, "invalid_value"),
    ({"cron": "* * * * *", "timezone": "Mars/Olympus_Mons"}, "invalid_value"),
    ({"cron": "* * * * *", "timezone": 3}, "invalid_value"),
    ({"cron": "* * * * *", "inputs": {"name": 3}}, "invalid_inputs"),
    ({"cron": "* * * * *"}, "invalid_inputs"),  # name is required
    ({"cron": "* * * * *", "inputs": []}, "invalid_inputs"),
    ({"cron": "* * * * *", "inputs": {"name": "A"}, "enabled": "yes"}, "invalid_value"),
    ({"cron": "* * * * *", "inputs": {"name": "A"}, "version": 0}, "invalid_value"),
    ({"inputs": {"name": "A"}}, "invalid_request"),
    ({"cron": "* * * * *", "inputs": {"name": "A"}, "colour": "red"}, "invalid_request"),
])
def test_bad_schedules_are_refused_and_nothing_is_written(api, hello, body, code):
    assert_error(api.post("/api/flows/hello/schedules/", body, format="json"), 400, code)
    assert not Schedule.objects.exists()


def test_a_refused_replacement_changes_nothing(api, hello):
    made = api.post("/api/flows/hello/schedules/", {"cron": "0 0 * * *",
                                                    "inputs": {"name": "Ada"}},
                    format="json").json()
    before = Schedule.objects.values().get()
    assert_error(api.put(f"/api/flows/hello/schedules/{made['id']}/",
                         {"cron": "nope", "inputs": {"name": "Bob"}}, format="json"),
                 400, "invalid_value")
    assert Schedule.objects.values().get() == before


def test_a_schedule_of_a_flow_never_published_is_refused(api, owner):
    flow(owner, "hello", slug="draft-only")
    with no_rows_change():
        assert_error(api.post("/api/flows/draft-only/schedules/", {
            "cron": "* * * * *", "inputs": {"name": "A"}}, format="json"), 409, "not_published")
    assert not Schedule.objects.exists()


def test_someone_elses_schedules_are_not_found(api, hello):
    made = api.post("/api/flows/hello/schedules/", {"cron": "0 0 * * *",
                                                    "inputs": {"name": "Ada"}},
                    format="json").json()
    stranger = api_client(user("eve"))
    assert_error(stranger.get("/api/flows/hello/schedules/"), 404, "not_found")
    assert_error(stranger.delete(f"/api/flows/hello/schedules/{made['id']}/"), 404, "not_found")
    assert Schedule.objects.count() == 1


# --- firing ---------------------------------------------------------------------------------


def due_schedule(hello, cron="0 * * * *", at=None) -> Schedule:
    schedule = schedules.create_schedule(hello, cron, "UTC", {"name": "Ada"})
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=at or utc(2026, 5, 1, 10))
    schedule.refresh_from_db()
    return schedule


def test_a_due_time_starts_one_run_and_moves_on(hello):
    schedule = due_schedule(hello)
    now = utc(2026, 5, 1, 10, 0, 4)
    assert schedules.fire_due(now) == 1
    assert schedules.fire_due(now) == 0  # the same time again: nothing more
    run = Run.objects.get()
    assert run.trigger == {"type": "schedule", "schedule": str(schedule.pk),
                           "at": "2026-05-01T10:00:00Z"}
    assert run.inputs == {"name": "Ada"} and run.version_number == 1
    schedule.refresh_from_db()
    assert schedule.next_fire_at == utc(2026, 5, 1, 11) and schedule.last_run == run


def test_after_an_outage_only_the_latest_missed_time_fires(hello):
    schedule = due_schedule(hello, at=utc(2026, 5, 1, 10))  # down from 10:00 to 15:20
    assert schedules.fire_due(utc(2026, 5, 1, 15, 20)) == 1
    assert Run.objects.get().trigger["at"] == "2026-05-01T15:00:00Z"
    schedule.refresh_from_db()
    assert schedule.next_fire_at == utc(2026, 5, 1, 16)
    # A monthly schedule down for ten weeks: the latest first of the month.
    monthly = due_schedule(hello, cron="0 0 1 * *", at=utc(2026, 1, 1))
    schedules.fire_due(utc(2026, 3, 15))
    assert Run.objects.filter(trigger__schedule=str(monthly.pk)).get().trigger["at"] == \
        "2026-03-01T00:00:00Z"


def test_a_disabled_schedule_starts_nothing(hello):
    schedule = due_schedule(hello)
    schedules.set_enabled(schedule, False)
    assert schedules.fire_due(utc(2030, 1, 1)) == 0 and not Run.objects.exists()


def test_a_time_whose_run_is_refused_is_used_up_and_says_why(hello, owner):
    schedule = due_schedule(hello)
    Schedule.objects.filter(pk=schedule.pk).update(inputs={"name": 3})  # no longer fits
    assert schedules.fire_due(utc(2026, 5, 1, 10, 0, 1)) == 0
    schedule.refresh_from_db()
    assert schedule.last_error["code"] == "invalid_inputs"
    assert schedule.next_fire_at == utc(2026, 5, 1, 11) and not Run.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_executors_racing_for_the_same_times_start_one_run_each(owner):
    """Eight sweeps at once (threads, each with its own database connection: on PostgreSQL
    real concurrent transactions), over twenty due schedules, five rounds."""
    if connection.vendor == "sqlite":
        pytest.skip("SQLite serialises writers: the race needs PostgreSQL")
    hello = flow(owner, "hello", slug="hello", publish=True)
    # Times a day ahead: the executor's own sweep (it starts with the first run) must not
    # find them due by the real clock while the test's sweeps claim them.
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=1)
    for _ in range(20):
        due_schedule(hello, at=base)
    for round_ in range(5):
        now = base + timedelta(hours=round_, seconds=3)
        barrier = threading.Barrier(8)
        errors = []

        def sweep(now=now, barrier=barrier, errors=errors):
            try:
                barrier.wait()
                schedules.fire_due(now)
            except Exception as error:
                errors.append(error)
            finally:
                connection.close()

        threads = [threading.Thread(target=sweep) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert Run.objects.count() == 20 * (round_ + 1)
    per_time = {}
    for run in Run.objects.all():
        key = (run.trigger["schedule"], run.trigger["at"])
        per_time[key] = per_time.get(key, 0) + 1
    assert set(per_time.values()) == {1} and len(per_time) == 100
    assert {schedule.next_fire_at for schedule in Schedule.objects.all()} == {
        base + timedelta(hours=5)}


@pytest.mark.django_db(transaction=True)
def test_the_executors_sweep_starts_a_due_schedule_within_ten_seconds(owner):
    from flows.execution.executor import executor

    hello = flow(owner, "hello", slug="hello", publish=True)
    executor.start()
    schedule = schedules.create_schedule(hello, "* * * * *", "UTC", {"name": "Ada"})
    due_at = datetime.now(UTC) - timedelta(seconds=1)
    Schedule.objects.filter(pk=schedule.pk).update(next_fire_at=due_at)
    deadline = datetime.now(UTC) + timedelta(seconds=12)
    while not Run.objects.exists() and datetime.now(UTC) < deadline:
        threading.Event().wait(0.1)
    run = Run.objects.get()
    assert run.created_at - due_at < timedelta(seconds=10)
    executor.wait(run.pk, 10)
    assert Run.objects.get().status == "succeeded"


# --- the flow page --------------------------------------------------------------------------




def test_the_page_adds_shows_disables_and_deletes_a_schedule(browser, hello):
    added = browser.post("/flows/hello/schedules/", {
        "cron": "30 2 * * *", "timezone": "Europe/Paris", "inputs": '{"name": "Ada"}',
        "version": "published"})
    assert added.status_code == 302, added.content.decode()[:3000]
    schedule = Schedule.objects.get()
    page = browser.get("/flows/hello/").content.decode()
    assert "30 2 * * *" in page and "Europe/Paris" in page
    assert page.count("02:30 CE") == 5  # five next times, in Paris time (CET or CEST)

    browser.post(f"/flows/hello/schedules/{schedule.pk}/enable/", {"enabled": "0"})
    schedule.refresh_from_db()
    assert not schedule.enabled and schedule.next_fire_at is None
    assert "disabled" in browser.get("/flows/hello/").content.decode()
    browser.post(f"/flows/hello/schedules/{schedule.pk}/enable/", {"enabled": "1"})
    schedule.refresh_from_db()
    assert schedule.enabled and schedule.next_fire_at is not None

    assert browser.post(f"/flows/hello/schedules/{schedule.pk}/delete/").status_code == 302
    assert not Schedule.objects.exists()


@pytest.mark.parametrize("fields, message", [
    ({"cron": "0 0 * * everyday", "timezone": "UTC", "inputs": '{"name": "A"}'}, "not standard cron"),
    ({"cron": "0 0 * * *", "timezone": "Nowhere/City", "inputs": '{"name": "A"}'},
     "not an IANA timezone"),
    ({"cron": "0 0 * * *", "timezone": "UTC", "inputs": "{nope"}, "not valid JSON"),
    ({"cron": "0 0 * * *", "timezone": "UTC", "inputs": '{"name": 1}'}, "do not match"),
])
def test_the_page_explains_a_refused_schedule_and_writes_nothing(browser, hello, fields,
                                                                 message):
    answer = browser.post("/flows/hello/schedules/", {**fields, "version": "published"})
    assert answer.status_code == 400
    assert message in answer.content.decode()
    assert not Schedule.objects.exists()


# --- the admin ------------------------------------------------------------------------------




def test_the_admin_adds_a_schedule_and_shows_its_next_times_in_its_timezone(staff_client,
                                                                            hello):
    added = staff_client.post("/admin/flows/schedule/add/", {
        "flow": hello.pk, "cron": "30  2 * * *", "timezone": "America/New_York",
        "inputs": '{"name": "Ada"}', "version": "published", "enabled": "on"})
    assert added.status_code == 302, added.content.decode()[:3000]
    schedule = Schedule.objects.get()
    assert schedule.cron == "30 2 * * *" and schedule.next_fire_at is not None
    page = staff_client.get(f"/admin/flows/schedule/{schedule.pk}/change/").content.decode()
    assert page.count("02:30 E") == 5  # EST or EDT
    listing = staff_client.get("/admin/flows/schedule/").content.decode()
    assert "30 2 * * *" in listing

    staff_client.post("/admin/flows/schedule/", {"action": "disable",
                                                 "_selected_action": [schedule.pk]})
    schedule.refresh_from_db()
    assert not schedule.enabled and schedule.next_fire_at is None


@pytest.mark.parametrize("fields", [
    {"cron": "nope", "timezone": "UTC", "inputs": '{"name": "A"}'},
    {"cron": "0 0 * * *", "timezone": "Atlantis", "inputs": '{"name": "A"}'},
    {"cron": "0 0 * * *", "timezone": "UTC", "inputs": '{"name": 1}'},
])
def test_the_admin_refuses_a_bad_schedule(staff_client, hello, fields):
    answer = staff_client.post("/admin/flows/schedule/add/", {
        "flow": hello.pk, "version": "published", "enabled": "on", **fields})
    assert answer.status_code == 200 and not Schedule.objects.exists()


def test_the_flow_admin_links_to_its_triggers(staff_client, hello):
    page = staff_client.get(f"/admin/flows/flow/{hello.pk}/change/").content.decode()
    assert f"/admin/flows/schedule/?flow__id__exact={hello.pk}" in page
    assert f"/admin/flows/webhook/?flow__id__exact={hello.pk}" in page
