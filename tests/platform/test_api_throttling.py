"""The request budget is per user, all of a user's keys together (settings.API_RATE)."""

import pytest

from .factories import api_client, assert_error

pytestmark = pytest.mark.django_db


def test_requests_over_the_rate_are_429_with_retry_after(settings, owner, outsider):
    settings.API_RATE = "3/minute"
    laptop, server = api_client(owner), api_client(owner, scheme="Bearer")

    answers = [laptop.get("/api/flows/").status_code, server.get("/api/flows/").status_code,
               laptop.get("/api/runs/").status_code]
    refused = server.get("/api/flows/")

    assert answers == [200, 200, 200]
    error = assert_error(refused, 429, "throttled")
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert error["details"] == []
    assert api_client(outsider).get("/api/flows/").status_code == 200


def test_the_rate_is_read_on_every_request(settings, owner):
    client = api_client(owner)
    settings.API_RATE = "1/hour"
    client.get("/api/flows/")

    assert client.get("/api/flows/").status_code == 429

    settings.API_RATE = "1200/minute"
    assert client.get("/api/flows/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_parallel_requests_cannot_go_over_the_rate(settings, owner):
    """The count is atomic: 24 requests at once against a rate of 10 let exactly 10 through
    (DRF's history list, read and written back, let parallel requests overwrite each other)."""
    from .factories import concurrently

    settings.API_RATE = "10/hour"
    clients = [api_client(owner) for _ in range(24)]
    answers = concurrently(clients, lambda client: client.get("/api/flows/").status_code)

    assert sorted(answers) == [200] * 10 + [429] * 14
