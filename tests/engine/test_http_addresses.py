"""Where the `http` node may connect: the address policy at run time, redirects, and pinning each
connection to the address that was checked (docs/http.md). Only local servers the tests start
are reached."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import time

import httpcore
import pytest

from engine.errors import NodeError
from engine.net import (
    GuardedHttpClient,
    close_shared_http_client,
    shared_http_client,
)
from engine.ports import HttpRequest

from .http_support import (  # noqa: F401 (fixtures)
    KEY_RUN,
    LOCAL,
    error_of,
    http_flow,
    run_http,
)
from .localhttp import LocalServers

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
