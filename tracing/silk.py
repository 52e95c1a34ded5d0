"""Settings of django-silk (request and query profiling) when SILK is on.

Silk records a sample of requests (SILK_INTERCEPT_PERCENT) with their SQL queries into its
own tables, and shows them at /silk/ to staff only. Bodies are capped so that a large flow
document or run output does not fill the database, credentials are masked, and the Python
profiler stays off (it would slow every sampled request several times over).
"""

from __future__ import annotations

import random
from typing import Any

from django.conf import settings

MIDDLEWARE = "silk.middleware.SilkyMiddleware"
BODY_LIMIT = 1024  # bytes of request and response bodies kept per recorded request


def staff_only(user: Any) -> bool:
    return bool(user is not None and user.is_active and user.is_staff)


def recordable(request: Any) -> bool:
    """Whether silk records this request: a sample of SILK_INTERCEPT_PERCENT, and never one
    with a NUL character in its path or body. Silk stores both as text, which PostgreSQL
    refuses with a NUL in it: the request would answer 500 instead of its own 400 or 404."""
    if random.random() * 100 >= settings.SILKY_INTERCEPT_PERCENT:
        return False
    if "\x00" in request.path:
        return False
    try:
        return b"\x00" not in request.body
    except Exception:  # a body too large to read: the request is refused without silk
        return False


def silk_settings(installed_apps: list[str], middleware: list[str],
                  intercept_percent: int) -> dict[str, Any]:
    """The settings to add to astron/settings.py's when SILK is on."""
    # After authentication, so that recorded requests know their user; anything before it
    # that answers by itself (413 for a huge body) is not recorded.
    position = middleware.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1
    return {
        "INSTALLED_APPS": [*installed_apps, "silk"],
        "MIDDLEWARE": [*middleware[:position], MIDDLEWARE, *middleware[position:]],
        "SILKY_INTERCEPT_PERCENT": intercept_percent,
        "SILKY_INTERCEPT_FUNC": recordable,  # samples by the percentage itself
        "SILKY_AUTHENTICATION": True,  # /silk/ needs a login…
        "SILKY_AUTHORISATION": True,  # …of a staff user
        "SILKY_PERMISSIONS": staff_only,
        "SILKY_MAX_REQUEST_BODY_SIZE": BODY_LIMIT,
        "SILKY_MAX_RESPONSE_BODY_SIZE": BODY_LIMIT,
        "SILKY_PYTHON_PROFILER": False,
        "SILKY_META": False,
        "SILKY_MAX_RECORDED_REQUESTS": 10_000,
        "SILKY_IGNORE_PATHS": ["/healthz", "/readyz", "/metrics", "/favicon.ico"],
        # Silk masks these in bodies and headers (Authorization and cookies always).
        "SILKY_SENSITIVE_KEYS": {"username", "api", "token", "key", "secret", "password",
                                 "signature", "authorization", "cookie", "session", "csrf"},
        # Silk's views ask for a login through Django's login_required: the admin's page.
        "LOGIN_URL": "admin:login",
    }
