"""The process-wide guarded client, for runs whose services bring none.

It has no allow-list: the platform configures its own client from HTTP_ALLOW_HOSTS and
passes it in `Services.http`. It is created on first use; like every `GuardedHttpClient`
it keeps one set of pools per event loop it is used from (see `GuardedHttpClient`).
"""

from __future__ import annotations

from engine.net.client import GuardedHttpClient


class SharedHttpClient:
    """A lazily created client that can be closed (and is made again if used after)."""

    def __init__(self) -> None:
        self._client: GuardedHttpClient | None = None

    def get(self) -> GuardedHttpClient:
        if self._client is None or self._client.closed:
            self._client = GuardedHttpClient()
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


_shared = SharedHttpClient()


def shared_http_client() -> GuardedHttpClient:
    """The process-wide guarded client (no allow-list)."""
    return _shared.get()


async def close_shared_http_client() -> None:
    """Close the process-wide client (at shutdown, or at the end of a test)."""
    await _shared.aclose()
