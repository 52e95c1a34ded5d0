"""API tokens: created with the key shown once, stored as a hash, revoked, checked."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from flows import audit
from flows.models import ApiToken
from flows.queries import one_or_none

KEY_PREFIX = "ast_"
# last_used_at is written at most this often per token, not on every request.
LAST_USED_PRECISION = timedelta(minutes=1)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_token(user: Any, name: str, expires_days: int | None = None) -> tuple[ApiToken, str]:
    """A new token and its key; the key is not stored and cannot be shown again."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
    with transaction.atomic():
        token = ApiToken.objects.create(user=user, name=name, key_hash=hash_key(key),
                                        prefix=key[:len(KEY_PREFIX) + 6], expires_at=expires_at)
        audit.record(user, "token.created", "token", token.pk,
                     details={"name": name, "prefix": token.prefix,
                              "expires_at": expires_at.isoformat() if expires_at else None})
    return token, key


def revoke_token(token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        with transaction.atomic():
            token.save(update_fields=["revoked_at"])
            audit.record(token.user_id, "token.revoked", "token", token.pk,
                         details={"name": token.name, "prefix": token.prefix})


def user_for_key(key: str) -> tuple[Any, ApiToken] | None:
    """The active user and token for a key, or None when unknown, revoked or expired."""
    token = one_or_none(ApiToken.objects.select_related("user").filter(key_hash=hash_key(key)))
    now = timezone.now()
    if token is None or token.revoked_at is not None or not token.user.is_active:
        return None
    if token.expires_at is not None and token.expires_at <= now:
        return None
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_PRECISION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token.user, token
