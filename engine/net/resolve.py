"""Asynchronous name resolution for the guarded client.

A resolver turns a host and port into the IP addresses to connect to, in the order to try
them. The default asks the system resolver through `loop.getaddrinfo` (a worker thread, so
the event loop never blocks); tests inject their own to give names fixed addresses.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from engine.net.policy import literal_ip

Resolver = Callable[[str, int], Awaitable[list[str]]]


class ResolutionError(OSError):
    """The name has no address (or the resolver failed)."""


async def system_resolve(host: str, port: int) -> list[str]:
    """Every TCP address of `host`, de-duplicated, in the resolver's order."""
    literal = literal_ip(host)
    if literal is not None:
        return [literal.compressed]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                       proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as error:
        raise ResolutionError(f"cannot resolve {host}: {error}") from None
    addresses: list[str] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = str(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise ResolutionError(f"cannot resolve {host}: no IPv4 or IPv6 address")
    return addresses
