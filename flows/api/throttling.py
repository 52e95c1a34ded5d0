"""One request budget per user, whichever of their tokens (or session) is used."""

from __future__ import annotations

from django.conf import settings
from rest_framework import throttling

from flows.cache import SHARED_ERRORS, redis_breaker


class UserRateThrottle(throttling.UserRateThrottle):
    """Keyed by user id (by address for anonymous requests) at settings.API_RATE, read on
    every request so that a change of setting applies at once.

    One counter per user and window of the rate's duration, incremented atomically in the
    default cache (Redis INCR; a lock in local memory). DRF's own throttle reads a history,
    appends and writes it back, so parallel requests overwrote each other's entries and went
    over the limit (2,000 in 46 s against 1,200 a minute). A fixed window lets at most twice
    the rate through across a window's edge, never more.

    When the cache is Redis and Redis is down, requests are let through (and Redis is left
    alone for a few seconds) rather than all failing.
    """

    def get_rate(self) -> str:
        return settings.API_RATE

    def allow_request(self, request, view) -> bool:
        if not redis_breaker.allow():
            return True
        try:
            allowed = self._count(request, view)
        except SHARED_ERRORS as error:
            redis_breaker.failed(error, "counting requests for the rate limit")
            return True
        redis_breaker.succeeded()
        return allowed

    def _count(self, request, view) -> bool:
        self.key = self.get_cache_key(request, view)
        if self.rate is None or self.key is None:
            return True
        now = self.timer()
        window = int(now // self.duration)
        key = f"{self.key}:{window}"
        # One round trip in the common case (the window's counter exists): the counter is
        # made only by the request that finds none, and a request that loses that race
        # counts on the one the winner made.
        try:
            count = self.cache.incr(key)
        except ValueError:
            count = 1 if self.cache.add(key, 1, self.duration + 1) else self.cache.incr(key)
        self.retry_after = (window + 1) * self.duration - now
        return count <= self.num_requests

    def wait(self) -> float:
        return self.retry_after


class WebhookRateThrottle(UserRateThrottle):
    """One budget per webhook (settings.WEBHOOK_RATE), whoever calls it: a sender stuck in a
    loop cannot use its owner's whole API budget, nor start runs without end."""

    def get_rate(self) -> str:
        return settings.WEBHOOK_RATE

    def get_cache_key(self, request, view) -> str | None:
        hook = view.kwargs.get("hook_id")
        return f"throttle_hook_{hook}" if hook else None
