"""The indexes serve the real queries (PostgreSQL's planner, told to avoid sequential scans
so that a small table still shows which index it would use)."""

import pytest
from django.contrib.auth.models import User
from django.db import connection

from flows import services
from flows.models import NodeRun, Run, RunEvent

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's planner only"),
]

HELLO = {"dsl": "astron/v1", "name": "Hello", "nodes": [
    {"id": "start", "type": "start"}, {"id": "end", "type": "end"}],
    "edges": [{"from": "start", "to": "end"}]}


@pytest.fixture
def run():
    owner = User.objects.create_user("ada")
    flow = services.create_flow(owner, HELLO)
    document = services.documents.store_document(HELLO)
    return Run.objects.create(owner=owner, flow=flow, document=document)


def plan_of(queryset):
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
    try:
        return queryset.explain()
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET enable_seqscan")


def test_runs_of_an_owner_newest_first_use_the_owner_index(run):
    plan = plan_of(Run.objects.filter(owner=run.owner).order_by("-created_at")[:50])
    assert "run_owner_recent" in plan


def test_runs_of_an_owner_and_flow_use_the_flow_index(run):
    plan = plan_of(Run.objects.filter(owner=run.owner, flow=run.flow)
                   .order_by("-created_at")[:50])
    assert "run_owner_flow_recent" in plan


def test_runs_of_an_owner_by_status_use_the_status_index(run):
    plan = plan_of(Run.objects.filter(owner=run.owner, status="failed")
                   .order_by("-created_at")[:50])
    assert "run_owner_status_recent" in plan


def test_runs_of_an_owner_by_trigger_use_the_trigger_index(run):
    plan = plan_of(Run.objects.filter(owner=run.owner, trigger__type="schedule")
                   .order_by("-created_at")[:50])
    assert "run_owner_trigger_recent" in plan


def test_a_cursor_page_deep_in_history_uses_the_owner_index(run):
    plan = plan_of(Run.objects.filter(owner=run.owner, created_at__lt=run.created_at)
                   .order_by("-created_at")[:50])
    assert "run_owner_recent" in plan


def test_events_after_a_seq_use_the_unique_seq_index(run):
    plan = plan_of(RunEvent.objects.filter(run=run, seq__gt=10).order_by("seq")[:1000])
    assert "run_event_seq_unique" in plan


def test_node_runs_of_a_run_use_the_unique_node_index(run):
    plan = plan_of(NodeRun.objects.filter(run=run))
    assert "node_run_unique" in plan


def test_recovery_scans_only_active_runs_through_the_partial_index(run):
    from django.utils import timezone

    plan = plan_of(Run.objects.filter(status__in=["queued", "running"],
                                      lease_expires_at__lt=timezone.now()))
    assert "run_active_lease" in plan
