"""Capacity (docs/api.md, Capacity): a flow's max_active_runs and RUN_MAX_ACTIVE_PER_OWNER
hold; runs over a limit stay queued and start in creation order as slots free; a run waiting
for a person holds no slot; one owner's burst does not hold back another owner's runs."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache

from flows import services
from flows.execution.executor import executor
from flows.models import Flow, Run
from flows.services import lifecycle

from .factories import (
    api_client,
    assert_error,
    holding,
    most_at_once,
    no_rows_change,
    sample,
)

pytestmark = pytest.mark.django_db(transaction=True)


def finish(*runs: Run, seconds: float = 20) -> list[Run]:
    for run in runs:
        executor.wait(run.pk, seconds)
        run.refresh_from_db()
    return list(runs)


@pytest.fixture
def ada():
    return User.objects.create_user("ada")


def test_a_flow_limit_of_one_runs_its_runs_one_after_another_in_creation_order(ada):
    flow = services.update_flow(services.create_flow(ada, holding(0.3)), max_active_runs=1)
    runs = [services.start_run(ada, flow, {})[0] for _ in range(3)]

    waiting_for_a_slot = Run.objects.filter(pk__in=[r.pk for r in runs[1:]], lease_owner="")
    assert waiting_for_a_slot.count() == 2  # held as they were inserted: not executing

    runs = finish(*runs)
    assert [run.status for run in runs] == ["succeeded"] * 3
    assert most_at_once(runs) == 1
    assert [run.pk for run in sorted(runs, key=lambda r: r.started_at)] == [r.pk for r in runs]


def test_the_owners_limit_holds_across_flows(ada, settings):
    settings.RUN_MAX_ACTIVE_PER_OWNER = 2
    first = services.create_flow(ada, holding(0.3, "First"))
    second = services.create_flow(ada, holding(0.3, "Second"))
    runs = [services.start_run(ada, flow, {})[0] for flow in (first, second) * 3]

    runs = finish(*runs)
    assert [run.status for run in runs] == ["succeeded"] * 6
    assert most_at_once(runs) == 2


def test_one_owners_burst_does_not_hold_back_another_owners_runs(ada, settings):
    settings.RUN_MAX_ACTIVE_PER_OWNER = 2
    bob = User.objects.create_user("bob")
    burst = services.create_flow(ada, holding(1.0))
    ada_runs = [services.start_run(ada, burst, {})[0] for _ in range(6)]

    bobs = services.start_run(bob, services.create_flow(bob, sample("hello")), {"name": "B"})[0]
    (bobs,) = finish(bobs, seconds=5)

    assert bobs.status == "succeeded"
    assert Run.objects.filter(pk__in=[r.pk for r in ada_runs], status="queued").count() >= 3
    finish(*ada_runs)


def test_a_run_waiting_for_a_person_holds_no_slot(ada):
    flow = services.update_flow(services.create_flow(ada, sample("approval")), max_active_runs=1)
    first = services.start_run(ada, flow, {"request": "one"})[0]
    second = services.start_run(ada, flow, {"request": "two"})[0]

    first, second = finish(first, second)
    assert (first.status, second.status) == ("waiting", "waiting")

    services.answer_run(first, "ok", "yes", by="ada")
    services.answer_run(second, "no", "no", by="ada")
    first, second = finish(first, second)
    assert (first.status, second.status) == ("succeeded", "succeeded")


def test_a_held_run_whose_ring_was_missed_is_started_by_the_sweep(ada):
    flow = services.update_flow(services.create_flow(ada, holding(0.3)), max_active_runs=1)
    first = services.start_run(ada, flow, {})[0]
    held = services.start_run(ada, flow, {})[0]
    cache.clear()  # the note that the owner has held runs is lost: its end rings nobody
    Run.objects.filter(pk=held.pk).update(  # queued for longer than the sweep's grace
        created_at=held.created_at - timedelta(seconds=lifecycle.QUEUED_GRACE_S + 1))
    (first,) = finish(first)
    assert Run.objects.get(pk=held.pk).status == "queued"

    executor.recover_now()  # the sweep (every worker runs it every few seconds)
    (held,) = finish(held)
    assert held.status == "succeeded"


# -- the API -------------------------------------------------------------------------------


@pytest.fixture
def api(ada):
    return api_client(ada)


def test_the_limit_is_set_and_shown_through_the_api(ada, api):
    services.create_flow(ada, sample("hello"), slug="hello")
    assert api.get("/api/flows/hello/").json()["max_active_runs"] is None

    answer = api.put("/api/flows/hello/", {"max_active_runs": 3}, format="json")
    assert answer.status_code == 200 and answer.json()["max_active_runs"] == 3
    assert answer.json()["dsl"] == sample("hello")  # the draft stays as it was
    assert Flow.objects.get(slug="hello").max_active_runs == 3

    both = api.put("/api/flows/hello/", {"dsl": sample("hello"), "max_active_runs": None},
                   format="json")
    assert both.status_code == 200 and both.json()["max_active_runs"] is None


@pytest.mark.parametrize("value", [0, 10_001, -1, 2.5, "3", True, [1]])
def test_a_bad_limit_is_refused_and_changes_nothing(ada, api, value):
    services.create_flow(ada, sample("hello"), slug="hello")
    with no_rows_change():
        answer = api.put("/api/flows/hello/", {"max_active_runs": value}, format="json")
    body = assert_error(answer, 400, "invalid_request")
    assert "max_active_runs" in str(body)
    assert Flow.objects.get(slug="hello").max_active_runs is None


def test_a_put_with_nothing_to_change_is_refused(ada, api):
    services.create_flow(ada, sample("hello"), slug="hello")
    assert_error(api.put("/api/flows/hello/", {}, format="json"), 400, "invalid_request")
