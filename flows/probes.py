"""Health probes answered before anything else looks at the request."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from flows import views
from flows.errors import error_body

PROBES: dict[str, Callable[[HttpRequest], HttpResponse]] = {
    "/healthz": views.healthz, "/readyz": views.readyz}


class ProbeMiddleware:
    """`/healthz` and `/readyz` whatever the Host header: an orchestrator probes a process by
    its address (`Host: 10.1.2.3:8000`), which ALLOWED_HOSTS rightly does not list, and the
    host check would answer 400 and have a live process restarted. The views read nothing
    that depends on the host."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path_info)
        if probe is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            body = error_body("method_not_allowed", f"{request.path_info} answers GET and HEAD")
            return JsonResponse(body, status=405, headers={"Allow": "GET, HEAD"})
        return probe(request)
