"""The server of the browser tests: daphne serving the project against the test database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.processes import environment_for_another_process
from tests.servers import daphne

from .browsing import ARTIFACTS


@pytest.fixture
def server(django_db_setup, django_db_blocker, tmp_path, request) -> Iterator[str]:
    """`daphne astron.asgi:application` on a free port, on the test database; its base URL.

    Static files come from the apps' folders (tests/browser/server_settings.py), so that no
    `collectstatic` is needed; everything else is the project's own configuration. Each test
    gets a new server, started after the test's rows exist: a serving process keeps what it
    read (without Redis, flows/lookup.py finds a flow made by another process only minutes
    later), and its executor must not take up the runs of other tests.
    """
    with django_db_blocker.unblock():
        environment = environment_for_another_process(
            DJANGO_SETTINGS_MODULE="tests.browser.server_settings")
    log_path = tmp_path / "daphne.log"
    try:
        with daphne(environment, log_path) as base:
            yield base
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"daphne-{request.node.name}.log").write_text(
            log_path.read_text(errors="replace") if log_path.exists() else "")
