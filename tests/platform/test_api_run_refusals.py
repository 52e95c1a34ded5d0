"""Requests about runs that are refused: status, code and shape, and no row written."""

import pytest

from flows.models import Run

from .factories import assert_error, flow, no_rows_change, run

pytestmark = pytest.mark.django_db


@pytest.fixture
def hello(owner):
    return flow(owner, "hello", slug="hello")


@pytest.mark.parametrize("inputs", [{}, {"name": 5}, {"name": "Ada", "age": 3}, "Ada", None,
                                    [], {"name": None, "x": 1}])
def test_invalid_inputs_are_400_invalid_inputs_and_start_nothing(api, hello, inputs):
    with no_rows_change():
        response = api.post("/api/flows/hello/runs/", {"inputs": inputs})

    error = assert_error(response, 400, "invalid_inputs")
    assert error["details"]


def test_missing_inputs_are_empty_inputs(api, hello):
    with no_rows_change():
        response = api.post("/api/flows/hello/runs/", {})

    error = assert_error(response, 400, "invalid_inputs")
    assert [d["path"] for d in error["details"]] == ["/name"]


@pytest.mark.parametrize(("body", "path", "code"), [
    ({"inputs": {"name": "Ada"}, "priority": 1}, "/priority", "unknown_field"),
    ({"inputs": {"name": "Ada"}, "wait": "5"}, "/wait", "wrong_type"),
    ({"inputs": {"name": "Ada"}, "wait": True}, "/wait", "wrong_type"),
    ({"inputs": {"name": "Ada"}, "wait": 61}, "/wait", "invalid_value"),
    ({"inputs": {"name": "Ada"}, "wait": -1}, "/wait", "invalid_value"),
    (["inputs"], "", "wrong_type"),
])
def test_a_malformed_start_request_is_400_invalid_request(api, hello, body, path, code):
    with no_rows_change():
        response = api.post("/api/flows/hello/runs/", body)

    error = assert_error(response, 400, "invalid_request")
    assert (path, code) in [(d["path"], d["code"]) for d in error["details"]]


@pytest.mark.parametrize("version", ["latest", 0, -1, 1.5, True, "1", {"n": 1}])
def test_a_malformed_version_is_400_invalid_version(api, hello, version):
    with no_rows_change():
        response = api.post("/api/flows/hello/runs/", {"inputs": {"name": "A"},
                                                       "version": version})

    assert_error(response, 400, "invalid_version")


@pytest.mark.parametrize("version", [1, 2, 2**31, 10**30])
def test_a_version_that_does_not_exist_is_404(api, owner, version):
    flow(owner, "hello", slug="hello", publish=version != 1)

    with no_rows_change():
        response = api.post("/api/flows/hello/runs/", {"inputs": {"name": "A"},
                                                       "version": version})

    assert_error(response, 404, "not_found")


def test_the_published_version_of_an_unpublished_flow_is_409_not_published(api, hello):
    with no_rows_change():
        response = api.post("/api/flows/hello/runs/", {"inputs": {"name": "A"},
                                                       "version": "published"})

    assert_error(response, 409, "not_published")


def test_runs_start_from_the_published_version_by_default_else_the_draft(api, owner, hello):
    draft_run = api.post("/api/flows/hello/runs/", {"inputs": {"name": "A"}}).json()
    api.post("/api/flows/hello/publish/")
    published_run = api.post("/api/flows/hello/runs/", {"inputs": {"name": "A"}}).json()
    chosen = api.post("/api/flows/hello/runs/", {"inputs": {"name": "A"},
                                                 "version": "draft"}).json()

    assert (draft_run["version"], published_run["version"], chosen["version"]) == (
        "draft", 1, "draft")
    assert draft_run["status"] == "queued"  # nothing commits in this test: nothing executes


@pytest.mark.parametrize("key", ["", "k" * 201])
def test_a_malformed_idempotency_key_is_400(api, hello, key):
    with no_rows_change():
        response = api.post("/api/flows/hello/runs/", {"inputs": {"name": "A"}},
                            HTTP_IDEMPOTENCY_KEY=key)

    assert_error(response, 400, "invalid_idempotency_key")


@pytest.mark.parametrize("path", ["", "events/", "answer/", "cancel/"])
@pytest.mark.parametrize("run_id", ["5b0b8a8e-7c1e-4a55-9a55-1b1b1b1b1b1b", "not-a-uuid", "1"])
def test_an_unknown_run_is_404(api, path, run_id):
    method = api.get if path in ("", "events/") else api.post
    with no_rows_change():
        response = method(f"/api/runs/{run_id}/{path}", {"answer": "x"} if path else None)

    assert_error(response, 404, "not_found")


def test_answering_a_run_that_is_not_waiting_is_409_not_waiting(api, owner, hello):
    queued = run(owner, hello)

    with no_rows_change():
        response = api.post(f"/api/runs/{queued.pk}/answer/", {"answer": "yes"})

    assert_error(response, 409, "not_waiting")


@pytest.mark.parametrize(("body", "path", "code"), [
    ({}, "/answer", "missing_field"),
    ({"option": "yes"}, "/answer", "missing_field"),
    ({"answer": "x", "node": 3}, "/node", "wrong_type"),
    ({"answer": "x", "by": "someone"}, "/by", "unknown_field"),
])
def test_a_malformed_answer_is_400_invalid_request(api, owner, hello, body, path, code):
    queued = run(owner, hello)

    with no_rows_change():
        response = api.post(f"/api/runs/{queued.pk}/answer/", body)

    error = assert_error(response, 400, "invalid_request")
    assert (path, code) in [(d["path"], d["code"]) for d in error["details"]]


def test_cancel_takes_only_an_empty_body(api, owner, hello):
    queued = run(owner, hello)

    with no_rows_change():
        response = api.post(f"/api/runs/{queued.pk}/cancel/", {"reason": "bored"})

    assert_error(response, 400, "invalid_request")


def test_cancelling_a_queued_run_is_202(api, owner, hello):
    queued = run(owner, hello)

    response = api.post(f"/api/runs/{queued.pk}/cancel/")

    assert response.status_code == 202
    assert response.json()["id"] == str(queued.pk)
    assert Run.objects.get(pk=queued.pk).cancel_requested


def test_a_finished_run_cannot_be_cancelled(api, owner, hello):
    finished = run(owner, hello)
    Run.objects.filter(pk=finished.pk).update(status="succeeded")

    with no_rows_change():
        response = api.post(f"/api/runs/{finished.pk}/cancel/")

    assert_error(response, 409, "finished")


@pytest.mark.parametrize("after", ["-1", "abc", "1.5", "", "١"])
def test_a_malformed_after_is_400(api, owner, hello, after):
    queued = run(owner, hello)

    response = api.get(f"/api/runs/{queued.pk}/events/", {"after": after})

    error = assert_error(response, 400, "invalid_request")
    assert error["details"][0]["path"] == "after"


@pytest.mark.parametrize("query", [
    {"created_after": "yesterday"}, {"created_before": "2026-13-01T00:00:00Z"},
    {"created_after": "9999-12-31T23:59:59-14:00"}, {"status": "sleeping"},
    {"cursor": "not-a-cursor"}, {"cursor": "cD1ub3QtYS1kYXRl"},  # p=not-a-date
])
def test_a_malformed_list_query_is_400_invalid_request(api, owner, hello, query):
    run(owner, hello)

    error = assert_error(api.get("/api/runs/", query), 400, "invalid_request")
    assert error["details"][0]["path"] == next(iter(query))
