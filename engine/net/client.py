"""The guarded HTTP client: the engine's implementation of the `HttpClient` port.

One instance holds one keep-alive connection pool (httpcore, through `GuardedTransport`)
whose connections only ever go to addresses the policy checked. On top of it this module
follows redirects itself (each hop's connection is checked again), caps response bodies and
bounds the whole exchange by the request's timeout, turning every failure into a NodeError.

httpx's `AsyncClient` is deliberately not used: it keeps a cookie jar shared by every request
(one flow's cookies would reach another's requests), reads proxies from the environment
(which would bypass the address checks), and follows redirects with its own rules.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from engine.errors import NodeError
from engine.net.policy import AddressPolicy, BlockedAddress
from engine.net.request import header_pairs, parse_url
from engine.net.resolve import Resolver
from engine.net.transport import GuardedTransport
from engine.ports import HttpRequest, HttpResponse

MAX_RESPONSE_BYTES = 10 * 1024 * 1024
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Credentials are not carried to another origin by a redirect.
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
_BODY_HEADERS = frozenset({"content-type", "content-encoding", "content-language"})
DEFAULT_HEADERS = (("accept", "*/*"), ("accept-encoding", "gzip, deflate"),
                   ("user-agent", "Astron"))


class GuardedHttpClient:
    """Sends requests under the address policy; safe to share by every run of a process.

    Connections belong to the event loop that opened them, so the pools do too: used from
    another loop (a second `asyncio.run`, the next test), the client starts new pools and
    drops the old ones, which that loop can no longer drive. Close it with `aclose()`.
    """

    def __init__(self, allow_hosts: str | Iterable[str] | None = (), *,
                 resolver: Resolver | None = None, ssl_context: ssl.SSLContext | None = None,
                 network_backend: httpcore.AsyncNetworkBackend | None = None,
                 max_response_bytes: int = MAX_RESPONSE_BYTES,
                 max_redirects: int = MAX_REDIRECTS,
                 max_connections: int = 256, lane_size: int = 4,
                 keepalive_expiry: float = 15.0):
        self.policy = AddressPolicy.from_hosts(allow_hosts)
        self.max_response_bytes = max_response_bytes
        self.max_redirects = max_redirects
        self._transport_options = {
            "resolver": resolver, "ssl_context": ssl_context,
            "network_backend": network_backend, "max_connections": max_connections,
            "lane_size": lane_size, "keepalive_expiry": keepalive_expiry}
        self._transport: GuardedTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    @property
    def transport(self) -> GuardedTransport:
        """The pools of the running event loop (made on first use in each loop)."""
        loop = asyncio.get_running_loop()
        if self._transport is None or self._loop is not loop:
            self._transport = GuardedTransport(self.policy, **self._transport_options)
            self._loop = loop
        return self._transport

    async def __aenter__(self) -> GuardedHttpClient:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the pooled connections (those of the running loop; others are dropped)."""
        self.closed = True
        transport, loop = self._transport, self._loop
        self._transport = self._loop = None
        if transport is not None and loop is asyncio.get_running_loop():
            await transport.aclose()

    async def send(self, request: HttpRequest) -> HttpResponse:
        if self.closed:
            raise RuntimeError("the HTTP client is closed")
        try:
            url = parse_url(request.url)
            if request.query:
                url = url.copy_merge_params({str(k): str(v) for k, v in request.query.items()})
            headers = header_pairs(request.headers)
        except ValueError as error:
            raise NodeError("invalid_param", str(error)) from None
        content, content_type = _encode_body(request.body)
        given = {name.lower() for name, _ in request.headers.items()}
        if content_type and "content-type" not in given:
            headers.append((b"content-type", content_type.encode("ascii")))
        for name, value in DEFAULT_HEADERS:
            if name not in given:
                headers.append((name.encode("ascii"), value.encode("ascii")))
        timeout = request.timeout_s
        try:
            async with asyncio.timeout(timeout):
                return await self._exchange(request.method.upper(), url, headers, content,
                                            timeout)
        except TimeoutError:
            raise NodeError("timeout", f"no complete answer within {timeout:g} s",
                            details={"timeout_s": timeout}) from None
        except BlockedAddress as error:
            raise NodeError("blocked_address", str(error),
                            details={"host": error.host, "reason": error.reason}) from None
        except httpx.TimeoutException as error:
            raise NodeError("timeout", f"no complete answer within {timeout:g} s ({error})",
                            details={"timeout_s": timeout}) from None
        except httpx.LocalProtocolError as error:
            raise NodeError("invalid_param", f"the request cannot be sent: {error}") from None

    async def _exchange(self, method: str, url: httpx.URL, headers: list[tuple[bytes, bytes]],
                        content: bytes | None, timeout: float) -> HttpResponse:
        extensions = {"timeout": {"connect": timeout, "read": timeout, "write": timeout,
                                  "pool": timeout}}
        followed = 0
        transport = self.transport
        while True:
            request = httpx.Request(method, url, headers=headers, content=content,
                                    extensions=extensions)
            try:
                response = await transport.handle_async_request(request)
            except (httpx.TimeoutException, httpx.LocalProtocolError):
                raise
            except httpx.RequestError as error:  # connection and protocol failures
                raise NodeError("network_error", _describe(error, url)) from None
            response.request = request
            try:
                location = response.headers.get("location") \
                    if response.status_code in REDIRECT_STATUSES else None
                if location is None:
                    return await self._read(response, method, url)
                if followed == self.max_redirects:
                    raise NodeError("http_status",
                                    f"more than {self.max_redirects} redirects (the last one "
                                    f"answered {response.status_code})",
                                    details={"status": response.status_code, "body": ""})
                target = _redirect_target(url, location, response.status_code)
                method, content, headers = _redirected(method, content, headers, url, target,
                                                       response.status_code)
                url = target
                followed += 1
            finally:
                await response.aclose()

    async def _read(self, response: httpx.Response, method: str, url: httpx.URL,
                    ) -> HttpResponse:
        limit = self.max_response_bytes
        declared = response.headers.get("content-length", "")
        if method != "HEAD" and declared.isdigit() and int(declared) > limit:
            raise _too_large(limit)  # refused before reading any of it
        chunks = []
        received = 0
        try:
            # Decoded bytes are counted (gzip and deflate are undone), so a small compressed
            # answer cannot expand past the limit.
            async for chunk in response.aiter_bytes():
                received += len(chunk)
                if received > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
        except (httpx.TimeoutException, httpx.LocalProtocolError):
            raise
        except httpx.RequestError as error:  # lost connection, bad framing, bad gzip
            raise NodeError("network_error", _describe(error, url)) from None
        headers: dict[str, str] = {}
        for name, value in response.headers.multi_items():
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return HttpResponse(status=response.status_code, headers=headers,
                            content=b"".join(chunks),
                            content_type=headers.get("content-type", ""))


def _encode_body(body: Any) -> tuple[bytes | None, str | None]:
    """Bytes to send and the content type they imply (docs/dsl.md §5.7: JSON or text)."""
    if body is None:
        return None, None
    if isinstance(body, bytes | bytearray):
        return bytes(body), None
    if isinstance(body, str):
        return body.encode("utf-8"), "text/plain; charset=utf-8"
    try:
        text = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise NodeError("invalid_param", f"the body cannot be sent as JSON: {error}") from None
    return text.encode("utf-8"), "application/json"


def _redirect_target(current: httpx.URL, location: str, status: int) -> httpx.URL:
    try:
        target = current.join(location.strip())
    except (httpx.InvalidURL, UnicodeError, ValueError):
        raise NodeError("http_status", f"the server redirected ({status}) to an invalid "
                        f"location", details={"status": status, "body": ""}) from None
    if target.scheme not in ("http", "https"):
        raise BlockedAddress(target.host or f"{target.scheme}:",
                             f"a redirect to a {target.scheme}: URL (only http:// and "
                             f"https:// redirects are followed)")
    try:
        return parse_url(str(target), "redirect location")
    except ValueError as error:
        raise NodeError("http_status", f"the server redirected ({status}) to an unusable "
                        f"location: {error}", details={"status": status, "body": ""}) from None


def _redirected(method: str, content: bytes | None, headers: list[tuple[bytes, bytes]],
                source: httpx.URL, target: httpx.URL, status: int,
                ) -> tuple[str, bytes | None, list[tuple[bytes, bytes]]]:
    """The next hop's method, body and headers (the rules browsers and httpx follow)."""
    drop: set[str] = set()
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, content = "GET", None
        drop |= _BODY_HEADERS
    if (source.scheme, source.raw_host, source.port) != (target.scheme, target.raw_host,
                                                          target.port):
        drop |= _CREDENTIAL_HEADERS
    if drop:
        headers = [(k, v) for k, v in headers if k.decode("ascii").lower() not in drop]
    return method, content, headers


def _too_large(limit: int) -> NodeError:
    return NodeError("too_large", f"the response is larger than {limit // (1024 * 1024)} MiB"
                     if limit % (1024 * 1024) == 0 else
                     f"the response is larger than {limit} bytes",
                     details={"limit_bytes": limit})


def _describe(error: httpx.RequestError, url: httpx.URL) -> str:
    where = f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port else "")
    kind = {httpx.ConnectError: "cannot connect to", httpx.ReadError: "connection lost with",
            httpx.WriteError: "connection lost with",
            httpx.RemoteProtocolError: "invalid HTTP answer from",
            httpx.DecodingError: "cannot decode the answer of"}.get(type(error),
                                                                   "request failed to")
    detail = str(error) or type(error).__name__
    return f"{kind} {where}: {detail}"


__all__ = ["MAX_REDIRECTS", "MAX_RESPONSE_BYTES", "GuardedHttpClient"]
