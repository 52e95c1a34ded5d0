"""Hostile or odd input never makes the API answer 500: out-of-range numbers and dates, NUL
characters, forged cursors, deep nesting, huge numbers (api.md: no 500 for bad input)."""

import pytest

from flows import services

from .factories import flow, run, sample

pytestmark = pytest.mark.django_db

ANY_INPUT = {
    "dsl": "astron/v1", "name": "Any",
    "nodes": [
        {"id": "start", "type": "start",
         "params": {"inputs": {"x": {"type": "any"}, "n": {"type": "number"}}}},
        {"id": "end", "type": "end", "inputs": {"x": "{{start.x}}"}}],
    "edges": [{"from": "start", "to": "end"}]}


def nested(levels):
    value = 1
    for _ in range(levels):
        value = [value]
    return value


@pytest.fixture
def queued(owner):
    """A queued run of `hello` (published), beside a flow `any` taking inputs of any type."""
    services.create_flow(owner, ANY_INPUT, slug="any")
    return run(owner, flow(owner, "hello", slug="hello", publish=True))


CASES = [
    ("get", "/api/runs/?created_after=0001-01-01T00:00:00%2B14:00", None, 400),
    ("get", "/api/runs/?created_after=99999-01-01", None, 400),
    ("get", "/api/runs/?created_before=0001-01-01", None, 200),
    ("get", "/api/runs/?flow=%00", None, 400),
    ("get", "/api/flows/?q=%00", None, 400),
    ("get", "/api/runs/?status=%00", None, 400),
    ("get", "/api/runs/?page_size=0", None, 200),
    ("get", "/api/runs/?page_size=-5", None, 200),
    ("get", "/api/flows/hello/versions/?cursor=cD05OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OQ==", None,
     400),
    ("get", "/api/runs/?cursor=bz05OTk5OTk5", None, 200),
    ("get", "/api/runs/?cursor=%00", None, 200),
    ("get", "/api/runs/{run}/events/?after=99999999999999999999999999", None, 200),
    ("post", "/api/flows/any/runs/", {"inputs": {"x": nested(190)}}, 201),
    ("post", "/api/flows/any/runs/", {"inputs": {"x": 10**4000}}, 201),
    ("post", "/api/flows/any/runs/", {"inputs": {"n": 10**400}}, 201),
    ("post", "/api/flows/any/runs/", {"inputs": {"x": "é\u2028\ud7ff"}}, 201),
    ("post", "/api/flows/any/runs/", {"inputs": {}, "version": -(10**30)}, 400),
    ("post", "/api/flows/any/runs/", {"inputs": {}, "wait": 1e-9}, 201),
    ("post", "/api/flows/any/runs/", {"inputs": {}}, 201),
    ("post", "/api/runs/{run}/answer/", {"answer": "x", "option": {"a": 1}}, 409),
    ("post", "/api/runs/{run}/answer/", {"answer": "x", "node": ""}, 400),
    ("post", "/api/flows/", {"dsl": nested(190)}, 400),
    ("post", "/api/flows/validate/", {"dsl": sample("hello") | {"name": 10**4000}}, 200),
    ("post", "/api/flows/", {"slug": "x" * 10000, "dsl": sample("hello")}, 400),
    ("put", "/api/flows/hello/", {"dsl": {**sample("hello"), "nodes": [
        {"id": "s", "type": "subflow", "params": {"flow": "hello"}}]}}, 400),
    ("get", "/api/flows/h%C3%A9llo/", None, 404),
    ("get", "/api/runs/%E2%98%83/", None, 404),
    ("head", "/api/flows/", None, 200),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), CASES)
def test_odd_input_is_answered_without_a_server_error(api, queued, method, path, body, status):
    response = getattr(api, method)(path.format(run=queued.pk), body)

    assert response.status_code == status, response.content
