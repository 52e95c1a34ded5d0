"""The API documents itself: OpenAPI 3 at /api/schema/, a page at /api/docs/ that works
without network, and the DSL's JSON Schema at /api/dsl/schema/."""

import re

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command

from engine import document_json_schema

from .factories import assert_error

pytestmark = pytest.mark.django_db


def test_the_openapi_document_lists_every_endpoint(anonymous):
    response = anonymous.get("/api/schema/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert {"/api/flows/", "/api/flows/validate/", "/api/flows/{slug}/",
            "/api/flows/{slug}/publish/", "/api/flows/{slug}/versions/",
            "/api/flows/{slug}/versions/{number}/", "/api/flows/{slug}/export/",
            "/api/flows/{slug}/runs/", "/api/runs/", "/api/runs/{run_id}/",
            "/api/runs/{run_id}/events/", "/api/runs/{run_id}/answer/",
            "/api/runs/{run_id}/cancel/", "/api/dsl/schema/", "/api/secrets/",
            "/api/secrets/{name}/", "/api/flows/{slug}/webhooks/",
            "/api/flows/{slug}/webhooks/{hook_id}/", "/hooks/{hook_id}/",
            "/api/flows/{slug}/schedules/", "/api/flows/{slug}/schedules/{schedule_id}/",
            } <= set(schema["paths"])
    delivery = schema["paths"]["/hooks/{hook_id}/"]["post"]
    assert {"Astron-Signature", "Astron-Delivery"} <= {p["name"] for p in delivery["parameters"]}
    assert not delivery.get("security") or {} in delivery["security"]
    assert "tokenAuth" in schema["components"]["securitySchemes"]


def test_the_openapi_document_comes_in_yaml_too(anonymous):
    response = anonymous.get("/api/schema/", {"format": "yaml"})

    assert response.status_code == 200
    assert response.content.startswith(b"openapi: 3.")


def test_the_schema_generates_without_warnings(tmp_path):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file",
                 str(tmp_path / "schema.yaml"))

    assert "/api/runs/{run_id}/events/" in (tmp_path / "schema.yaml").read_text()


def test_the_docs_page_uses_only_local_assets(anonymous):
    response = anonymous.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", html)
    assert urls, html
    assert all(url.startswith("/static/") for url in urls), urls
    assert "//cdn" not in html and "https://" not in html
    for url in urls:
        assert finders.find(url.removeprefix("/static/")), url


def test_the_dsl_schema_is_the_engines(anonymous):
    response = anonymous.get("/api/dsl/schema/")

    assert response.status_code == 200
    assert response.json() == document_json_schema()


DOCUMENTATION = ["/api/docs/", "/api/schema/", "/api/dsl/schema/"]


@pytest.mark.parametrize("path", DOCUMENTATION)
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "options"])
def test_the_documentation_is_read_only_and_refuses_in_the_error_shape(anonymous, api, path,
                                                                      method):
    for client in (anonymous, api):
        response = getattr(client, method)(path, {"dsl": {}})

        assert response["Content-Type"] == "application/json", response.content[:200]
        assert_error(response, 405, "method_not_allowed")
        assert set(response["Allow"].replace(" ", "").split(",")) == {"GET", "HEAD"}


@pytest.mark.parametrize("path", DOCUMENTATION)
def test_the_documentation_answers_head(anonymous, path):
    response = anonymous.head(path)

    assert response.status_code == 200


def test_the_docs_page_refuses_what_it_cannot_render_in_the_error_shape(anonymous):
    response = anonymous.get("/api/docs/", HTTP_ACCEPT="application/json")

    assert response["Content-Type"] == "application/json"
    assert_error(response, 406, "not_acceptable")
