"""Idempotency-Key on run start: a repeat answers the first run and starts nothing; the same
key with another body is a conflict; concurrent repeats start exactly one run."""


import pytest

from flows.models import Run

from .factories import api_client, assert_error, concurrently, flow, no_rows_change

BODY = {"inputs": {"name": "Ada"}}


@pytest.mark.django_db
def test_a_repeat_answers_200_with_the_first_run(api, owner):
    flow(owner, "hello", slug="hello")

    first = api.post("/api/flows/hello/runs/", BODY, HTTP_IDEMPOTENCY_KEY="order-1")
    with no_rows_change():
        again = api.post("/api/flows/hello/runs/", BODY, HTTP_IDEMPOTENCY_KEY="order-1")

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert Run.objects.count() == 1


@pytest.mark.django_db
def test_the_same_key_with_another_body_is_409(api, owner):
    flow(owner, "hello", slug="hello")
    flow(owner, "hello", slug="other")
    api.post("/api/flows/hello/runs/", BODY, HTTP_IDEMPOTENCY_KEY="order-1")

    with no_rows_change():
        other_inputs = api.post("/api/flows/hello/runs/", {"inputs": {"name": "Lin"}},
                                HTTP_IDEMPOTENCY_KEY="order-1")
        other_flow = api.post("/api/flows/other/runs/", BODY, HTTP_IDEMPOTENCY_KEY="order-1")

    assert_error(other_inputs, 409, "idempotency_conflict")
    assert_error(other_flow, 409, "idempotency_conflict")


@pytest.mark.django_db
def test_keys_belong_to_their_owner(api, owner, outsider, outsider_api):
    flow(owner, "hello", slug="hello")
    flow(outsider, "hello", slug="hello")

    mine = api.post("/api/flows/hello/runs/", BODY, HTTP_IDEMPOTENCY_KEY="k")
    theirs = outsider_api.post("/api/flows/hello/runs/", BODY, HTTP_IDEMPOTENCY_KEY="k")

    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]


@pytest.mark.django_db
def test_without_a_key_every_request_starts_a_run(api, owner):
    flow(owner, "hello", slug="hello")

    ids = {api.post("/api/flows/hello/runs/", BODY).json()["id"] for _ in range(3)}

    assert len(ids) == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("stopped_executor")
def test_concurrent_repeats_start_exactly_one_run(owner):
    flow(owner, "hello", slug="hello")
    clients = [api_client(owner) for _ in range(8)]

    def start(client):
        response = client.post("/api/flows/hello/runs/", BODY, HTTP_IDEMPOTENCY_KEY="once")
        return response.status_code, response.json()["id"]

    answers = concurrently(clients, start)

    assert sorted(status for status, _ in answers) == [200] * (len(clients) - 1) + [201]
    assert len({run_id for _, run_id in answers}) == 1
    assert Run.objects.count() == 1
