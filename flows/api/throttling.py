"""One request budget per user, whichever of their tokens (or session) is used."""

from __future__ import annotations

from django.conf import settings
from rest_framework import throttling

from flows.cache import SHARED_ERRORS, redis_breaker


class UserRateThrottle(throttling.UserRateThrottle):
    """Keyed by user id (by address for anonymous requests) at settings.API_RATE, read on
    every request so that a change of setting applies at once.

    The counts live in the default cache: when that is Redis and Redis is down, requests are
    let through (and Redis is left alone for a few seconds) rather than all failing.
    """

    def get_rate(self) -> str:
        return settings.API_RATE

    def allow_request(self, request, view) -> bool:
        if not redis_breaker.allow():
            return True
        try:
            allowed = super().allow_request(request, view)
        except SHARED_ERRORS as error:
            redis_breaker.failed(error, "counting requests for the rate limit")
            return True
        redis_breaker.succeeded()
        return allowed
