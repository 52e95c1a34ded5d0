"""Runs are written by plain functions (flows/api/serializers.py, `run_row`), not by DRF's
fields: the JSON must stay exactly what the declared fields describe, in the list and in the
detail, whatever state the run is in."""

from datetime import UTC, datetime, timedelta

import pytest
from rest_framework import serializers

from flows.api.serializers import NodeRunSerializer, RunSerializer
from flows.models import NodeRun, Run

from .factories import flow, run

pytestmark = pytest.mark.django_db

FINISHED = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)


def by_declared_fields(serializer_class, instance) -> dict:
    """What DRF's declared fields alone would write."""
    return serializers.ModelSerializer.to_representation(serializer_class(), instance)


@pytest.fixture
def runs_in_every_state(owner):
    hello = flow(owner, "hello", slug="hello", publish=True)
    queued = run(owner, hello, version="draft")
    failed = run(owner, hello)
    Run.objects.filter(pk=failed.pk).update(
        status="failed", started_at=FINISHED - timedelta(seconds=2), finished_at=FINISHED,
        elapsed_ms=2000, error={"code": "node_failed", "message": "boom", "node": "greet"},
        outputs=None, recovered=1)
    waiting = run(owner, hello, inputs={"name": "Bo"})
    questions = [{"node": "ask", "question": "Ship?", "options": [{"id": "y", "label": "Yes"}],
                  "timeout_at": None},
                 {"node": "ask2", "question": "Why?", "options": [], "timeout_at": None}]
    Run.objects.filter(pk=waiting.pk).update(
        status="waiting", started_at=FINISHED, waiting=questions,
        inputs={"name": "Bo", "nested": {"list": [1, 2.5, None], "text": "é ✓"}},
        pending_answers=[{"node": "ask2", "answer": "because"}], answer="partial")
    child = run(owner, hello)
    Run.objects.filter(pk=child.pk).update(parent_run=waiting, status="succeeded",
                                           outputs={"greeting": "Hello, Ada!"})
    NodeRun.objects.create(run=failed, node="greet", type="template", status="failed",
                           attempts=3, inputs={"name": "Ada"}, error={"code": "x"},
                           started_at=FINISHED - timedelta(seconds=1), finished_at=FINISHED,
                           elapsed_ms=12)
    NodeRun.objects.create(run=failed, node="end", type="end", status="skipped")
    return [queued, failed, waiting, child]


def test_list_rows_are_what_the_declared_fields_describe(api, runs_in_every_state):
    rows = {row["id"]: row for row in api.get("/api/runs/").json()["results"]}

    assert len(rows) == 4
    for stored in Run.objects.select_related("flow"):
        assert rows[str(stored.pk)] == by_declared_fields(RunSerializer, stored)


def test_a_run_reads_the_same_in_the_list_and_in_its_detail(api, runs_in_every_state):
    rows = api.get("/api/runs/").json()["results"]

    for row in rows:
        detail = api.get(f"/api/runs/{row['id']}/").json()
        nodes = detail.pop("nodes")
        assert detail == row
        stored = NodeRun.objects.filter(run_id=row["id"])
        assert nodes == [by_declared_fields(NodeRunSerializer, node) for node in stored]


def test_an_answered_question_is_no_longer_listed_as_open(api, runs_in_every_state):
    waiting = next(row for row in api.get("/api/runs/?status=waiting").json()["results"])

    assert [question["node"] for question in waiting["waiting"]] == ["ask"]
    assert waiting["answer"] == "partial"


def test_times_are_iso_8601_in_utc_with_z(api, runs_in_every_state):
    failed = api.get("/api/runs/?status=failed").json()["results"][0]

    assert failed["finished_at"] == "2026-03-04T05:06:07.890123Z"
    assert failed["started_at"] == "2026-03-04T05:06:05.890123Z"
    assert failed["elapsed_ms"] == 2000.0 and failed["recovered"] == 1
