"""Re-encrypt every secret and webhook signing key under the first key of SECRETS_KEY."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from flows.encryption import Undecryptable
from flows.services import secrets


class Command(BaseCommand):
    help = ("Re-encrypt every stored secret and webhook signing key with the first key of "
            "SECRETS_KEY. Put the new key first, run this, then remove the old keys.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            count = secrets.rotate_all()
        except Undecryptable as error:
            raise CommandError(f"{error}: keep every key that wrote a value in SECRETS_KEY "
                               "until this command has run") from error
        self.stdout.write(f"re-encrypted {count} value(s) with the first key of SECRETS_KEY")
