"""Refuse API request bodies over the limit before anything reads them (api.md: 413)."""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse

from flows.api.exceptions import too_large_body


class BodyLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info.startswith("/api/"):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if limit is not None and length > limit:
                return JsonResponse(too_large_body(limit), status=413)
        return self.get_response(request)
