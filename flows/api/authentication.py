"""API keys: `Authorization: Token <key>` (DRF's convention) or `Bearer <key>`."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from flows import services

KEYWORDS = (b"token", b"bearer")


class TokenAuthentication(authentication.BaseAuthentication):
    """Checks a key with `services.user_for_key` (hashed, expiring, revocable keys).

    Its `authenticate_header` makes DRF answer 401 rather than 403 to missing credentials.
    """

    def authenticate(self, request):
        words = authentication.get_authorization_header(request).split()
        if not words or words[0].lower() not in KEYWORDS:
            return None
        if len(words) != 2:
            raise exceptions.AuthenticationFailed(
                "the Authorization header must be `Token <key>` or `Bearer <key>`")
        try:
            key = words[1].decode("ascii")
        except UnicodeDecodeError:
            key = None
        found = services.user_for_key(key) if key else None
        if found is None:
            raise exceptions.AuthenticationFailed("the key is unknown, expired or revoked")
        return found

    def authenticate_header(self, request) -> str:
        return 'Token realm="api"'


class TokenScheme(OpenApiAuthenticationExtension):
    target_class = TokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`Token <key>` or `Bearer <key>`"}
