"""Refuse API request bodies over the limit before anything reads them (docs/api.md: 413)."""

from __future__ import annotations

import io

from django.conf import settings
from django.core.handlers.wsgi import WSGIRequest
from django.http import JsonResponse
from django.middleware import common as django_common

from flows.api.exceptions import too_large_body

CHUNK = 64 * 1024


API_PATHS = ("/api/", "/hooks/")  # the API, and webhook deliveries (signed, not logged in)


class BodyLimitMiddleware:
    """A body with a Content-Length over the limit is refused unread. A body without one
    (`Transfer-Encoding: chunked`) is read here up to the limit: over it, it is refused;
    within it, it is given its length, since Django and DRF read no body without one."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path_info.startswith(API_PATHS):
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            if not request.META.get("CONTENT_LENGTH"):
                if not read_unsized_body(request, limit):
                    return JsonResponse(too_large_body(limit), status=413)
            else:
                try:
                    length = int(request.META["CONTENT_LENGTH"])
                except ValueError:
                    length = 0
                if limit is not None and length > limit:
                    return JsonResponse(too_large_body(limit), status=413)
        return self.get_response(request)


def read_unsized_body(request, limit: int | None) -> bool:
    """Read the body of a request without a Content-Length, at most `limit` bytes and one
    more, and make it the request's body with its length; False when it is over `limit`."""
    if isinstance(request, WSGIRequest):
        # A WSGI server passes an unsized body only when its input ends by itself (PEP 3333:
        # reading past the end otherwise may wait for the client).
        if not request.META.get("wsgi.input_terminated"):
            return True
        stream = request.META["wsgi.input"]
    else:
        stream = request  # ASGI: Django read the whole body into a temporary file first
    chunks, size = [], 0
    while limit is None or size <= limit:
        chunk = stream.read(CHUNK if limit is None else min(CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if limit is not None and size > limit:
        return False
    body = b"".join(chunks)
    # As if the client had sent it with its length: what reads it next finds it unread.
    request._stream = io.BytesIO(body)
    request._read_started = False
    request.META["CONTENT_LENGTH"] = str(len(body))
    return True


class CommonMiddleware(django_common.CommonMiddleware):
    """Django's, without the trailing-slash redirect for API writes: a 301 turns a client's
    POST into a GET with an empty body (and with DEBUG, Django raises instead). Such a request
    without its slash is a 404 in the error shape that names the right path; a GET is still
    redirected."""

    def should_redirect_with_slash(self, request) -> bool:
        if request.path_info.startswith(API_PATHS) and request.method not in ("GET", "HEAD"):
            return False
        return super().should_redirect_with_slash(request)
