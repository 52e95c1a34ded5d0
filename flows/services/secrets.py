"""An owner's secrets: stored encrypted, never shown, read only by the runs that name them
(docs/secrets.md)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from flows import audit, encryption
from flows.errors import ServiceError
from flows.models import Secret
from flows.queries import one_or_none

logger = logging.getLogger(__name__)

NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,63}$")
MAX_VALUE_BYTES = 64 * 1024
MAX_DESCRIPTION = 500
# last_used_at is written at most this often per secret, not on every run.
LAST_USED_PRECISION = timedelta(minutes=1)


def secrets_of(owner: Any) -> QuerySet[Secret]:
    return Secret.objects.filter(owner=owner).order_by("name")


def secret_of(owner: Any, name: Any) -> Secret:
    secret = one_or_none(Secret.objects.filter(owner=owner, name=name)) \
        if isinstance(name, str) else None
    if secret is None:
        raise ServiceError(404, "not_found", "there is no such secret")
    return secret


def create_secret(owner: Any, name: Any, value: Any, description: Any = "") -> Secret:
    """A new secret; 400 invalid_value for a bad name or value, 409 name_taken."""
    if not isinstance(name, str) or not NAME.match(name):
        raise ServiceError(400, "invalid_value",
                           "a secret's name is capitals, digits and _, starting with a capital, "
                           "at most 64 characters (like OPENAI_KEY)",
                           [{"path": "/name", "code": "invalid_value",
                             "message": "must match ^[A-Z][A-Z0-9_]{0,63}$"}])
    ciphertext = encryption.encrypt(_checked_value(value))
    description = _checked_description(description)
    try:
        with transaction.atomic():
            secret = Secret.objects.create(owner=owner, name=name, description=description,
                                           ciphertext=ciphertext)
            audit.record(owner, "secret.created", "secret", name)  # never the value
            return secret
    except IntegrityError:
        raise ServiceError(409, "name_taken", f'you already have a secret "{name}"') from None


def update_secret(secret: Secret, value: Any, description: Any = None) -> Secret:
    """A new value: runs started from now on use it."""
    secret.ciphertext = encryption.encrypt(_checked_value(value))
    fields = ["ciphertext", "updated_at"]
    if description is not None:
        secret.description = _checked_description(description)
        fields.append("description")
    with transaction.atomic():
        secret.save(update_fields=fields)
        audit.record(secret.owner_id, "secret.updated", "secret", secret.name)
    return secret


def delete_secret(secret: Secret) -> None:
    with transaction.atomic():
        secret.delete()
        audit.record(secret.owner_id, "secret.deleted", "secret", secret.name)


def check_present(owner_id: Any, names: Iterable[str]) -> None:
    """Refuse a run that names secrets its owner does not have (409 missing_secret)."""
    wanted = set(names)
    if not wanted:
        return
    present = set(Secret.objects.filter(owner_id=owner_id, name__in=wanted)
                  .values_list("name", flat=True))
    missing = sorted(wanted - present)
    if missing:
        raise ServiceError(
            409, "missing_secret",
            f"the flow uses secrets you do not have: {', '.join(missing)}",
            [{"secret": name, "message": f'create the secret "{name}" first'}
             for name in missing])


def values_for(owner_id: Any, names: Iterable[str]) -> dict[str, str]:
    """The values of the owner's secrets among `names` (those that exist), for a run about
    to execute; each one's last use is noted."""
    wanted = set(names)
    if not wanted:
        return {}
    rows = list(Secret.objects.filter(owner_id=owner_id, name__in=wanted)
                .values_list("pk", "name", "ciphertext", "last_used_at"))
    now = timezone.now()
    stale = [pk for pk, _name, _text, used in rows
             if used is None or now - used > LAST_USED_PRECISION]
    if stale:
        Secret.objects.filter(pk__in=stale).update(last_used_at=now)
    values = {}
    for _pk, name, text, _used in rows:
        try:
            values[name] = encryption.decrypt(text)
        except encryption.Undecryptable:
            # The run's node then fails with missing_secret; the operator is told why.
            logger.error("the secret %s of user %s cannot be decrypted with SECRETS_KEY (was "
                         "the key that wrote it removed?)", name, owner_id)
    return values


def rotate_all() -> int:
    """Re-encrypt every secret and webhook key under the first key of SECRETS_KEY; the count.

    Run after putting a new key first: the old ones can then be removed."""
    from flows.models import Webhook

    count = 0
    for model, field in ((Secret, "ciphertext"), (Webhook, "signing_ciphertext")):
        for pk, text in model.objects.values_list("pk", field).iterator():
            with transaction.atomic():
                model.objects.filter(pk=pk, **{field: text}).update(
                    **{field: encryption.rotate(text)})
            count += 1
    return count


def _checked_value(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ServiceError(400, "invalid_value", "a secret's value is a non-empty string",
                           [{"path": "/value", "code": "invalid_value",
                             "message": "must be a non-empty string"}])
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise ServiceError(400, "invalid_value", "a secret's value may have at most 64 KiB",
                           [{"path": "/value", "code": "too_large",
                             "message": "at most 65,536 bytes"}])
    return value


def _checked_description(description: Any) -> str:
    if description is None:
        return ""
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise ServiceError(400, "invalid_value",
                           f"a description is a string of at most {MAX_DESCRIPTION} characters",
                           [{"path": "/description", "code": "invalid_value",
                             "message": f"at most {MAX_DESCRIPTION} characters"}])
    return description
