"""The `http` node and its guarded client (docs/dsl.md §5.7, §2 retries; docs/http.md).

Every request goes to a real server the tests start on 127.0.0.1 (or ::1), or is refused
before any connection is made; nothing here sends traffic anywhere else. Flows run through
the real engine (`run_document`) with `Services(http=client)`.
"""

from __future__ import annotations

import asyncio
import datetime
import gc
import ipaddress
import json
import ssl
import time
import warnings

import httpcore
import pytest

from engine.errors import NodeError
from engine.net import (
    AddressPolicy,
    BlockedAddress,
    GuardedHttpClient,
    blocked_reason,
    close_shared_http_client,
    normalize_host,
    parse_allow_hosts,
    shared_http_client,
)
from engine.ports import HttpRequest, Services
from engine.testing import run_document

from .localhttp import LocalServers, free_port

LOCAL = ["127.0.0.1", "localhost"]
KEY_RUN = "run-1"


# --- fixtures and helpers ----------------------------------------------------------------


@pytest.fixture(scope="module")
def servers():
    local = LocalServers()
    yield local
    local.close()


@pytest.fixture
def server(servers):
    servers.recorder.reset()
    return servers


@pytest.fixture
async def client():
    """A client whose allow-list lets the tests reach the local server."""
    async with GuardedHttpClient(allow_hosts=LOCAL) as guarded:
        yield guarded


@pytest.fixture
async def strict():
    """A client with no allow-list: the production default."""
    async with GuardedHttpClient() as guarded:
        yield guarded


def http_flow(params, *, retry=None, start_inputs=None, node_inputs=None, on_error=None,
              default=None):
    fetch = {"id": "fetch", "type": "http", "params": params}
    if retry is not None:
        fetch["retry"] = {"backoff_ms": 0, "jitter": False, **retry}
    if node_inputs is not None:
        fetch["inputs"] = node_inputs
    if on_error is not None:
        fetch["on_error"] = on_error
    if default is not None:
        fetch["default"] = default
    declared = {name: {"type": kind} for name, kind in (start_inputs or {}).items()}
    return {
        "dsl": "astron/v1", "name": "http test",
        "nodes": [
            {"id": "start", "type": "start", "params": {"inputs": declared}},
            fetch,
            {"id": "end", "type": "end", "inputs": {"status": "{{fetch.status}}",
                                                    "headers": "{{fetch.headers}}",
                                                    "body": "{{fetch.body}}"}},
        ],
        "edges": [{"from": "start", "to": "fetch"}, {"from": "fetch", "to": "end"}],
    }


async def run_http(http_client, params, inputs=None, **kw):
    start_inputs = kw.pop("start_inputs", None)
    if start_inputs is None and inputs:
        start_inputs = {name: "any" for name in inputs}
    doc = http_flow(params, start_inputs=start_inputs, **kw)
    services = Services(http=http_client) if http_client is not None else None
    result, events = await run_document(doc, inputs or {}, services=services, run_id=KEY_RUN)
    return result, events


def error_of(result):
    assert result.status == "failed", result.outputs
    return result.error


# --- happy paths ---------------------------------------------------------------------------


async def test_get_json(server, client):
    result, _ = await run_http(client, {"url": server.url("/json")})
    assert result.status == "succeeded", result.error
    assert result.outputs["status"] == 200
    assert result.outputs["body"] == {"hello": "world", "n": 1}
    assert result.outputs["headers"]["content-type"] == "application/json"
    [request] = server.requests
    assert request["method"] == "GET" and request["body"] == ""
    assert request["headers"]["idempotency-key"] == f"{KEY_RUN}/fetch"
    assert request["headers"]["host"] == f"127.0.0.1:{server.port}"


async def test_post_json_body(server, client):
    params = {"method": "POST", "url": server.url("/echo"),
              "body": {"name": "{{start.name}}", "tags": ["a", "é"], "n": "{{start.n}}"}}
    result, _ = await run_http(client, params, {"name": "Ada", "n": 3})
    assert result.status == "succeeded", result.error
    echoed = result.outputs["body"]
    assert echoed["method"] == "POST"
    assert echoed["headers"]["content-type"] == "application/json"
    assert echoed["body"] == '{"name":"Ada","tags":["a","é"],"n":3}'


@pytest.mark.parametrize(("body", "sent"), [([1, 2], "[1,2]"), (7, "7"), (True, "true"),
                                           (2.5, "2.5")])
async def test_other_json_values_are_sent_as_json(server, client, body, sent):
    result, _ = await run_http(client, {"method": "PUT", "url": server.url("/echo"),
                                        "body": body})
    echoed = result.outputs["body"]
    assert echoed["headers"]["content-type"] == "application/json"
    assert echoed["body"] == sent


async def test_text_body(server, client):
    params = {"method": "POST", "url": server.url("/echo"), "body": "hello {{start.name}}"}
    result, _ = await run_http(client, params, {"name": "Ada"})
    echoed = result.outputs["body"]
    assert echoed["body"] == "hello Ada"
    assert echoed["headers"]["content-type"] == "text/plain; charset=utf-8"


async def test_flow_content_type_wins_and_null_body_sends_nothing(server, client):
    params = {"method": "POST", "url": server.url("/echo"), "body": "<a/>",
              "headers": {"Content-Type": "application/xml"}}
    result, _ = await run_http(client, params)
    assert result.outputs["body"]["headers"]["content-type"] == "application/xml"
    result, _ = await run_http(client, {"method": "POST", "url": server.url("/echo"),
                                        "body": None})
    echoed = result.outputs["body"]
    assert echoed["body"] == "" and "content-type" not in echoed["headers"]


async def test_templated_url_headers_and_query(server, client):
    params = {
        "url": "{{start.base}}/echo?fixed=1&q=old",
        "headers": {"X-Name": "{{start.name}}", "X-Count": "n={{start.n}}",
                    "X-Who": "{{who}}", "X-Obj": "{{start.obj}}"},
        "query": {"q": "{{start.name}}", "n": "{{start.n}}", "empty": "{{start.missing}}"},
    }
    inputs = {"base": f"http://127.0.0.1:{server.port}", "name": "Ada Lovelace", "n": 3,
              "obj": {"b": 1, "a": [2.0]}, "missing": None}
    result, _ = await run_http(client, params, inputs, node_inputs={"who": "{{start.name}}"})
    assert result.status == "succeeded", result.error
    echoed = result.outputs["body"]
    assert echoed["path"] == "/echo"
    # The URL's own query is kept; query params are added, replacing same-named ones.
    assert echoed["query"] == {"fixed": "1", "q": "Ada Lovelace", "n": "3", "empty": ""}
    headers = echoed["headers"]
    assert headers["x-name"] == "Ada Lovelace"
    assert headers["x-count"] == "n=3"
    assert headers["x-who"] == "Ada Lovelace"
    assert headers["x-obj"] == '{"a":[2.0],"b":1}'  # templates render compact JSON (§3)


async def test_flow_idempotency_key_is_kept(server, client):
    params = {"url": server.url("/json"), "headers": {"idempotency-key": "mine"}}
    await run_http(client, params)
    assert server.requests[0]["headers"]["idempotency-key"] == "mine"


async def test_response_headers_lower_case_and_joined(server, client):
    result, _ = await run_http(client, {"url": server.url("/headers")})
    headers = result.outputs["headers"]
    assert all(name == name.lower() for name in headers)
    assert headers["set-cookie"] == "a=1, b=2"
    assert headers["x-multi"] == "one, two"
    assert headers["x-mixed-case"] == "Value"


@pytest.mark.parametrize(("path", "expect", "body"), [
    ("/json", "auto", {"hello": "world", "n": 1}),
    ("/json", "text", '{"hello": "world", "n": 1}'),
    ("/json", "json", {"hello": "world", "n": 1}),
    ("/text", "auto", "plain text ✓"),
    ("/text", "text", "plain text ✓"),
    ("/type?ct=text/plain&body=%7B%22a%22%3A1%7D", "json", {"a": 1}),
    ("/type?ct=text/plain&body=%7B%22a%22%3A1%7D", "auto", '{"a":1}'),
    ("/type?ct=application/problem%2Bjson&body=%5B1%5D", "auto", [1]),
    ("/type?ct=application/json;%20charset=utf-8&body=%22s%22", "auto", "s"),
    ("/type?ct=application/json&body=not%20json", "auto", "not json"),  # lenient: text
    ("/type?ct=application/json&body=", "auto", None),
    ("/type?ct=text/plain;%20charset=latin-1&body=caf%C3%A9", "text", "cafÃ©"),
    ("/gzip", "auto", {"zipped": True}),
])
async def test_expect_modes(server, client, path, expect, body):
    result, _ = await run_http(client, {"url": server.url(path), "expect": expect})
    assert result.status == "succeeded", result.error
    assert result.outputs["body"] == body


@pytest.mark.parametrize("body", ["not%20json", "NaN", "%7B"])
async def test_expect_json_with_unparsable_body_is_output_type(server, client, body):
    result, _ = await run_http(client, {"url": server.url(f"/type?ct=text/plain&body={body}"),
                                        "expect": "json"}, retry={"max_attempts": 3})
    error = error_of(result)
    assert error["code"] == "output_type"
    assert error["details"]["status"] == 200
    assert result.nodes["fetch"].attempts == 1  # not transient


async def test_head_request(server, client):
    result, _ = await run_http(client, {"method": "HEAD", "url": server.url("/json")})
    assert result.status == "succeeded", result.error
    assert result.outputs["status"] == 200
    assert result.outputs["body"] is None  # a JSON type with no content
    assert server.requests[0]["method"] == "HEAD"


async def test_connections_are_reused(server, client):
    for _ in range(3):
        result, _ = await run_http(client, {"url": server.url("/json")})
        assert result.status == "succeeded"
    assert len({tuple(r["client"]) for r in server.requests}) == 1  # one keep-alive connection


# --- statuses and retries ----------------------------------------------------------------


async def test_404_is_http_status_and_not_retried(server, client):
    result, events = await run_http(client, {"url": server.url("/status/404")},
                                    retry={"max_attempts": 3})
    error = error_of(result)
    assert error["code"] == "http_status"
    assert error["details"] == {"status": 404, "body": "status 404"}
    assert result.nodes["fetch"].attempts == 1
    assert len(server.requests) == 1
    assert not [e for e in events if e["type"] == "node.retrying"]


async def test_error_body_is_capped_to_one_kib(server, client):
    result, _ = await run_http(client, {"url": server.url("/status/418?size=5000")})
    error = error_of(result)
    assert error["details"] == {"status": 418, "body": "e" * 1024}


async def test_long_bodies_are_kept_whole_on_success(server, client):
    result, _ = await run_http(client, {"url": server.url("/type?ct=text/plain&body=" +
                                                          "y" * 3000)})
    assert result.outputs["body"] == "y" * 3000


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_transient_statuses_are_retried_with_the_same_key(server, client, status):
    name = f"s{status}"
    result, events = await run_http(client, {"url": server.url(f"/flaky/{name}/2/{status}")},
                                    retry={"max_attempts": 3})
    assert result.status == "succeeded", result.error
    assert result.outputs["body"] == {"ok": True}
    assert result.nodes["fetch"].attempts == 3
    keys = [r["headers"]["idempotency-key"] for r in server.requests]
    assert keys == [f"{KEY_RUN}/fetch"] * 3
    retrying = [e["data"] for e in events if e["type"] == "node.retrying"]
    assert [r["error"]["code"] for r in retrying] == ["http_status", "http_status"]
    assert retrying[0]["error"]["details"]["status"] == status


async def test_500_until_attempts_run_out(server, client):
    result, _ = await run_http(client, {"url": server.url("/flaky/always/9/500")},
                               retry={"max_attempts": 4})
    error = error_of(result)
    assert error["code"] == "http_status" and error["details"]["status"] == 500
    assert error["attempt"] == 4
    assert {r["headers"]["idempotency-key"] for r in server.requests} == {f"{KEY_RUN}/fetch"}
    assert len(server.requests) == 4


@pytest.mark.parametrize("status", [404, 500, 429, 302])
async def test_fail_on_status_false_returns_the_status(server, client, status):
    url = server.url(f"/status/{status}")
    result, _ = await run_http(client, {"url": url, "fail_on_status": False},
                               retry={"max_attempts": 3})
    assert result.status == "succeeded", result.error
    assert result.outputs["status"] == status
    assert result.outputs["body"] == f"status {status}"
    assert len(server.requests) == 1


# --- time, network, size -----------------------------------------------------------------


async def test_timeout(server, client):
    started = time.monotonic()
    result, _ = await run_http(client, {"url": server.url("/slow?s=5"), "timeout_s": 0.3})
    error = error_of(result)
    assert error["code"] == "timeout"
    assert time.monotonic() - started < 2


async def test_timeout_is_retried(server, client):
    result, _ = await run_http(client, {"url": server.url("/slow?s=5"), "timeout_s": 0.2},
                               retry={"max_attempts": 2})
    assert error_of(result)["code"] == "timeout"
    assert result.nodes["fetch"].attempts == 2


async def test_node_timeout_still_applies(server, client):
    doc_params = {"url": server.url("/slow?s=5")}
    doc = http_flow(doc_params)
    doc["nodes"][1]["timeout_s"] = 0.2
    result, _ = await run_document(doc, {}, services=Services(http=client))
    assert error_of(result)["code"] == "timeout"


async def test_connection_refused_is_network_error_and_retried(client):
    port = free_port()
    result, _ = await run_http(client, {"url": f"http://127.0.0.1:{port}/"},
                               retry={"max_attempts": 2})
    error = error_of(result)
    assert error["code"] == "network_error"
    assert "cannot connect" in error["message"]
    assert result.nodes["fetch"].attempts == 2


async def test_unresolvable_name_is_network_error():
    async def resolver(host, port):
        from engine.net import ResolutionError
        raise ResolutionError(f"cannot resolve {host}")

    async with GuardedHttpClient(resolver=resolver) as guarded:
        with pytest.raises(NodeError) as caught:
            await guarded.send(HttpRequest("GET", "http://nowhere.test/"))
    assert caught.value.code == "network_error"


@pytest.mark.parametrize("path", ["/big?n=10485761", "/big?n=11534336&chunked=1"])
async def test_oversize_is_too_large_and_not_retried(server, client, path):
    result, _ = await run_http(client, {"url": server.url(path)}, retry={"max_attempts": 3})
    error = error_of(result)
    assert error["code"] == "too_large"
    assert result.nodes["fetch"].attempts == 1


async def test_exactly_ten_mib_is_accepted(server, client):
    result, _ = await run_http(client, {"url": server.url("/big?n=10485760&chunked=1"),
                                        "expect": "text"})
    assert result.status == "succeeded", result.error
    assert len(result.outputs["body"]) == 10 * 1024 * 1024


async def test_smaller_cap_is_configurable(server):
    async with GuardedHttpClient(LOCAL, max_response_bytes=100) as small:
        result, _ = await run_http(small, {"url": server.url("/big?n=101&chunked=1")})
        assert error_of(result)["code"] == "too_large"
        result, _ = await run_http(small, {"url": server.url("/big?n=100")})
        assert result.status == "succeeded"


# --- bad params ----------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "ftp://example.com/file", "file:///etc/passwd", "not a url", "//example.com/x",
    "http:///path", "http://", "", " http://127.0.0.1/", "http://exa mple.com/",
    "http://127.0.0.1:99999/", "javascript:alert(1)",
])
async def test_bad_url_is_invalid_param(server, client, url):
    result, _ = await run_http(client, {"url": "{{start.url}}"}, {"url": url},
                               retry={"max_attempts": 3})
    error = error_of(result)
    assert error["code"] == "invalid_param", error
    assert result.nodes["fetch"].attempts == 1
    assert server.requests == []


@pytest.mark.parametrize("headers", [
    {"X-Bad": "a{{start.nl}}b"}, {"Bad Name": "x"}, {"Host": "evil.test"},
    {"Content-Length": "3"}, {"Transfer-Encoding": "chunked"},
])
async def test_bad_headers_are_invalid_param(server, client, headers):
    result, _ = await run_http(client, {"url": server.url("/json"), "headers": headers},
                               {"nl": "\r\nX-Injected: 1"})
    assert error_of(result)["code"] == "invalid_param"
    assert server.requests == []


# --- the address policy at run time --------------------------------------------------------


def refused_urls(server):
    port, port6 = server.port, server.port6 or server.port
    return [
        f"http://127.0.0.1:{port}/json",
        f"http://localhost:{port}/json",  # a name resolving to loopback
        f"http://LocalHost:{port}/json",
        f"http://[::1]:{port6}/json",
        f"http://[::ffff:127.0.0.1]:{port}/json",
        f"http://[::ffff:7f00:1]:{port}/json",
        f"http://[0:0:0:0:0:ffff:127.0.0.1]:{port}/json",
        "http://169.254.169.254/latest/meta-data/",
        f"http://10.0.0.1:{port}/json",
        f"http://0.0.0.0:{port}/json",
        f"http://[::]:{port}/json",
        f"http://2130706433:{port}/json",  # 127.0.0.1 as one number
        f"http://127.1:{port}/json",
        f"http://0x7f000001:{port}/json",
        f"http://[64:ff9b::7f00:1]:{port}/json",  # NAT64 form of 127.0.0.1
        f"http://[2002:7f00:1::1]:{port}/json",  # 6to4 form of 127.0.0.1
        "http://[fe80::1]/", "http://[fd12:3456::1]/", "http://192.168.1.1/",
        "http://172.16.0.1/", "http://100.64.0.1/", "http://224.0.0.1/",
        f"https://127.0.0.1:{port}/json",
    ]


async def test_private_addresses_are_refused_before_connecting(server, strict):
    for url in refused_urls(server):
        started = time.monotonic()
        result, _ = await run_http(strict, {"url": url}, retry={"max_attempts": 3})
        error = error_of(result)
        assert error["code"] == "blocked_address", (url, error)
        assert result.nodes["fetch"].attempts == 1, url  # never retried
        assert time.monotonic() - started < 1, url
    assert server.requests == []  # no request reached the local servers


async def test_default_services_use_the_shared_client_with_no_allow_list(server):
    try:
        result, _ = await run_http(None, {"url": server.url("/json")})
        assert error_of(result)["code"] == "blocked_address"
        assert shared_http_client() is shared_http_client()
        assert shared_http_client().policy.allow_hosts == frozenset()
    finally:
        await close_shared_http_client()
    assert server.requests == []


async def test_allow_list_is_exact_host_match(server):
    async with GuardedHttpClient(["LOCALHOST"]) as guarded:
        result, _ = await run_http(guarded, {"url": server.url("/json", host="localhost")})
        assert result.status == "succeeded", result.error
        # Same address, other spelling: not the allowed name.
        result, _ = await run_http(guarded, {"url": server.url("/json")})
        assert error_of(result)["code"] == "blocked_address"
    assert len(server.requests) == 1


# --- redirects -----------------------------------------------------------------------------


async def test_redirects_are_followed(server, client):
    result, _ = await run_http(client, {"url": server.url("/redirect?to=/json")})
    assert result.status == "succeeded", result.error
    assert result.outputs["body"] == {"hello": "world", "n": 1}
    assert [r["path"] for r in server.requests] == ["/redirect", "/json"]
    keys = {r["headers"]["idempotency-key"] for r in server.requests}
    assert keys == {f"{KEY_RUN}/fetch"}


@pytest.mark.parametrize(("status", "method", "body"), [
    (303, "GET", ""), (302, "GET", ""), (301, "GET", ""),
    (307, "POST", '{"a":1}'), (308, "POST", '{"a":1}'),
])
async def test_redirect_method_rules(server, client, status, method, body):
    params = {"method": "POST", "body": {"a": 1},
              "url": server.url(f"/redirect?status={status}&to=/echo")}
    result, _ = await run_http(client, params)
    echoed = result.outputs["body"]
    assert (echoed["method"], echoed["body"]) == (method, body)
    assert ("content-type" in echoed["headers"]) == (method == "POST")


async def test_more_than_five_redirects_fail(server, client):
    result, _ = await run_http(client, {"url": server.url("/loop/0")},
                               retry={"max_attempts": 3})
    error = error_of(result)
    assert error["code"] == "http_status" and error["details"]["status"] == 302
    assert "more than 5 redirects" in error["message"]
    assert len(server.requests) == 6  # the first request and five followed redirects
    assert result.nodes["fetch"].attempts == 1


async def test_five_redirects_are_fine(server, client):
    target = "/json"
    for _ in range(5):
        target = "/redirect?to=" + target.replace("&", "%26").replace("?", "%3F").replace(
            "=", "%3D").replace("/", "%2F")
    result, _ = await run_http(client, {"url": server.url(target)})
    assert result.status == "succeeded", result.error
    assert len(server.requests) == 6


async def test_cross_origin_redirect_drops_credentials(server, client):
    target = server.url("/echo", host="localhost")
    params = {"url": server.url(f"/redirect?to={target}"),
              "headers": {"Authorization": "Bearer secret", "Cookie": "c=1", "X-Keep": "yes"}}
    result, _ = await run_http(client, params)
    headers = result.outputs["body"]["headers"]
    assert "authorization" not in headers and "cookie" not in headers
    assert headers["x-keep"] == "yes"
    assert headers["idempotency-key"] == f"{KEY_RUN}/fetch"


async def test_same_origin_redirect_keeps_credentials(server, client):
    params = {"url": server.url("/redirect?to=/echo"),
              "headers": {"Authorization": "Bearer secret"}}
    result, _ = await run_http(client, params)
    assert result.outputs["body"]["headers"]["authorization"] == "Bearer secret"


async def test_redirect_from_allowed_host_to_loopback_address_is_refused(server):
    async with GuardedHttpClient(["localhost"]) as guarded:
        for target in (server.url("/json"), f"http://[::1]:{server.port6 or server.port}/json",
                       f"http://[::ffff:127.0.0.1]:{server.port}/json",
                       "http://169.254.169.254/latest/meta-data/"):
            server.recorder.reset()
            url = server.url(f"/redirect?to={target}", host="localhost")
            result, _ = await run_http(guarded, {"url": url}, retry={"max_attempts": 3})
            error = error_of(result)
            assert error["code"] == "blocked_address", (target, error)
            assert result.nodes["fetch"].attempts == 1
            assert [r["path"] for r in server.requests] == ["/redirect"], target


async def test_redirect_to_a_name_resolving_to_loopback_is_refused(server):
    async with GuardedHttpClient(["127.0.0.1"]) as guarded:
        url = server.url(f"/redirect?to={server.url('/json', host='localhost')}")
        result, _ = await run_http(guarded, {"url": url})
        assert error_of(result)["code"] == "blocked_address"
        assert "resolves to a loopback address" in error_of(result)["message"]
    assert [r["path"] for r in server.requests] == ["/redirect"]


async def test_redirect_from_public_looking_host_to_internal_names(server):
    """api.example.test is allowed and (by the test's resolver) served locally; names it
    redirects to resolve to loopback or link-local addresses and are refused."""
    fake = {"api.example.test": ["127.0.0.1"], "evil.example.test": ["127.0.0.1"],
            "metadata.example.test": ["169.254.169.254"],
            "mixed.example.test": ["8.8.8.8", "10.1.2.3"]}

    async def resolver(host, port):
        return fake[host]

    async with GuardedHttpClient(["api.example.test"], resolver=resolver) as guarded:
        ok, _ = await run_http(guarded, {"url": f"http://api.example.test:{server.port}/json"})
        assert ok.status == "succeeded", ok.error
        for name in ("evil.example.test", "metadata.example.test", "mixed.example.test"):
            server.recorder.reset()
            target = f"http://{name}:{server.port}/json"
            url = f"http://api.example.test:{server.port}/redirect?to={target}"
            result, _ = await run_http(guarded, {"url": url})
            error = error_of(result)
            assert error["code"] == "blocked_address", (name, error)
            assert "8.8.8.8" not in error["message"] and "10.1.2.3" not in error["message"]
            assert [r["path"] for r in server.requests] == ["/redirect"]


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/x",
                                      "gopher://example.test/"])
async def test_redirect_to_other_schemes_is_refused(server, client, location):
    result, _ = await run_http(client, {"url": server.url(f"/redirect?to={location}")})
    assert error_of(result)["code"] == "blocked_address"


# --- pinning: resolve once, check, connect to the checked IP --------------------------------


class SpyBackend(httpcore.AsyncNetworkBackend):
    """Records what the guarded backend asks to connect to; connects only to loopback."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host, port, timeout=None, local_address=None,
                          socket_options=None):
        self.calls.append((host, port))
        if not ipaddress.ip_address(host).is_loopback:
            raise httpcore.ConnectError(f"test refuses to leave the machine ({host})")
        return await self.inner.connect_tcp(host, port, timeout=timeout,
                                            local_address=local_address,
                                            socket_options=socket_options)

    async def sleep(self, seconds):
        await asyncio.sleep(seconds)


async def test_connects_to_the_checked_ip_with_the_original_host_header(server):
    resolutions = []

    async def resolver(host, port):
        resolutions.append(host)
        return ["127.0.0.1"]

    spy = SpyBackend()
    async with GuardedHttpClient(["pinned.test"], resolver=resolver,
                                 network_backend=spy) as guarded:
        for _ in range(2):
            result, _ = await run_http(guarded, {"url": f"http://pinned.test:{server.port}/echo"})
            assert result.status == "succeeded", result.error
            assert result.outputs["body"]["headers"]["host"] == f"pinned.test:{server.port}"
    assert resolutions == ["pinned.test"]  # once: the second request reused the connection
    assert spy.calls == [("127.0.0.1", server.port)]  # the address, never the name


async def test_a_checked_public_address_is_what_gets_connected(server):
    async def resolver(host, port):
        return ["93.184.216.34"]

    spy = SpyBackend()  # refuses to really connect anywhere but loopback
    async with GuardedHttpClient(resolver=resolver, network_backend=spy) as guarded:
        with pytest.raises(NodeError) as caught:
            await guarded.send(HttpRequest("GET", "http://public.test/"))
    assert caught.value.code == "network_error"
    assert spy.calls == [("93.184.216.34", 80)]


async def test_any_blocked_address_refuses_the_name(server):
    async def resolver(host, port):
        return ["8.8.8.8", "127.0.0.1"]

    spy = SpyBackend()
    async with GuardedHttpClient(resolver=resolver, network_backend=spy) as guarded:
        with pytest.raises(NodeError) as caught:
            await guarded.send(HttpRequest("GET", f"http://rebind.test:{server.port}/json"))
    assert caught.value.code == "blocked_address"
    assert spy.calls == []
    assert server.requests == []


async def test_next_address_is_tried_when_one_refuses(server):
    async def resolver(host, port):
        return ["::1", "127.0.0.1"] if server.port6 is None else ["127.0.0.2", "127.0.0.1"]

    async with GuardedHttpClient(["multi.test"], resolver=resolver) as guarded:
        response = await guarded.send(HttpRequest("GET", f"http://multi.test:{server.port}/json"))
    assert response.status == 200


async def test_tls_uses_the_original_name_for_sni_and_certificate():
    cryptography = pytest.importorskip("cryptography")
    del cryptography
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pinned.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("pinned.test")]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        cert_path, key_path = Path(folder, "cert.pem"), Path(folder, "key.pem")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(cert_path, key_path)
        client_context = ssl.create_default_context(cafile=str(cert_path))
    seen_names = []
    server_context.sni_callback = lambda sock, server_name, context: seen_names.append(
        server_name)
    tls = LocalServers(tls=server_context)

    async def resolver(host, port):
        return ["127.0.0.1"]

    try:
        async with GuardedHttpClient(["pinned.test", "127.0.0.1"], resolver=resolver,
                                     ssl_context=client_context) as guarded:
            response = await guarded.send(HttpRequest("GET",
                                                      f"https://pinned.test:{tls.port}/echo"))
            assert response.status == 200
            assert seen_names == ["pinned.test"]
            assert tls.requests[0]["headers"]["host"] == f"pinned.test:{tls.port}"
            # The certificate names pinned.test, not the address: by address it fails.
            with pytest.raises(NodeError) as caught:
                await guarded.send(HttpRequest("GET", f"https://127.0.0.1:{tls.port}/echo"))
            assert caught.value.code == "network_error"
        # With its default context (public roots) the client does not trust this certificate.
        async with GuardedHttpClient(["pinned.test"], resolver=resolver) as default:
            with pytest.raises(NodeError) as caught:
                await default.send(HttpRequest("GET", f"https://pinned.test:{tls.port}/echo"))
            assert caught.value.code == "network_error"
            assert "certificate" in caught.value.message.lower()
    finally:
        tls.close()


# --- the client on its own -------------------------------------------------------------------


async def test_client_maps_blocked_literal_to_node_error(strict):
    with pytest.raises(NodeError) as caught:
        await strict.send(HttpRequest("GET", "http://[::ffff:169.254.169.254]/"))
    error = caught.value
    assert error.code == "blocked_address"
    assert error.details["host"] == "::ffff:169.254.169.254"
    assert "link-local" in error.message
    assert not error.transient


@pytest.mark.parametrize(("body", "sent", "content_type"), [
    ({"a": 1}, '{"a":1}', "application/json"), ("text", "text", "text/plain; charset=utf-8"),
    (b"\x00raw", "\x00raw", None), (None, "", None),
])
async def test_client_encodes_bodies_it_is_given(server, client, body, sent, content_type):
    response = await client.send(HttpRequest("POST", server.url("/echo"), body=body,
                                             query={"x": "1"}))
    echoed = json.loads(response.content)
    assert echoed["body"] == sent and echoed["query"] == {"x": "1"}
    assert echoed["headers"].get("content-type") == content_type
    assert echoed["headers"]["user-agent"] == "Astron"
    assert "idempotency-key" not in echoed["headers"]  # the node adds it, not the client


def test_one_client_serves_successive_event_loops(server):
    """Pools belong to a loop; a client used from a new loop (asyncio.run again) makes new
    ones instead of failing on the old loop's connections."""
    guarded = GuardedHttpClient(LOCAL)

    async def fetch():
        return (await guarded.send(HttpRequest("GET", server.url("/json")))).status

    with warnings.catch_warnings():
        # The first loop's connection cannot be closed once its loop is gone: the garbage
        # collector closes it, with a ResourceWarning.
        warnings.simplefilter("ignore", ResourceWarning)
        assert asyncio.run(fetch()) == 200
        assert asyncio.run(fetch()) == 200
        asyncio.run(guarded.aclose())
        gc.collect()
    assert len({tuple(r["client"]) for r in server.requests}) == 2


async def test_closed_client_refuses_to_send():
    guarded = GuardedHttpClient()
    await guarded.aclose()
    await guarded.aclose()  # twice is fine
    with pytest.raises(RuntimeError):
        await guarded.send(HttpRequest("GET", "http://example.test/"))


async def test_parallel_nodes_share_the_pool(server, client):
    nodes = [{"id": "start", "type": "start"}]
    nodes += [{"id": f"h{i}", "type": "http", "params": {"url": server.url(f"/json?i={i}")}}
              for i in range(20)]
    nodes.append({"id": "end", "type": "end",
                  "inputs": {f"s{i}": f"{{{{h{i}.status}}}}" for i in range(20)}})
    edges = [{"from": "start", "to": f"h{i}"} for i in range(20)]
    edges += [{"from": f"h{i}", "to": "end"} for i in range(20)]
    doc = {"dsl": "astron/v1", "name": "fan-out", "settings": {"concurrency": 20},
           "nodes": nodes, "edges": edges}
    result, _ = await run_document(doc, {}, services=Services(http=client), run_id=KEY_RUN)
    assert result.status == "succeeded", result.error
    assert set(result.outputs.values()) == {200}
    keys = {r["headers"]["idempotency-key"] for r in server.requests}
    assert keys == {f"{KEY_RUN}/h{i}" for i in range(20)}  # one key per node


# --- the address policy, as a table ---------------------------------------------------------

BLOCKED = [
    # IPv4
    "0.0.0.0", "0.1.2.3", "10.0.0.1", "10.255.255.255", "100.64.0.1", "100.127.255.254",
    "127.0.0.1", "127.255.255.254", "169.254.0.1", "169.254.169.254", "172.16.0.1",
    "172.31.255.255", "192.0.0.1", "192.0.2.1", "192.88.99.1", "192.168.0.1",
    "192.168.255.255", "198.18.0.1", "198.19.255.255", "198.51.100.7", "203.0.113.9",
    "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    # IPv6
    "::", "::1", "fe80::1", "fe80::1%eth0", "febf::1", "fec0::1", "fc00::1", "fd12:3456::1",
    "ff02::1", "ff0e::1", "2001:db8::1", "100::1", "64:ff9b:1::1", "2001:10::1",
    # IPv4 inside IPv6
    "::ffff:127.0.0.1", "::ffff:7f00:1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
    "::ffff:0.0.0.0", "::ffff:192.168.1.1", "::ffff:0:127.0.0.1", "::127.0.0.1", "::10.0.0.1",
    "::0.0.0.2", "64:ff9b::127.0.0.1", "64:ff9b::a9fe:a9fe", "64:ff9b::a00:1",
    "2002:7f00:1::1", "2002:a00:1::", "2002:a9fe:a9fe::1", "2002:c0a8:101::1",
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo, client 127.0.0.1
    "2001:0:a00:1:8000:63bf:f7f7:f7f7",  # Teredo, server 10.0.0.1
]

ALLOWED = [
    "8.8.8.8", "1.1.1.1", "93.184.216.34", "100.63.255.255", "100.128.0.0", "172.15.255.255",
    "172.32.0.0", "192.0.3.1", "192.167.255.255", "192.169.0.0", "198.17.255.255",
    "198.20.0.0", "223.255.255.255", "11.0.0.1", "126.255.255.255", "128.0.0.1",
    "2001:4860:4860::8888", "2606:4700:4700::1111", "2a00:1450:4001:81b::200e",
    "::ffff:8.8.8.8", "::ffff:0:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1",
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo: public server and client (8.8.8.8)
]


@pytest.mark.parametrize("address", BLOCKED)
def test_policy_blocks(address):
    assert blocked_reason(address) is not None
    with pytest.raises(BlockedAddress):
        AddressPolicy().check("some.name", [address])
    with pytest.raises(BlockedAddress):
        AddressPolicy().check(address, [address])


@pytest.mark.parametrize("address", ALLOWED)
def test_policy_allows(address):
    assert blocked_reason(address) is None
    AddressPolicy().check("some.name", [address])


@pytest.mark.parametrize(("address", "words"), [
    ("127.0.0.1", "a loopback address"), ("10.1.1.1", "a private address"),
    ("169.254.169.254", "a link-local address"), ("0.0.0.0", "an unspecified address"),
    ("::", "an unspecified address"), ("fd00::1", "a unique-local address"),
    ("224.0.0.1", "a multicast address"),
    ("::ffff:127.0.0.1", "the IPv4-mapped form of a loopback address (127.0.0.1)"),
    ("64:ff9b::a9fe:a9fe", "the NAT64 form of a link-local address (169.254.169.254)"),
    ("2002:a00:1::", "the 6to4 form of a private address (10.0.0.1)"),
])
def test_policy_reasons(address, words):
    assert blocked_reason(address) == words


def test_policy_refuses_when_any_address_is_blocked():
    with pytest.raises(BlockedAddress) as caught:
        AddressPolicy().check("db.example.test", ["8.8.8.8", "::ffff:10.0.0.5"])
    assert "10.0.0.5" not in str(caught.value)  # internal addresses are not disclosed
    AddressPolicy().check("ok.example.test", ["8.8.8.8", "2001:4860:4860::8888"])


def test_allow_list_lets_the_host_through_whatever_it_resolves_to():
    policy = AddressPolicy.from_hosts("Intranet.Example.test, 127.0.0.1,[::1],Bücher.example")
    assert policy.allow_hosts == {"intranet.example.test", "127.0.0.1", "::1",
                                  "xn--bcher-kva.example"}
    policy.check("intranet.example.test", ["10.0.0.1", "127.0.0.1"])
    policy.check("INTRANET.example.test.", ["10.0.0.1"])
    policy.check("127.0.0.1", ["127.0.0.1"])
    policy.check("::1", ["::1"])
    policy.check("xn--bcher-kva.example", ["192.168.0.1"])
    for host in ("example.test", "sub.intranet.example.test", "intranet.example",
                 "127.0.0.2", "localhost"):
        with pytest.raises(BlockedAddress):
            policy.check(host, ["127.0.0.1"])


@pytest.mark.parametrize(("raw", "expected"), [
    ("", frozenset()), ("  ", frozenset()), (None, frozenset()),
    ("a.test", {"a.test"}), ("A.test , b.TEST.", {"a.test", "b.test"}),
    (["x.test", "::1"], {"x.test", "::1"}),
])
def test_parse_allow_hosts(raw, expected):
    assert parse_allow_hosts(raw) == expected


@pytest.mark.parametrize("raw", ["a.test,,b.test", "a.test,", "http://a.test/",
                                 "a.test:8080", "a.test/path", "user@a.test"])
def test_parse_allow_hosts_refuses_malformed(raw):
    with pytest.raises(ValueError):
        parse_allow_hosts(raw)


@pytest.mark.parametrize(("host", "normal"), [
    ("Example.COM.", "example.com"), ("BÜCHER.example", "xn--bcher-kva.example"),
    ("[::FFFF:127.0.0.1]", "::ffff:7f00:1"), ("::ffff:7f00:1", "::ffff:7f00:1"),
    ("0:0:0:0:0:0:0:1", "::1"), ("127.0.0.1", "127.0.0.1"), ("127.1", "127.1"),
])
def test_normalize_host(host, normal):
    assert normalize_host(host) == normal
