"""The `http` node in flows: requests, statuses and retries, time, network and size limits, bad
params (docs/dsl.md §5.7, §2 retries; docs/http.md). Every request goes to a real server the
tests start on 127.0.0.1 (or ::1), or is refused before any connection is made."""

from __future__ import annotations

import time

import pytest

from engine.errors import NodeError
from engine.net import (
    GuardedHttpClient,
)
from engine.ports import HttpRequest, Services
from engine.testing import run_document

from .http_support import (
    KEY_RUN,
    LOCAL,
    error_of,
    http_flow,
    run_http,
)
from .localhttp import free_port

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
    """The response cap is 10 MiB; a node's outputs obey RUN_VALUE_MAX_BYTES as well, set
    above it here."""
    result, _ = await run_http(client, {"url": server.url("/big?n=10485760&chunked=1"),
                                        "expect": "text"}, value_max_bytes=16 * 1024 * 1024)
    assert result.status == "succeeded", result.error
    assert len(result.outputs["body"]) == 10 * 1024 * 1024


async def test_a_body_over_the_value_limit_fails_too_large(server, client):
    result, _ = await run_http(client, {"url": server.url("/big?n=5242880&chunked=1"),
                                        "expect": "text"})  # 5 MiB: over the default 4 MiB
    assert error_of(result)["code"] == "too_large"
    assert "RUN_VALUE_MAX_BYTES" in error_of(result)["message"]


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
