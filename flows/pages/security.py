"""A Content-Security-Policy for the browser pages: their scripts and styles come from this
server only (flows/static/), so an injected `<script>` or a script from elsewhere does not
run. The run page's JSON state travels in `<script type="application/json">`, which a policy
does not execute anyway. Inline style attributes stay allowed: the graph sets them."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data:",
    "connect-src 'self'",  # the run's websocket, same origin
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


class ContentSecurityPolicyMiddleware:
    """Adds POLICY to the responses of the pages (URL namespace `pages`); the admin, the
    API and its documentation keep their own ways."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        if match is not None and match.namespace == "pages":
            response.setdefault("Content-Security-Policy", POLICY)
        return response
