"""/metrics: this process's metrics in Prometheus's text format, for staff only.

A DRF view like the rest of the API, so the same authentication serves it (a staff user's
session, or a key as `Token <key>` or `Bearer <key>`: Prometheus sends a `bearer_token` as
Bearer) and refusals take the API's error shape: 401 without credentials or with a bad key,
403 for anyone not staff.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse
from django.utils.cache import add_never_cache_headers
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAdminUser
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from tracing import metrics


class PrometheusTextRenderer(BaseRenderer):
    """Lets a scraper that accepts only text/plain through content negotiation; a refusal
    is still written as the API's JSON error body."""

    media_type = "text/plain"
    format = "txt"

    def render(self, data: Any, accepted_media_type: str | None = None,
               renderer_context: Any = None) -> bytes:
        return data if isinstance(data, bytes) else json.dumps(data).encode()


class MetricsView(APIView):
    permission_classes = [IsAdminUser]
    renderer_classes = [JSONRenderer, PrometheusTextRenderer]
    throttle_classes: list[Any] = []  # a scraper every few seconds is not a user's burst

    @extend_schema(exclude=True)
    def get(self, request: Request) -> HttpResponse:
        response = HttpResponse(metrics.metrics_text(), content_type=metrics.CONTENT_TYPE)
        add_never_cache_headers(response)
        return response
