"""An httpcore network backend that connects only to addresses the policy checked.

httpcore asks its network backend to `connect_tcp(host, port)` for every new connection,
with the URL's host name. This backend resolves that name once, refuses the connection when
any resolved address is blocked (unless the host is allowed), then opens the socket to the
checked IP itself: nothing resolves the name again between the check and the connect, so
DNS rebinding has no window. TLS is started afterwards by httpcore on the stream returned
here with `server_hostname` set to the URL's host name, so SNI and certificate verification
use the original name, and the Host header comes from the URL, untouched.
"""

from __future__ import annotations

import asyncio
import typing

import httpcore

from engine.net.policy import AddressPolicy
from engine.net.resolve import ResolutionError, Resolver, system_resolve


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, policy: AddressPolicy, resolver: Resolver | None = None,
                 inner: httpcore.AsyncNetworkBackend | None = None):
        self.policy = policy
        self.resolver = resolver or system_resolve
        # The backend that opens sockets; given only IP addresses.
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            async with asyncio.timeout(timeout):
                addresses = await self.resolver(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(f"resolving {host} took too long") from None
        except ResolutionError as error:
            raise httpcore.ConnectError(str(error)) from None
        # Raises BlockedAddress, which httpcore and the transport pass through unchanged.
        self.policy.check(host, addresses)
        last_error: Exception | None = None
        for address in addresses:
            remaining = None if deadline is None else max(deadline - loop.time(), 0.0)
            if remaining == 0.0:
                raise httpcore.ConnectTimeout(f"connecting to {host} took too long")
            try:
                return await self.inner.connect_tcp(address, port, timeout=remaining,
                                                    local_address=local_address,
                                                    socket_options=socket_options)
            except httpcore.ConnectError as error:
                last_error = error  # try the host's next address, like socket.create_connection
        assert last_error is not None
        raise last_error

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: typing.Iterable[httpcore.SOCKET_OPTION]
                                  | None = None) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not allowed")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
