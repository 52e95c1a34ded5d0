"""The guarded HTTP client on its own, and the address policy as a table (docs/http.md)."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import json
import warnings

import pytest

from engine.errors import NodeError
from engine.net import (
    AddressPolicy,
    BlockedAddress,
    GuardedHttpClient,
    blocked_reason,
    normalize_host,
    parse_allow_hosts,
)
from engine.ports import HttpRequest, Services
from engine.testing import run_document

from .http_support import (  # noqa: F401 (fixtures)
    KEY_RUN,
    LOCAL,
    error_of,
    http_flow,
    run_http,
)

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
    ("0:0:0:0:0:0:0:1", "::1"), ("127.0.0.1", "127.0.0.1"), ("127.1", "127.0.0.1"),
])
def test_normalize_host(host, normal):
    assert normalize_host(host) == normal


@pytest.mark.parametrize("host", ["127.0.0.1.", "127.1", "0x7f.0.0.1", "2130706433",
                                  "017700000001", "0x7f000001"])
def test_ip_literals_in_disguise_are_addresses_checked_without_a_lookup(host):
    """inet_aton reads these as 127.0.0.1; they are taken as the address, never resolved."""
    from engine.net.policy import literal_ip

    assert literal_ip(normalize_host(host)) == ipaddress.IPv4Address("127.0.0.1")


@pytest.mark.parametrize("host", ["example.com", "1.2.3.4.5", "999.1", "x127.1", "a1"])
def test_names_that_only_look_numeric_stay_names(host):
    from engine.net.policy import literal_ip

    assert literal_ip(normalize_host(host)) is None
