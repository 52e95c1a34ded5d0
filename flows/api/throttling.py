"""One request budget per user, whichever of their tokens (or session) is used."""

from __future__ import annotations

from django.conf import settings
from rest_framework import throttling


class UserRateThrottle(throttling.UserRateThrottle):
    """Keyed by user id (by address for anonymous requests) at settings.API_RATE, read on
    every request so that a change of setting applies at once."""

    def get_rate(self) -> str:
        return settings.API_RATE
