"""Outbound HTTP for the `http` node: an address policy and a guarded, pooled client.

- `policy`: which addresses are refused, and the operator's allowed host names.
- `resolve`: asynchronous DNS resolution (`loop.getaddrinfo`), replaceable in tests.
- `backend`: an httpcore network backend that resolves, checks, then connects to the
  checked IP (no second resolution).
- `transport`: an httpx transport over keep-alive httpcore pools ("lanes") using that backend.
- `request`: checks of URLs and header names and values.
- `client`: `GuardedHttpClient`, the `HttpClient` port: redirects, size cap, timeouts.
- `shared`: the process-wide client used when a run's services bring none.

See docs/http.md.
"""

from engine.net.client import MAX_REDIRECTS, MAX_RESPONSE_BYTES, GuardedHttpClient
from engine.net.policy import (
    AddressPolicy,
    BlockedAddress,
    blocked_reason,
    normalize_host,
    parse_allow_hosts,
)
from engine.net.resolve import ResolutionError, Resolver, system_resolve
from engine.net.shared import close_shared_http_client, shared_http_client

__all__ = [
    "MAX_REDIRECTS",
    "MAX_RESPONSE_BYTES",
    "AddressPolicy",
    "BlockedAddress",
    "GuardedHttpClient",
    "ResolutionError",
    "Resolver",
    "blocked_reason",
    "close_shared_http_client",
    "normalize_host",
    "parse_allow_hosts",
    "shared_http_client",
    "system_resolve",
]
