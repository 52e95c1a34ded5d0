"""Every refused request has the same error shape, whatever refused it: the parser, the
router, a method check, the size limit, or a bug (docs/api.md, Errors)."""

import json

import pytest
from django.test import RequestFactory

from flows.api.exceptions import server_error

from .factories import assert_error, flow, no_rows_change, sample

pytestmark = pytest.mark.django_db

WRITES = [
    ("post", "/api/flows/"),
    ("post", "/api/flows/validate/"),
    ("put", "/api/flows/hello/"),
    ("post", "/api/flows/hello/publish/"),
    ("post", "/api/flows/hello/runs/"),
]


@pytest.fixture
def hello(owner):
    return flow(owner, "hello", slug="hello")


@pytest.mark.parametrize(("method", "path"), WRITES)
@pytest.mark.parametrize("body", ['{"dsl": ', "{'dsl': 1}", "[1,]", "\xff\xfe", "{"])
def test_malformed_json_is_400_invalid_json(api, hello, method, path, body):
    with no_rows_change():
        response = getattr(api, method)(path, body.encode("latin-1"),
                                        content_type="application/json")

    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize("body", [
    '{"dsl": NaN}', '{"dsl": 1e999}', '{"dsl": "a\\u0000b"}', '{"a\\u0000": 1}',
    "[" * 100_000 + "]" * 100_000, "[" * 300 + "]" * 300,
])
def test_json_that_cannot_be_stored_is_400_invalid_json(api, body):
    with no_rows_change():
        response = api.post("/api/flows/", body, content_type="application/json")

    assert_error(response, 400, "invalid_json")


@pytest.mark.parametrize(("method", "path"), WRITES)
def test_a_body_over_2_mib_is_413(api, hello, method, path):
    document = sample("hello") | {"description": "x" * (2 * 1024 * 1024)}

    with no_rows_change():
        response = getattr(api, method)(path, json.dumps({"dsl": document}),
                                        content_type="application/json")

    assert_error(response, 413, "too_large")


def test_a_body_of_exactly_2_mib_is_read(api):
    padding = 2 * 1024 * 1024 - len(json.dumps({"dsl": {}, "x": ""}))
    body = json.dumps({"dsl": {}, "x": "y" * padding})
    assert len(body) == 2 * 1024 * 1024

    response = api.post("/api/flows/validate/", body, content_type="application/json")

    error = assert_error(response, 400, "invalid_request")
    assert [d["path"] for d in error["details"]] == ["/x"]


def test_a_body_over_the_limit_is_413_even_if_something_reads_it_without_the_middleware(
        api, settings):
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "BodyLimit" not in m]
    body = json.dumps({"dsl": {"name": "x" * (2 * 1024 * 1024)}})

    with no_rows_change():
        response = api.post("/api/flows/", body, content_type="application/json")

    assert_error(response, 413, "too_large")


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain",
                                          "application/xml"])
def test_a_body_that_is_not_json_is_415(api, content_type):
    with no_rows_change():
        response = api.post("/api/flows/", "dsl=1", content_type=content_type)

    assert_error(response, 415, "unsupported_media_type")


def test_a_form_post_to_an_endpoint_that_takes_json_is_415(owner):
    from django.test import Client

    client = Client()
    client.force_login(owner)

    with no_rows_change():
        response = client.post("/api/flows/", {"dsl": "{}"})

    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize(("method", "path"), [
    ("patch", "/api/flows/hello/"), ("get", "/api/flows/validate/"),
    ("delete", "/api/flows/"), ("get", "/api/flows/hello/runs/"),
    ("get", "/api/flows/hello/publish/"), ("put", "/api/runs/"),
])
def test_a_method_an_endpoint_does_not_have_is_405(api, hello, method, path):
    with no_rows_change():
        response = getattr(api, method)(path, {})

    assert_error(response, 405, "method_not_allowed")
    assert response["Allow"]


@pytest.mark.parametrize("path", ["/api/", "/api/nothing/", "/api/flows/hello/nothing/",
                                  "/api/flows/hello/versions/x/"])
def test_an_unknown_api_path_is_404_in_the_error_shape(api, hello, path):
    assert_error(api.get(path), 404, "not_found")


@pytest.mark.parametrize("method", ["get", "post", "put", "delete"])
def test_an_unknown_api_path_is_404_for_every_method_even_in_debug(anonymous, settings, method):
    settings.DEBUG = True

    assert_error(getattr(anonymous, method)("/api/nothing/here/"), 404, "not_found")


def test_a_missing_final_slash_is_added_by_redirect(api):
    response = api.get("/api/flows")

    assert response.status_code == 301
    assert response["Location"] == "/api/flows/"


def test_unknown_paths_elsewhere_keep_djangos_page(client):
    response = client.get("/nothing/")

    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


def test_a_server_error_under_the_api_keeps_the_shape():
    response = server_error(RequestFactory().get("/api/flows/"))

    assert response.status_code == 500
    assert json.loads(response.content)["error"]["code"] == "server_error"


def test_a_json_only_client_gets_json_errors(api):
    response = api.get("/api/flows/nope/", HTTP_ACCEPT="application/json")

    assert response["Content-Type"] == "application/json"
    assert_error(response, 404, "not_found")


PATHS_WITHOUT_SLASH = [("post", "/api/flows"), ("put", "/api/flows/hello"),
                       ("post", "/api/flows/hello/publish")]


@pytest.mark.parametrize(("method", "path"), PATHS_WITHOUT_SLASH)
def test_a_write_without_its_slash_is_a_404_that_names_the_right_path(api, method, path):
    """Not a redirect: a 301 turns a POST into a GET with an empty body."""
    response = getattr(api, method)(path, {})

    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_found"
    assert error["message"].endswith(f"the API's paths end with a slash: {path}/")


@pytest.mark.parametrize(("method", "path"), PATHS_WITHOUT_SLASH)
def test_with_debug_on_a_path_without_its_slash_is_a_404_too(api, settings, method, path):
    """Django's slash redirect raises for a POST with DEBUG on (a 500); its debug 404 page
    is what DEBUG shows for any path that is not there."""
    settings.DEBUG = True

    assert getattr(api, method)(path, {}).status_code == 404


def test_the_pages_still_add_the_missing_slash(client):
    response = client.get("/flows")

    assert response.status_code == 301 and response["Location"] == "/flows/"
