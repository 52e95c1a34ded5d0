"""Runs over the API, executing for real: start with `wait`, read, answer, cancel, events."""

import time

import pytest

from flows.models import Run

from .factories import assert_error, flow, no_rows_change

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("stopped_executor")]

RUN_FIELDS = {"id", "flow", "version", "dsl_hash", "status", "inputs", "outputs", "answer",
              "error", "created_at", "started_at", "finished_at", "elapsed_ms", "recovered",
              "parent_run", "waiting", "trigger", "retry_of"}
NODE_FIELDS = {"node", "type", "status", "attempts", "inputs", "outputs", "error", "reused",
               "started_at", "finished_at", "elapsed_ms"}


def settle(api, run_id, seconds=10):
    """The run once it finished (an answered run stays `waiting` until it resumes)."""
    deadline = time.monotonic() + seconds
    while True:
        body = api.get(f"/api/runs/{run_id}/").json()
        if body["status"] in ("succeeded", "failed", "cancelled") or \
                time.monotonic() > deadline:
            return body
        time.sleep(0.05)


def test_a_run_started_with_wait_answers_when_it_ends(api, owner):
    hello = flow(owner, "hello", slug="hello")

    response = api.post("/api/flows/hello/runs/", {"inputs": {"name": "Ada"}, "wait": 10})

    assert response.status_code == 201
    run = response.json()
    assert set(run) == RUN_FIELDS | {"nodes"}
    assert run["status"] == "succeeded"
    assert run["flow"] == "hello"
    assert run["version"] == "draft"
    assert run["dsl_hash"] == hello.draft_hash
    assert run["trigger"] == {"type": "api"}
    assert run["inputs"] == {"name": "Ada"}
    assert run["outputs"] == {"greeting": "Hello, Ada!"}
    assert run["error"] is None and run["answer"] is None
    assert run["parent_run"] is None and run["waiting"] == [] and run["recovered"] == 0
    assert run["started_at"] and run["finished_at"] and run["elapsed_ms"] >= 0
    assert [(n["node"], n["type"], n["status"], n["attempts"]) for n in run["nodes"]] == [
        ("start", "start", "succeeded", 1), ("greet", "template", "succeeded", 1),
        ("end", "end", "succeeded", 1)]
    assert all(set(node) == NODE_FIELDS for node in run["nodes"])
    assert run["nodes"][1]["outputs"] == {"text": "Hello, Ada!"}
    assert api.get(f"/api/runs/{run['id']}/").json() == run


def test_a_run_of_the_published_version_shows_its_number_and_applies_defaults(api, owner):
    flow(owner, "fanout", slug="fanout", publish=True)

    run = api.post("/api/flows/fanout/runs/", {"inputs": {}, "wait": 10}).json()

    assert run["version"] == 1
    assert run["inputs"] == {"topic": "rivers"}
    assert run["status"] == "succeeded"
    assert run["outputs"] == {"all": "A on rivers | B on rivers | C on rivers"}
    assert {"slow_a", "slow_b", "slow_c"} <= {n["node"] for n in run["nodes"]}


def test_wait_answers_with_the_current_status_when_it_passes_first(api, owner):
    flow(owner, "fanout", slug="fanout")
    started = time.monotonic()

    response = api.post("/api/flows/fanout/runs/", {"inputs": {}, "wait": 0.2})

    assert time.monotonic() - started < 0.9
    assert response.status_code == 201
    assert response.json()["status"] in ("queued", "running")
    assert settle(api, response.json()["id"])["status"] == "succeeded"


def test_without_wait_the_run_is_answered_at_once_and_runs_on(api, owner):
    flow(owner, "hello", slug="hello")

    response = api.post("/api/flows/hello/runs/", {"inputs": {"name": "Lin"}})

    assert response.status_code == 201
    assert response.json()["status"] in ("queued", "running", "succeeded")
    assert settle(api, response.json()["id"])["outputs"] == {"greeting": "Hello, Lin!"}


def test_a_question_makes_the_run_wait_and_an_answer_finishes_it(api, owner):
    flow(owner, "approval", slug="approval")

    waiting = api.post("/api/flows/approval/runs/",
                       {"inputs": {"request": "refund"}, "wait": 10}).json()

    assert waiting["status"] == "waiting"
    assert len(waiting["waiting"]) == 1
    question = waiting["waiting"][0]
    assert set(question) == {"node", "question", "options", "timeout_at"}
    assert question["node"] == "ask"
    assert question["question"] == "Send this reply? Reply to: refund"
    assert [o["id"] for o in question["options"]] == ["yes", "no"]
    assert question["timeout_at"] is None
    assert {n["node"]: n["status"] for n in waiting["nodes"]}["ask"] == "waiting"

    answered = api.post(f"/api/runs/{waiting['id']}/answer/",
                        {"answer": "Looks good", "option": "yes"})

    assert answered.status_code == 202
    assert answered.json()["id"] == waiting["id"]
    done = settle(api, waiting["id"])
    assert done["status"] == "succeeded"
    assert done["outputs"]["result"].startswith("Sent: ")
    assert {n["node"]: n["status"] for n in done["nodes"]}["dropped"] == "skipped"
    resumed = [e for e in api.get(f"/api/runs/{waiting['id']}/events/").json()["results"]
               if e["type"] == "run.resumed"]
    data = resumed[0]["data"]
    assert (data["node"], data["answer"], data["option"], data["by"]) == (
        "ask", "Looks good", "yes", "ada")


def test_an_answer_may_name_the_question(api, owner):
    flow(owner, "approval", slug="approval")
    waiting = api.post("/api/flows/approval/runs/",
                       {"inputs": {"request": "x"}, "wait": 10}).json()

    response = api.post(f"/api/runs/{waiting['id']}/answer/",
                        {"answer": "no thanks", "option": "no", "node": "ask"})

    assert response.status_code == 202
    assert settle(api, waiting["id"])["outputs"] == {"result": "Discarded (no thanks)"}


def test_cancelling_a_waiting_run_ends_it_cancelled(api, owner):
    flow(owner, "approval", slug="approval")
    waiting = api.post("/api/flows/approval/runs/",
                       {"inputs": {"request": "x"}, "wait": 10}).json()

    response = api.post(f"/api/runs/{waiting['id']}/cancel/")

    assert response.status_code == 202
    done = settle(api, waiting["id"])
    assert done["status"] == "cancelled"
    assert done["error"]["code"] == "cancelled"
    assert done["waiting"] == []


def test_cancelling_a_running_run_interrupts_it(api, owner):
    flow(owner, "fanout", slug="fanout")
    started = api.post("/api/flows/fanout/runs/", {"inputs": {}, "wait": 0.3}).json()

    response = api.post(f"/api/runs/{started['id']}/cancel/", {})

    assert response.status_code == 202
    done = settle(api, started["id"])
    assert done["status"] == "cancelled"
    assert done["outputs"] is None


def test_a_finished_run_cannot_be_cancelled_or_answered(api, owner):
    flow(owner, "hello", slug="hello")
    run = api.post("/api/flows/hello/runs/", {"inputs": {"name": "Ada"}, "wait": 10}).json()
    assert run["status"] == "succeeded"

    with no_rows_change():
        cancelled = api.post(f"/api/runs/{run['id']}/cancel/")
        answered = api.post(f"/api/runs/{run['id']}/answer/", {"answer": "x"})

    assert_error(cancelled, 409, "finished")
    assert_error(answered, 409, "not_waiting")


def test_a_wrong_answer_is_refused_and_the_run_keeps_waiting(api, owner):
    flow(owner, "approval", slug="approval")
    waiting = api.post("/api/flows/approval/runs/",
                       {"inputs": {"request": "x"}, "wait": 10}).json()

    with no_rows_change():
        no_option = api.post(f"/api/runs/{waiting['id']}/answer/", {"answer": "ok"})
        unknown_option = api.post(f"/api/runs/{waiting['id']}/answer/",
                                  {"answer": "ok", "option": "maybe"})
        not_a_string = api.post(f"/api/runs/{waiting['id']}/answer/",
                                {"answer": 5, "option": "yes"})
        other_node = api.post(f"/api/runs/{waiting['id']}/answer/",
                              {"answer": "ok", "option": "yes", "node": "draft"})

    assert_error(no_option, 400, "invalid_answer")
    assert_error(unknown_option, 400, "invalid_answer")
    assert_error(not_a_string, 400, "invalid_answer")
    assert_error(other_node, 409, "not_waiting")
    assert Run.objects.get(pk=waiting["id"]).status == "waiting"


def test_events_are_read_after_a_seq_in_order(api, owner):
    flow(owner, "hello", slug="hello")
    run = api.post("/api/flows/hello/runs/", {"inputs": {"name": "Ada"}, "wait": 10}).json()

    everything = api.get(f"/api/runs/{run['id']}/events/")
    later = api.get(f"/api/runs/{run['id']}/events/", {"after": 2}).json()
    beyond = api.get(f"/api/runs/{run['id']}/events/", {"after": 10_000}).json()

    assert everything.status_code == 200
    events = everything.json()["results"]
    assert everything.json()["next_after"] is None
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "run.started" and events[-1]["type"] == "run.finished"
    assert set(events[0]) == {"seq", "type", "ts", "run", "scope", "item", "data"}
    assert events[0]["run"] == run["id"]
    assert events[0]["data"] == {"inputs": {"name": "Ada"}, "flow": "hello", "version": "draft"}
    assert later["results"] == events[2:]
    assert later["next_after"] is None
    assert beyond == {"results": [], "next_after": None}


def test_events_come_in_pages_linked_by_next_after(api, owner, monkeypatch):
    monkeypatch.setattr("flows.api.views.EVENTS_PAGE", 3)
    flow(owner, "hello", slug="hello")
    run = api.post("/api/flows/hello/runs/", {"inputs": {"name": "Ada"}, "wait": 10}).json()

    seen, after = [], 0
    for _ in range(20):
        page = api.get(f"/api/runs/{run['id']}/events/", {"after": after}).json()
        assert len(page["results"]) <= 3
        seen += [e["seq"] for e in page["results"]]
        if page["next_after"] is None:
            break
        assert page["next_after"] == page["results"][-1]["seq"]
        after = page["next_after"]

    assert seen == list(range(1, Run.objects.get(pk=run["id"]).last_seq + 1))
    assert len(seen) > 3
