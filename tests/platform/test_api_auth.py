"""Who may call the API: keys (Token or Bearer), sessions, and nobody else (401)."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from flows import services
from flows.models import ApiToken

from .factories import assert_error, flow, no_rows_change, sample

pytestmark = pytest.mark.django_db

PROTECTED = [("get", "/api/flows/"), ("post", "/api/flows/"), ("get", "/api/flows/x/"),
             ("post", "/api/flows/validate/"), ("get", "/api/runs/"),
             ("post", "/api/flows/x/runs/"), ("get", "/api/runs/x/events/")]


def client_with(header: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    return client


@pytest.mark.parametrize("scheme", ["Token", "Bearer", "token", "BEARER"])
def test_a_key_authenticates_with_either_scheme(owner, scheme):
    _, key = services.create_token(owner, "ci")
    flow(owner, "hello", slug="hello")

    response = client_with(f"{scheme} {key}").get("/api/flows/")

    assert response.status_code == 200
    assert [f["slug"] for f in response.json()["results"]] == ["hello"]


def test_using_a_key_records_when(owner):
    token, key = services.create_token(owner, "ci")

    client_with(f"Token {key}").get("/api/flows/")

    token.refresh_from_db()
    assert token.last_used_at is not None


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_no_credentials_is_401_with_a_challenge(anonymous, method, path):
    with no_rows_change():
        response = getattr(anonymous, method)(path, {"dsl": sample("hello")})

    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"].startswith("Token")


@pytest.mark.parametrize("header", [
    "Token wrong", "Bearer ast_nothing", "Token", "Token a b", "Token \u00e9t\u00e9",
])
def test_a_bad_key_is_401(db, header):
    with no_rows_change():
        response = client_with(header).post("/api/flows/", {"dsl": sample("hello")})

    assert_error(response, 401, "not_authenticated")


def test_an_expired_key_is_401(owner):
    token, key = services.create_token(owner, "old", expires_days=1)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))

    with no_rows_change():
        response = client_with(f"Token {key}").post("/api/flows/", {"dsl": sample("hello")})

    assert_error(response, 401, "not_authenticated")


def test_a_revoked_key_is_401(owner):
    token, key = services.create_token(owner, "gone")
    assert client_with(f"Token {key}").get("/api/flows/").status_code == 200
    services.revoke_token(token)

    with no_rows_change():
        response = client_with(f"Bearer {key}").post("/api/flows/", {"dsl": sample("hello")})

    assert_error(response, 401, "not_authenticated")


def test_an_inactive_users_key_is_401(owner):
    _, key = services.create_token(owner, "ci")
    owner.is_active = False
    owner.save()

    assert_error(client_with(f"Token {key}").get("/api/flows/"), 401, "not_authenticated")


def test_a_browser_session_reads_and_writes_with_its_csrf_token(owner):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)
    browser.get("/admin/login/")  # any page that sets the CSRF cookie
    csrf = browser.cookies["csrftoken"].value

    listed = browser.get("/api/flows/")
    created = browser.post("/api/flows/", {"slug": "hello", "dsl": sample("hello")},
                           content_type="application/json", HTTP_X_CSRFTOKEN=csrf)

    assert listed.status_code == 200
    assert created.status_code == 201


def test_a_session_write_without_the_csrf_token_is_refused(owner):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)

    with no_rows_change():
        response = browser.post("/api/flows/", {"slug": "hello", "dsl": sample("hello")},
                                content_type="application/json")

    assert_error(response, 403, "permission_denied")


@pytest.mark.parametrize("path", ["/api/schema/", "/api/docs/", "/api/dsl/schema/"])
def test_the_documentation_needs_no_credentials(anonymous, path):
    assert anonymous.get(path).status_code == 200
    assert client_with("Token wrong").get(path).status_code == 200
