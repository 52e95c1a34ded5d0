"""Create an API token for a user; the key is printed alone on the last line, once."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from flows import audit, services

MAX_DAYS = 36_500  # a hundred years: beyond, the expiry date itself overflows


def days(text: str) -> int:
    number = int(text)
    if not 1 <= number <= MAX_DAYS:
        raise ValueError(text)
    return number


days.__name__ = f"whole number of days from 1 to {MAX_DAYS}"  # argparse names a bad value so


class Command(BaseCommand):
    help = ("Create an API token for USERNAME. The key is shown once, alone on the last line "
            "of the output (scripts: `... | tail -n 1`); only its hash is stored.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", required=True, help="what the token is for")
        parser.add_argument("--expires-days", type=days, default=None,
                            help="the token stops working after this many days (default: never)")

    def handle(self, *args: Any, **options: Any) -> None:
        with audit.acting("command"):  # the audit log names this door (actor: the system)
            self._handle(*args, **options)

    def _handle(self, *args: Any, username: str, name: str, expires_days: int | None,
               **options: Any) -> None:
        name = name.strip()
        if not name:
            raise CommandError("--name must not be empty")
        if len(name) > 100:
            raise CommandError("--name is at most 100 characters")
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f'there is no user "{username}"')
        if not user.is_active:
            raise CommandError(f'the user "{username}" is inactive: its tokens would not work')
        token, key = services.create_token(user, name, expires_days=expires_days)
        expiry = f"expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at \
            else "never expires"
        self.stdout.write(f'Token "{token.name}" for {user.username} ({expiry}). Send it as '
                          "`Authorization: Token <key>`. The key is shown only now:")
        self.stdout.write(key)
