"""Health probes answered before anything else looks at the request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
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

    sync_capable = async_capable = True  # so that an async view holds no thread

    def __init__(self, get_response: Callable[[HttpRequest], Any]):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if iscoroutinefunction(self):
            return self._acall(request)
        probe = PROBES.get(request.path_info)
        if probe is None:
            return self.get_response(request)
        return self._answer(probe, request)

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        probe = PROBES.get(request.path_info)
        if probe is None:
            return await self.get_response(request)
        return await sync_to_async(self._answer)(probe, request)

    @staticmethod
    def _answer(probe: Callable[[HttpRequest], HttpResponse],
                request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD"):
            body = error_body("method_not_allowed", f"{request.path_info} answers GET and HEAD")
            return JsonResponse(body, status=405, headers={"Allow": "GET, HEAD"})
        return probe(request)
