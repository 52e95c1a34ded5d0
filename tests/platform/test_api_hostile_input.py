"""Hostile or odd input never makes the API answer 500: out-of-range numbers and dates, NUL
characters, forged cursors, deep nesting, huge numbers, long searches, bodies without a
Content-Length (docs/api.md: no 500 for bad input)."""

import asyncio
import io
import json
from contextlib import contextmanager

import pytest
from asgiref.sync import async_to_sync
from django.core.asgi import get_asgi_application
from django.core.signals import request_finished, request_started
from django.db import close_old_connections

from flows import services
from flows.models import Flow

from .factories import api_client, assert_error, flow, no_rows_change, run, sample

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
    ("get", "/api/runs/?cursor=%00", None, 400),
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


@pytest.mark.parametrize("q", ["x" * 201, "x" * 50_000, "%" * 50_000, "é" * 201])
def test_a_search_longer_than_200_characters_is_400(api, owner, q):
    flow(owner, "hello", slug="hello")

    response = api.get("/api/flows/", {"q": q})

    error = assert_error(response, 400, "invalid_request")
    assert [d["path"] for d in error["details"]] == ["q"]


def test_a_search_of_200_characters_is_served(api, owner):
    flow(owner, "hello", slug="hello")

    response = api.get("/api/flows/", {"q": "%_\\" * 66 + "he"})

    assert response.status_code == 200, response.content
    assert response.json()["results"] == []


# --- Bodies without a Content-Length (Transfer-Encoding: chunked) -----------------------------

MIB = 1024 * 1024


class Answer:
    """A response collected from the ASGI messages, with what the tests read of it."""

    def __init__(self, messages):
        start = next(m for m in messages if m["type"] == "http.response.start")
        self.status_code = start["status"]
        self.headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
        self.content = b"".join(m.get("body", b"") for m in messages
                                if m["type"] == "http.response.body")

    def json(self):
        return json.loads(self.content)


@contextmanager
def connections_kept():
    """As Django's test clients do: a request does not close the test's connection (its
    transaction holds the test's rows)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def chunked_over_asgi(key, path, body: bytes, chunk=64 * 1024) -> Answer:
    """POST `body` to Django's ASGI handler (what daphne serves) in chunks, with
    `Transfer-Encoding: chunked` and no Content-Length, as daphne passes such a request."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "client": ("127.0.0.1", 40000),
             "server": ("testserver", 80),
             "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"),
                         (b"transfer-encoding", b"chunked"),
                         (b"authorization", f"Token {key}".encode())]}
    parts = [body[i:i + chunk] for i in range(0, len(body), chunk)]
    incoming = [{"type": "http.request", "body": part, "more_body": True} for part in parts]
    incoming.append({"type": "http.request", "body": b"", "more_body": False})
    sent = []

    async def receive():
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()  # the client stays connected

    async def send(message):
        sent.append(message)

    with connections_kept():
        async_to_sync(get_asgi_application())(scope, receive, send)
    return Answer(sent)


def chunked_over_wsgi(client, path, body: bytes):
    """The same through WSGI: a server that reads chunked bodies passes no CONTENT_LENGTH
    and says the input ends by itself (wsgi.input_terminated)."""
    return client.generic("POST", path, b"", content_type="application/json",
                          CONTENT_LENGTH="", HTTP_TRANSFER_ENCODING="chunked",
                          **{"wsgi.input": io.BytesIO(body), "wsgi.input_terminated": True})


@pytest.fixture
def key(owner):
    return services.create_token(owner, "chunked")[1]


def document(size=0):
    """A flow document's body, padded with a long description to about `size` bytes."""
    bare = sample("hello") | {"description": ""}
    padding = max(0, size - len(json.dumps({"dsl": bare})))
    return json.dumps({"dsl": bare | {"description": "x" * padding}}).encode()


def test_a_chunked_body_is_read_over_asgi(key, owner):
    checked = chunked_over_asgi(key, "/api/flows/validate/", document(), chunk=100)
    created = chunked_over_asgi(key, "/api/flows/", document(9000), chunk=1000)

    assert checked.status_code == 200, checked.content
    assert checked.json() == {"valid": True, "errors": []}
    assert created.status_code == 201, created.content
    assert created.json()["slug"] == "hello"
    assert Flow.objects.get(owner=owner).draft["nodes"] == sample("hello")["nodes"]


@pytest.mark.parametrize("size", [2 * MIB + 1, 3 * MIB])
def test_a_chunked_body_over_2_mib_is_413_over_asgi(key, size):
    body = document(size)
    assert len(body) == size

    with no_rows_change():
        response = chunked_over_asgi(key, "/api/flows/", body)

    assert response.headers["content-type"] == "application/json"
    assert_error(response, 413, "too_large")


def test_a_chunked_body_of_exactly_2_mib_is_read_over_asgi(key):
    padding = 2 * MIB - len(json.dumps({"dsl": {}, "x": ""}))
    body = json.dumps({"dsl": {}, "x": "y" * padding}).encode()
    assert len(body) == 2 * MIB

    response = chunked_over_asgi(key, "/api/flows/validate/", body)

    error = assert_error(response, 400, "invalid_request")
    assert [d["path"] for d in error["details"]] == ["/x"]


def test_a_chunked_body_is_read_over_wsgi(owner):
    client = api_client(owner)

    checked = chunked_over_wsgi(client, "/api/flows/validate/", document())
    created = chunked_over_wsgi(client, "/api/flows/", document())

    assert checked.status_code == 200, checked.content
    assert checked.json()["valid"] is True
    assert created.status_code == 201, created.content
    assert Flow.objects.filter(owner=owner).count() == 1


def test_a_chunked_body_over_2_mib_is_413_over_wsgi(owner):
    client = api_client(owner)

    with no_rows_change():
        response = chunked_over_wsgi(client, "/api/flows/", document(3 * MIB))

    assert_error(response, 413, "too_large")
