"""Authenticated encryption of what the platform must be able to read back but never store in
the clear: secrets' values and webhooks' signing keys (docs/secrets.md).

`cryptography`'s Fernet (AES-128-CBC with HMAC-SHA256, a timestamp and a version byte) does
the work; MultiFernet rotates: the first key of `SECRETS_KEY` encrypts, every key decrypts,
and `rotate` re-encrypts a token under the first. Each key of `SECRETS_KEY` is a text of at
least 32 characters: HKDF-SHA256 derives the 32 bytes Fernet wants from it, so an operator
may use any long random text (`openssl rand -base64 32`) rather than Fernet's own format.
"""

from __future__ import annotations

import base64
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

INFO = b"astron secrets store v1"


class Undecryptable(Exception):
    """A token no key of SECRETS_KEY opens: the key that wrote it was removed, or the row was
    altered (Fernet authenticates, so tampering is detected rather than decrypted)."""


def _fernet(key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=INFO).derive(key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


@cache
def _box(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([_fernet(key) for key in keys])


def box() -> MultiFernet:
    return _box(tuple(settings.SECRETS_KEYS))


def encrypt(value: str) -> str:
    return box().encrypt(value.encode()).decode("ascii")


def decrypt(token: str) -> str:
    try:
        return box().decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeError) as error:
        raise Undecryptable("no key of SECRETS_KEY opens this value") from error


def rotate(token: str) -> str:
    """The same value encrypted under the first key (a no-op for the reader)."""
    try:
        return box().rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken as error:
        raise Undecryptable("no key of SECRETS_KEY opens this value") from error
