"""Serve with several processes on one address (flows/serving.py): one GIL each."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from flows.serving import serve


class Command(BaseCommand):
    help = ("Serve HTTP and websockets with N daphne processes sharing one socket; each "
            "executes the runs it starts and takes over those of a process that died.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--processes", type=int, default=2,
                            help="serving processes (default 2; one per core is a good start)")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args: Any, processes: int, host: str, port: int, **options: Any) -> None:
        if processes < 1:
            raise CommandError("--processes must be at least 1")
        if processes > 1 and settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
            raise CommandError("several processes need PostgreSQL: set DATABASE_URL "
                               "(SQLite serves one process: bin/dev up)")
        if processes > 1 and not getattr(settings, "REDIS_URL", None):
            raise CommandError("several processes need Redis for the cache and the channel "
                               "layer they share: set REDIS_URL")
        try:
            serve(host, port, processes, say=lambda line: self.stdout.write(line))
        except OSError as error:
            raise CommandError(f"cannot listen on {host}:{port}: {error}") from None
