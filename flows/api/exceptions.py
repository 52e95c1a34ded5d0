"""Every API error in one shape: {"error": {"code", "message", "details": [...]}} (docs/api.md).

`exception_handler` is DRF's EXCEPTION_HANDLER; the page handlers answer Django's own 400,
404 and 500 in the same shape for paths under /api/ (handler400/404/500 in astron/urls.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError as DatabaseOperationalError
from django.http import Http404, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.views import defaults
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import set_rollback

from flows.errors import ServiceError, error_body

# A database that does not answer in time (the pool had no connection free within its
# timeout, or the server refuses connections) makes a 503 the client may retry, never a 500.
OVERLOADED_BODY = error_body("overloaded", "the server is overloaded: no database connection "
                             "was free in time; try again after Retry-After seconds")
RETRY_AFTER_S = "2"

# DRF's own exceptions → the codes of docs/api.md.
CODES: list[tuple[type[exceptions.APIException], str]] = [
    (exceptions.ValidationError, "invalid_request"),
    (exceptions.ParseError, "invalid_json"),
    (exceptions.NotAuthenticated, "not_authenticated"),
    (exceptions.AuthenticationFailed, "not_authenticated"),
    (exceptions.PermissionDenied, "permission_denied"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.Throttled, "throttled"),
]

# DRF's field error codes → the codes of docs/dsl.md §7, so that one vocabulary is used.
FIELD_CODES = {"required": "missing_field", "null": "wrong_type", "invalid": "wrong_type",
               "not_a_dict": "wrong_type", "not_a_list": "wrong_type", "blank": "invalid_value",
               "max_length": "invalid_value", "min_length": "invalid_value"}


def too_large_body(limit: int) -> dict[str, Any]:
    return error_body("too_large", f"the request body is larger than {limit // 1024 // 1024} MiB")


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        set_rollback()
        return Response(exc.body(), status=exc.status)
    if isinstance(exc, RequestDataTooBig):
        from django.conf import settings

        return Response(too_large_body(settings.DATA_UPLOAD_MAX_MEMORY_SIZE), status=413)
    if isinstance(exc, DatabaseOperationalError):
        set_rollback()
        return Response(OVERLOADED_BODY, status=503, headers={"Retry-After": RETRY_AFTER_S})
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a bug: Django answers 500 (handler500 keeps the shape)
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None) is not None:
        headers["Retry-After"] = str(max(1, round(exc.wait)))
    code = next((code for kind, code in CODES if isinstance(exc, kind)), exc.default_code)
    if isinstance(exc, exceptions.ValidationError):
        details = list(flatten(exc.detail))
        message = "the request is not valid: " + "; ".join(
            f"{d['path'] or '/'}: {d['message']}" for d in details[:5])
    else:
        details, message = [], str(exc.detail)
    set_rollback()
    return Response(error_body(code, message, details), status=exc.status_code, headers=headers)


def flatten(detail: Any, path: str = "") -> Iterator[dict[str, str]]:
    """DRF's nested error detail as a list of {path, code, message}, paths as JSON Pointers
    into the request body."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            inner = path if key == api_settings.NON_FIELD_ERRORS_KEY else f"{path}/{_escape(key)}"
            yield from flatten(value, inner)
    elif isinstance(detail, list):
        for index, item in enumerate(detail):
            if isinstance(item, dict | list):
                yield from flatten(item, f"{path}/{index}")
            else:
                yield from flatten(item, path)
    else:
        code = getattr(detail, "code", None) or "invalid_value"
        yield {"path": path, "code": FIELD_CODES.get(code, code), "message": str(detail)}


def _escape(key: Any) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


# --- Django's own error pages, in the API's shape under /api/ -------------------------------


def _is_api(request) -> bool:
    from flows.api.middleware import API_PATHS

    return request.path_info.startswith(API_PATHS)


def bad_request(request, exception):
    if _is_api(request):
        return JsonResponse(error_body("bad_request", "the request cannot be served"), status=400)
    return defaults.bad_request(request, exception)


def page_not_found(request, exception=None, **kwargs):
    if _is_api(request):
        message = f"there is nothing at {request.path}"
        if not request.path.endswith("/") and _resolves(f"{request.path_info}/"):
            message += f"; the API's paths end with a slash: {request.path}/"
        return JsonResponse(error_body("not_found", message), status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    # Called inside Django's handler for the exception: a database that did not answer in
    # time (no pooled connection free, connections refused) is an overload, not a bug.
    if isinstance(sys.exc_info()[1], DatabaseOperationalError):
        response = JsonResponse(OVERLOADED_BODY, status=503) if _is_api(request) else \
            HttpResponse("The server is overloaded; try again in a moment.", status=503,
                         content_type="text/plain; charset=utf-8")
        response["Retry-After"] = RETRY_AFTER_S
        return response
    if _is_api(request):
        return JsonResponse(error_body("server_error", "the server failed to answer; the "
                                                       "error was logged"), status=500)
    return defaults.server_error(request)


def _resolves(path: str) -> bool:
    try:
        resolve(path)
    except Resolver404:
        return False
    return True
