"""The audit log (docs/api.md, Audit log): every change to flows, tokens, secrets, webhooks and
schedules, and every answer and cancel, recorded with who, through what and what — in the
change's own transaction — readable by its owner, and changed by nobody."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from flows import audit, services
from flows.models import AuditEntry, Flow, Run
from flows.services import schedules as schedule_service

from .factories import api_client, assert_error, sample, user

pytestmark = pytest.mark.django_db


def actions(**filters) -> list[str]:
    return list(AuditEntry.objects.filter(**filters).order_by("at", "id")
                .values_list("action", flat=True))


def test_changes_through_the_api_are_recorded_with_who_and_how(api, owner):
    api.post("/api/flows/", {"slug": "hello", "dsl": sample("hello")}, format="json")
    changed = {**sample("hello"), "description": "Changed"}
    api.put("/api/flows/hello/", {"dsl": changed}, format="json")
    api.post("/api/flows/hello/publish/", {}, format="json")
    api.post("/api/secrets/", {"name": "KEY", "value": "v-1"}, format="json")
    api.put("/api/secrets/KEY/", {"value": "v-2"}, format="json")
    api.delete("/api/secrets/KEY/")
    hook = api.post("/api/flows/hello/webhooks/", {}, format="json").json()
    api.delete(f"/api/flows/hello/webhooks/{hook['id']}/")
    made = api.post("/api/flows/hello/schedules/", {"cron": "0 0 * * *",
                                                    "inputs": {"name": "A"}},
                    format="json").json()
    api.put(f"/api/flows/hello/schedules/{made['id']}/", {"cron": "0 1 * * *",
                                                          "inputs": {"name": "A"}},
            format="json")
    api.delete(f"/api/flows/hello/schedules/{made['id']}/")
    api.delete("/api/flows/hello/")

    assert actions() == [
        "token.created",  # the test client's key (no request: the system)
        "flow.created", "flow.updated", "flow.published", "secret.created", "secret.updated",
        "secret.deleted", "webhook.created", "webhook.deleted", "schedule.created",
        "schedule.updated", "schedule.deleted", "flow.deleted"]
    through_api = AuditEntry.objects.exclude(action="token.created")
    assert {(e.actor_name, e.via, e.owner_id) for e in through_api} == {("ada", "api", owner.pk)}
    updated = AuditEntry.objects.get(action="flow.updated")
    flow = Flow.objects.get(slug="hello")
    assert updated.details["dsl_hash"]["after"] == flow.draft_hash
    assert updated.details["dsl_hash"]["before"] != flow.draft_hash
    assert AuditEntry.objects.get(action="flow.published").details["version"] == 1
    assert all("v-1" not in str(e.details) and "v-2" not in str(e.details)
               for e in AuditEntry.objects.all())


def test_answers_and_cancels_are_recorded_with_their_run(api, owner):
    flow = services.create_flow(owner, sample("approval"), slug="approval")
    waiting = Run.objects.create(owner=owner, flow=flow, document_id=flow.draft_hash,
                                 status="waiting", waiting=[{
                                     "node": "ask", "question": "ok?", "timeout_at": None,
                                     "options": [{"id": "yes", "label": "Yes"}]}])
    services.documents.store_document(flow.draft)
    assert api.post(f"/api/runs/{waiting.pk}/answer/", {"answer": "fine", "option": "yes"},
                    format="json").status_code == 202
    assert api.post(f"/api/runs/{waiting.pk}/cancel/", {}, format="json").status_code == 202
    entries = AuditEntry.objects.filter(run_id=waiting.pk).order_by("id")
    assert [(e.action, e.via, e.actor_name) for e in entries] == [
        ("run.answered", "api", "ada"), ("run.cancelled", "api", "ada")]
    assert entries[0].details == {"node": "ask", "option": "yes", "by": "ada"}
    assert entries[0].flow == flow


def test_an_entry_is_committed_with_its_change_or_not_at_all(owner, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the audit log cannot be written")

    monkeypatch.setattr(audit.AuditEntry.objects, "create", broken)
    with pytest.raises(RuntimeError):
        services.create_flow(owner, sample("hello"), slug="hello")
    assert not Flow.objects.exists()
    monkeypatch.undo()

    flow = services.create_flow(owner, sample("hello"), slug="hello")
    monkeypatch.setattr(audit.AuditEntry.objects, "create", broken)
    with pytest.raises(RuntimeError):
        services.update_flow(flow, dsl={**sample("hello"), "name": "Renamed"})
    with pytest.raises(RuntimeError):
        services.delete_flow(flow)
    flow = Flow.objects.get(pk=flow.pk)
    assert flow.name != "Renamed" and flow.deleted_at is None
    assert actions() == ["flow.created"]


def test_a_refused_change_records_nothing(api):
    before = AuditEntry.objects.count()
    assert_error(api.post("/api/flows/", {"dsl": {"dsl": "astron/v1"}}, format="json"), 400,
                 "invalid_dsl")
    assert_error(api.post("/api/secrets/", {"name": "bad name", "value": "x"}, format="json"),
                 400, "invalid_value")
    assert AuditEntry.objects.count() == before


def test_the_door_is_named_pages_admin_commands_and_the_system(owner, browser, staff_client):
    flow = services.create_flow(owner, sample("hello"), slug="hello")
    services.publish_flow(flow)
    browser.post("/flows/hello/schedules/", {"cron": "0 0 * * *", "timezone": "UTC",
                                             "inputs": '{"name": "A"}', "version": "published"})
    staff_client.post("/admin/flows/secret/add/", {"owner": owner.pk, "name": "KEY",
                                                   "value": "x"})
    call_command("create_token", "ada", "--name", "cli", stdout=io.StringIO())
    schedule_service.set_enabled(schedule_service.schedules_of(flow).get(), False)
    doors = {(e.action, e.via, e.actor_name or None)
             for e in AuditEntry.objects.exclude(action__in=["flow.created", "flow.published"])}
    assert doors == {("schedule.created", "page", "ada"), ("secret.created", "admin", "staff"),
                     ("token.created", "command", None), ("schedule.updated", "system", None)}


def test_the_api_lists_your_entries_newest_first_with_filters(api, owner):
    other = user("eve")
    services.create_flow(other, sample("hello"), slug="hers")
    api.post("/api/flows/", {"slug": "hello", "dsl": sample("hello")}, format="json")
    api.post("/api/flows/", {"slug": "other", "dsl": sample("hello")}, format="json")
    api.post("/api/flows/hello/publish/", {}, format="json")

    page = api.get("/api/audit/", {"page_size": 2}).json()
    assert [e["action"] for e in page["results"]] == ["flow.published", "flow.created"]
    entry = page["results"][0]
    assert set(entry) == {"id", "at", "actor", "via", "action", "object", "details"}
    assert entry["object"] == {"type": "flow", "id": "hello"} and entry["actor"] == "ada"
    rest = api.get(page["next"]).json()["results"]
    assert [e["action"] for e in rest] == ["flow.created", "token.created"]
    assert [e["action"] for e in api.get("/api/audit/", {"flow": "hello"}).json()["results"]] \
        == ["flow.published", "flow.created"]
    assert [e["object"]["id"] for e in
            api.get("/api/audit/", {"action": "flow.created"}).json()["results"]] == \
        ["other", "hello"]
    assert api.get("/api/audit/", {"flow": "hers"}).json()["results"] == []  # not yours
    assert api.get("/api/audit/", {"run": "00000000-0000-0000-0000-000000000000"}
                   ).json()["results"] == []
    for bad in ({"action": "flow.exploded"}, {"run": "nope"}, {"cursor": "xyz"}):
        assert_error(api.get("/api/audit/", bad), 400, "invalid_request")
    assert api_client().get("/api/audit/").status_code == 401


def test_entries_cannot_be_changed_or_deleted_by_anyone(owner, staff_client):
    services.create_flow(owner, sample("hello"), slug="hello")
    entry = AuditEntry.objects.get(action="flow.created")
    entry.action = "flow.deleted"
    with pytest.raises(PermissionError):
        entry.save()
    with pytest.raises(PermissionError):
        entry.delete()
    assert staff_client.get(f"/admin/flows/auditentry/{entry.pk}/change/").status_code == 200
    assert staff_client.post(f"/admin/flows/auditentry/{entry.pk}/change/",
                             {"action": "x"}).status_code == 403
    assert staff_client.post(f"/admin/flows/auditentry/{entry.pk}/delete/",
                             {"post": "yes"}).status_code == 403
    assert staff_client.get("/admin/flows/auditentry/add/").status_code == 403
    assert AuditEntry.objects.get(pk=entry.pk).action == "flow.created"


def test_the_admin_filters_and_shows_what_an_update_changed(owner, staff_client):
    flow = services.create_flow(owner, sample("hello"), slug="hello")
    services.update_flow(flow, dsl={**sample("hello"), "description": "A new description"})
    listing = staff_client.get("/admin/flows/auditentry/", {"action": "flow.updated"})
    assert listing.status_code == 200 and "flow.updated" in listing.content.decode()
    entry = AuditEntry.objects.get(action="flow.updated")
    page = staff_client.get(f"/admin/flows/auditentry/{entry.pk}/change/").content.decode()
    assert "+  &quot;description&quot;: &quot;A new description&quot;" in page


def test_the_flow_page_shows_its_history(owner, browser):
    flow = services.create_flow(owner, sample("hello"), slug="hello")
    services.publish_flow(flow)
    page = browser.get("/flows/hello/").content.decode()
    assert "flow.published" in page and "flow.created" in page


def test_prune_audit_deletes_old_entries_and_prune_runs_leaves_them(owner):
    services.create_flow(owner, sample("hello"), slug="hello")
    AuditEntry.objects.filter(action="flow.created").update(
        at=timezone.now() - timedelta(days=400))
    services.create_flow(owner, sample("hello"), slug="recent")
    call_command("prune_runs", "--older-than", "0", stdout=io.StringIO())
    assert AuditEntry.objects.count() == 2
    out = io.StringIO()
    call_command("prune_audit", "--older-than", "365", stdout=out)
    assert "Deleted 1" in out.getvalue()
    assert list(AuditEntry.objects.values_list("object_id", flat=True)) == ["recent"]


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's planner only")
@pytest.mark.parametrize("filters, index", [
    ({}, "audit_owner_recent"),
    ({"action": "flow.updated"}, "audit_owner_action"),
    ({"flow_id": 1}, "audit_owner_flow"),
    ({"run_id": "00000000-0000-0000-0000-000000000000"}, "audit_owner_run"),
])
def test_the_filters_use_their_indexes(owner, filters, index):
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
    try:
        plan = AuditEntry.objects.filter(owner=owner, **filters).order_by("-at", "-id")[:50] \
            .explain()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET enable_seqscan")
    assert index in plan


def test_deletes_in_the_admin_go_through_the_services_and_are_recorded(owner, staff_client):
    from flows.models import Schedule, Secret, Webhook
    from flows.services import secrets as secret_store
    from flows.services import webhooks as webhook_service

    flow = services.create_flow(owner, sample("hello"), slug="hello")
    services.publish_flow(flow)
    secret = secret_store.create_secret(owner, "KEY", "v")
    hook, _ = webhook_service.create_webhook(flow)
    schedule = schedule_service.create_schedule(flow, "0 0 * * *", "UTC", {"name": "A"})
    for model, pk in (("secret", secret.pk), ("webhook", hook.pk), ("schedule", schedule.pk)):
        answer = staff_client.post(f"/admin/flows/{model}/{pk}/delete/", {"post": "yes"})
        assert answer.status_code == 302, model
    assert not (Secret.objects.exists() or Webhook.objects.exists() or Schedule.objects.exists())
    deleted = AuditEntry.objects.filter(action__endswith=".deleted")
    assert {(e.action, e.via, e.actor_name) for e in deleted} == {
        ("secret.deleted", "admin", "staff"), ("webhook.deleted", "admin", "staff"),
        ("schedule.deleted", "admin", "staff")}
