"""Other processes on the test database: the commands, workers and servers tests start."""

from __future__ import annotations

import os

from django.conf import settings
from django.db import connection


def test_database_url() -> str:
    """The URL of the database this test uses (the test database, not the configured one).
    Read it in the test's own thread: it comes from that thread's connection."""
    database = connection.settings_dict
    if database["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{database['NAME']}"
    user = database.get("USER") or "postgres"
    password = f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
    host = database.get("HOST") or "127.0.0.1"
    return (f"postgres://{user}{password}@{host}:{database.get('PORT') or 5432}/"
            f"{database['NAME']}")


def environment_for_another_process(**extra: str) -> dict[str, str]:
    """This process's environment, pointed at the test database with the same SECRET_KEY and
    SECRETS_KEY, plus `extra` variables."""
    return {**os.environ, "DATABASE_URL": test_database_url(),
            "SECRET_KEY": settings.SECRET_KEY, "SECRETS_KEY": ",".join(settings.SECRETS_KEYS),
            **extra}


# `python -c EXECUTE_ONE_RUN <run id>`: another process executes that run (and nothing else)
# with this project's executor, as a second serving process or a worker would.
EXECUTE_ONE_RUN = """
import os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "astron.settings")
import django
django.setup()
from flows.execution.executor import executor
executor.maintenance = False
executor.submit(sys.argv[1])
executor.wait(sys.argv[1], 60)
executor.stop()
"""
