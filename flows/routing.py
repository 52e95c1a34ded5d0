"""Websocket routes and who may open them (docs/api.md, "Live events over a websocket").

A connection that sends an `Origin` header is a browser's: its origin's host must be one of
`ALLOWED_HOSTS` (ports ignored, Django's host patterns: `.example.com`, `*`), else the
handshake is refused (403; `websocket.close` code 4403 before accept) — a page on another
site cannot ride its visitor's session. A connection without `Origin` is an integration:
its cookies are dropped and no session is read, so only the token frame authenticates it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.auth import AuthMiddlewareStack
from channels.routing import URLRouter
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import validate_host
from django.urls import re_path

from flows.consumers import RunConsumer

CLOSE_FORBIDDEN_ORIGIN = 4403

CLOSE_NOT_FOUND = 4404


async def no_such_socket(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Any other websocket path: refused with 4404, not an error of the application."""
    await receive()  # websocket.connect
    await send({"type": "websocket.close", "code": CLOSE_NOT_FOUND})


websocket_urlpatterns = [
    # Any id reaches the consumer, which answers a malformed one like an unknown one (4404);
    # the final slash may be left out, as clients often do.
    re_path(r"^ws/runs/(?P<run_id>[^/]+)/?$", RunConsumer.as_asgi()),
    re_path(r"", no_such_socket),
]


def origin_host(scope: dict[str, Any]) -> str | None:
    """The host of the Origin header, "" when the header is there but has no host (e.g.
    `null`), None when there is no Origin header."""
    for name, value in scope.get("headers", []):
        if name == b"origin":
            try:
                return urlsplit(value.decode("latin-1").strip()).hostname or ""
            except ValueError:
                return ""
    return None


def host_allowed(host: str) -> bool:
    """Whether a browser page on `host` may open a socket: Django's own host check."""
    if not host:
        return False
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:  # as HttpRequest.get_host() does
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return validate_host(f"[{host}]" if ":" in host else host, allowed)


class OriginCheck:
    """Browsers from allowed hosts go on to session authentication; integrations go on
    anonymous, without their cookies (and without a session lookup)."""

    def __init__(self, browsers: Any, integrations: Any):
        self.browsers = browsers
        self.integrations = integrations

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        host = origin_host(scope)
        if host is None:
            scope = dict(scope, user=AnonymousUser(), headers=[
                (name, value) for name, value in scope["headers"] if name != b"cookie"])
            return await self.integrations(scope, receive, send)
        if not host_allowed(host):
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": CLOSE_FORBIDDEN_ORIGIN})
            return None
        return await self.browsers(scope, receive, send)


_routes = URLRouter(websocket_urlpatterns)
websocket_application = OriginCheck(browsers=AuthMiddlewareStack(_routes), integrations=_routes)
