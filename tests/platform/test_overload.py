"""A database that does not answer in time — no pooled connection free within the pool's
timeout, or connections refused — makes a 503 `overloaded` with Retry-After, never a 500
(docs/api.md, Errors). The pool's timeout bounds how long a request waits for it."""

from __future__ import annotations

import pytest
from django.db import OperationalError
from django.test import Client

from astron.env import POOL_TIMEOUT_S, database_from_url
from flows import services

pytestmark = pytest.mark.django_db


def no_connection(*args, **kwargs):
    raise OperationalError("couldn't get a connection after 5.00 sec")


def test_an_api_request_answers_503_overloaded_with_retry_after(api, monkeypatch):
    monkeypatch.setattr(services, "run_of", no_connection)
    response = api.get("/api/runs/6f1e0c5a-8d5e-4b7a-9a51-1f0c9d3e2b11/")
    assert response.status_code == 503
    assert response["Retry-After"] == "2"
    assert response.json()["error"]["code"] == "overloaded"


def test_a_failure_outside_the_api_views_answers_503_too(owner, monkeypatch):
    monkeypatch.setattr(services, "flow_of", no_connection)
    browser = Client(raise_request_exception=False)
    browser.force_login(owner)
    page = browser.get("/flows/anything/")
    assert page.status_code == 503 and page["Retry-After"] == "2"


def test_any_other_failure_is_still_a_500_in_the_error_shape(api, monkeypatch):
    def bug(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(services, "run_of", bug)
    api.raise_request_exception = False
    response = api.get("/api/runs/6f1e0c5a-8d5e-4b7a-9a51-1f0c9d3e2b11/")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "server_error"


def test_requests_wait_for_a_pooled_connection_a_few_seconds_not_thirty():
    database = database_from_url("DATABASE_URL", "postgres://db.internal/astron",
                                 base_dir=None, pool_max=20)
    assert database["OPTIONS"]["pool"]["timeout"] == POOL_TIMEOUT_S <= 5
