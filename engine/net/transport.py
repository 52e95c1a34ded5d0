"""An httpx transport over a pooled httpcore connection pool with the guarded backend.

This is httpx's own `AsyncHTTPTransport` reduced to what the `http` node needs, with one
difference: the pools' network backend is `GuardedNetworkBackend`, which httpx's transport
does not let callers choose (httpcore's `AsyncConnectionPool(network_backend=...)` does). No proxy is ever used (environment proxies would bypass the
address checks). httpcore exceptions are mapped to httpx's, as httpx does; `BlockedAddress`
passes through unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import typing
from collections.abc import AsyncIterator, Iterator

import httpcore
import httpx

from engine.net.backend import GuardedNetworkBackend
from engine.net.policy import AddressPolicy
from engine.net.resolve import Resolver

# Most specific first: the first match wins.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _mapped_errors() -> Iterator[None]:
    try:
        yield
    except httpcore.TimeoutException as error:
        raise _map(error) from error
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as error:
        raise _map(error) from error


def _map(error: Exception) -> httpx.TransportError:
    for source, target in _ERRORS:
        if isinstance(error, source):
            return target(str(error))
    return httpx.TransportError(str(error))


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: typing.AsyncIterable[bytes], lane: _Lane):
        self._stream = stream
        self._lane: _Lane | None = lane

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _mapped_errors():
            async for part in self._stream:
                yield part

    async def aclose(self) -> None:
        try:
            close = getattr(self._stream, "aclose", None)
            if close is not None:
                with _mapped_errors():
                    await close()
        finally:
            if self._lane is not None:
                self._lane.active -= 1
                self._lane = None


class _Lane:
    """One small httpcore pool and the number of requests it is serving."""

    __slots__ = ("active", "pool")

    def __init__(self, pool: httpcore.AsyncConnectionPool):
        self.pool = pool
        self.active = 0


class _Lanes:
    """Connection pools side by side, each with a few connections.

    httpcore's pool re-examines every connection it holds, for every connection, each time a
    request arrives or a response ends (O(n²) in its connections, plus a socket poll for each
    idle one), so one pool of hundreds of connections spends most of its time there: 50
    parallel requests over one pool took longer than with a new connection each. A request
    goes to the lane serving the fewest requests (the first one on ties, so light traffic
    stays in the first lane and keeps reusing its connections); a lane is added when every
    lane is full, up to the connection limit.
    """

    def __init__(self, make_pool: typing.Callable[[], httpcore.AsyncConnectionPool],
                 lane_size: int, max_lanes: int):
        self.make_pool = make_pool
        self.lane_size = lane_size
        self.max_lanes = max_lanes
        self.lanes: list[_Lane] = []

    def pick(self) -> _Lane:
        best = None
        for lane in self.lanes:
            if best is None or lane.active < best.active:
                best = lane
                if lane.active == 0:
                    break
        if best is None or (best.active >= self.lane_size and len(self.lanes) < self.max_lanes):
            best = _Lane(self.make_pool())
            self.lanes.append(best)
        return best

    async def aclose(self) -> None:
        for lane in self.lanes:
            await lane.pool.aclose()


class GuardedTransport(httpx.AsyncBaseTransport):
    """Keep-alive connection pools over one guarded backend, for http and for https.

    Connections are spread over small pools ("lanes", see `_Lanes`): at most
    `max_connections` in all, `lane_size` per lane, an idle connection kept for
    `keepalive_expiry` seconds. The https lanes are made on the first https request, with
    the given SSL context or a new default one (certifi's roots) built in a worker thread:
    loading the roots takes tens of milliseconds the event loop should not spend, and a
    client that never speaks TLS never pays them.
    """

    def __init__(self, policy: AddressPolicy, *, resolver: Resolver | None = None,
                 ssl_context: ssl.SSLContext | None = None,
                 network_backend: httpcore.AsyncNetworkBackend | None = None,
                 max_connections: int = 256, lane_size: int = 4,
                 keepalive_expiry: float = 15.0):
        self.backend = GuardedNetworkBackend(policy, resolver, network_backend)
        self._ssl_context = ssl_context
        self._keepalive_expiry = keepalive_expiry
        self._lane_size = lane_size = max(1, min(lane_size, max_connections))
        max_lanes = max(1, max_connections // lane_size)
        self._http = _Lanes(lambda: self._pool(None), lane_size, max_lanes)
        self._https: _Lanes | None = None
        self._max_lanes = max_lanes
        self._https_lock = asyncio.Lock()

    def _pool(self, ssl_context: ssl.SSLContext | None) -> httpcore.AsyncConnectionPool:
        return httpcore.AsyncConnectionPool(
            ssl_context=ssl_context, max_connections=self._lane_size,
            max_keepalive_connections=self._lane_size, keepalive_expiry=self._keepalive_expiry,
            http1=True, http2=False, retries=0, network_backend=self.backend)

    async def _https_lanes(self) -> _Lanes:
        if self._https is None:
            async with self._https_lock:
                if self._https is None:
                    context = self._ssl_context
                    if context is None:
                        context = await asyncio.to_thread(httpx.create_ssl_context)
                    self._https = _Lanes(lambda: self._pool(context), self._lane_size,
                                         self._max_lanes)
        return self._https

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        scheme = request.url.raw_scheme
        if scheme == b"http":
            lanes = self._http
        elif scheme == b"https":
            lanes = await self._https_lanes()
        else:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {request.url.scheme!r}")
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=scheme, host=request.url.raw_host,
                             port=request.url.port, target=request.url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        lane = lanes.pick()
        lane.active += 1
        try:
            with _mapped_errors():
                response = await lane.pool.handle_async_request(core_request)
        except BaseException:
            lane.active -= 1
            raise
        assert isinstance(response.stream, typing.AsyncIterable)
        return httpx.Response(status_code=response.status, headers=response.headers,
                              stream=_ResponseStream(response.stream, lane),
                              extensions=response.extensions)

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._https is not None:
            await self._https.aclose()
