"""Requests about flows that are refused: each answers its status and code in the error
shape, and writes nothing."""

import json

import pytest

from flows import services

from .factories import assert_error, flow, no_rows_change, sample

pytestmark = pytest.mark.django_db


def broken_document():
    document = sample("hello")
    document["colour"] = "blue"
    document["nodes"][1]["params"]["template"] = "{{nowhere.text}}"
    document["nodes"].append({"id": "Bad Id", "type": "teleport"})
    document["edges"].append({"from": "greet", "to": "end"})
    return document


@pytest.fixture
def hello(owner):
    return flow(owner, "hello", slug="hello")


def test_an_invalid_document_is_400_invalid_dsl_with_every_problem(api, owner):
    document = broken_document()

    with no_rows_change():
        response = api.post("/api/flows/", {"slug": "broken", "dsl": document})

    error = assert_error(response, 400, "invalid_dsl")
    expected = [p.to_dict() for p in services.problems_of(owner, document, "broken")]
    assert error["details"] == expected
    assert len(expected) >= 4
    codes = {d["code"] for d in error["details"]}
    assert {"unknown_field", "unknown_reference", "bad_id", "duplicate_edge"} <= codes


def test_replacing_a_draft_with_an_invalid_document_changes_nothing(api, hello):
    with no_rows_change():
        response = api.put("/api/flows/hello/", {"dsl": broken_document()})

    error = assert_error(response, 400, "invalid_dsl")
    assert all(d["path"].startswith("/") for d in error["details"])


@pytest.mark.parametrize("dsl", ["a string", 3, [], None, True])
def test_a_document_that_is_not_an_object_is_invalid_dsl_at_the_root(api, dsl):
    with no_rows_change():
        response = api.post("/api/flows/", {"dsl": dsl})

    error = assert_error(response, 400, "invalid_dsl")
    assert error["details"][0]["path"] == ""


def test_a_document_nested_too_deep_is_invalid_dsl(api):
    deep = {}
    for _ in range(70):
        deep = {"x": deep}
    document = sample("hello") | {"description": deep}

    with no_rows_change():
        response = api.post("/api/flows/", {"dsl": document})

    error = assert_error(response, 400, "invalid_dsl")
    assert "too_deep" in {d["code"] for d in error["details"]}


def test_a_document_over_1_mib_is_invalid_dsl_too_large(api):
    document = sample("hello") | {"description": "x" * (1024 * 1024 + 10)}

    with no_rows_change():
        response = api.post("/api/flows/", {"dsl": document})

    error = assert_error(response, 400, "invalid_dsl")
    assert "too_large" in {d["code"] for d in error["details"]}


@pytest.mark.parametrize(("body", "path", "code"), [
    ({}, "/dsl", "missing_field"),
    ({"slug": "x"}, "/dsl", "missing_field"),
    ({"dsl": {}, "name": "Hello"}, "/name", "unknown_field"),
    ({"dsl": {}, "slug": 12}, "/slug", "wrong_type"),
    ({"dsl": {}, "slug": ["hello"]}, "/slug", "wrong_type"),
])
def test_a_malformed_create_request_is_400_invalid_request(api, body, path, code):
    with no_rows_change():
        response = api.post("/api/flows/", body)

    error = assert_error(response, 400, "invalid_request")
    assert {"path": path, "code": code} in [
        {"path": d["path"], "code": d["code"]} for d in error["details"]]


def test_an_unknown_field_is_named_in_the_error(api):
    response = api.post("/api/flows/", {"dsl": sample("hello"), "colour": "blue"})

    error = assert_error(response, 400, "invalid_request")
    assert error["details"] == [{"path": "/colour", "code": "unknown_field",
                                 "message": '"colour" is not a field of this request'}]
    assert "colour" in error["message"]


@pytest.mark.parametrize("body", [[], ["dsl"], "dsl", 7, None])
def test_a_body_that_is_not_an_object_is_400_invalid_request(api, body):
    with no_rows_change():
        response = api.post("/api/flows/", json.dumps(body), content_type="application/json")

    error = assert_error(response, 400, "invalid_request")
    assert error["details"][0]["path"] == ""


@pytest.mark.parametrize("slug", ["Hello", "-hello", "a" * 64, "validate", "hé", "a b", ""])
def test_a_malformed_or_reserved_slug_is_400_invalid_slug(api, slug):
    with no_rows_change():
        response = api.post("/api/flows/", {"slug": slug, "dsl": sample("hello")})

    assert_error(response, 400, "invalid_slug")


def test_a_taken_slug_is_409_slug_taken(api, hello):
    with no_rows_change():
        response = api.post("/api/flows/", {"slug": "hello", "dsl": sample("router")})

    assert_error(response, 409, "slug_taken")


def test_another_owner_may_use_the_same_slug(outsider_api, hello):
    response = outsider_api.post("/api/flows/", {"slug": "hello", "dsl": sample("hello")})

    assert response.status_code == 201


@pytest.mark.parametrize(("body", "path", "code"), [
    ({}, "/dsl", "missing_field"),
    ({"dsl": {}, "slug": "hello"}, "/slug", "unknown_field"),
    ({"dsl": {}, "name": "x"}, "/name", "unknown_field"),
])
def test_a_malformed_replace_request_is_400_and_changes_nothing(api, hello, body, path, code):
    with no_rows_change():
        response = api.put("/api/flows/hello/", body)

    error = assert_error(response, 400, "invalid_request")
    assert (path, code) in [(d["path"], d["code"]) for d in error["details"]]


@pytest.mark.parametrize("body", [{}, {"dsl": sample("hello"), "store": True}, ["x"]])
def test_a_malformed_validate_request_is_400(api, body):
    with no_rows_change():
        response = api.post("/api/flows/validate/", body)

    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize("body", [{"version": 2}, [], {"force": True}])
def test_publish_takes_only_an_empty_body(api, hello, body):
    with no_rows_change():
        response = api.post("/api/flows/hello/publish/", body)

    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize(("method", "path"), [
    ("get", "/api/flows/nope/"), ("put", "/api/flows/nope/"), ("delete", "/api/flows/nope/"),
    ("post", "/api/flows/nope/publish/"), ("get", "/api/flows/nope/versions/"),
    ("get", "/api/flows/nope/versions/1/"), ("get", "/api/flows/nope/export/"),
    ("post", "/api/flows/nope/runs/"), ("get", "/api/flows/a%00b/"),
    ("get", "/api/flows/" + "x" * 300 + "/"),
])
def test_an_unknown_flow_is_404(api, method, path):
    with no_rows_change():
        response = getattr(api, method)(path, {"dsl": sample("hello"), "inputs": {}}
                                        if method in ("put", "post") and "publish" not in path
                                        else None)

    assert_error(response, 404, "not_found")


def test_a_deleted_flow_cannot_be_changed_published_or_run(api, hello):
    api.delete("/api/flows/hello/")

    with no_rows_change():
        for response in (api.put("/api/flows/hello/", {"dsl": sample("hello")}),
                         api.delete("/api/flows/hello/"),
                         api.post("/api/flows/hello/publish/"),
                         api.get("/api/flows/hello/versions/"),
                         api.get("/api/flows/hello/export/"),
                         api.post("/api/flows/hello/runs/", {"inputs": {"name": "Ada"}})):
            assert_error(response, 404, "not_found")
