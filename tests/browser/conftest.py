"""The server of the browser tests: daphne serving the project against the test database."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import environment_for_another_process

from .browsing import ARTIFACTS, ROOT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
    port = free_port()
    log_path = tmp_path / "daphne.log"
    daphne = shutil.which("daphne", path=str(Path(sys.executable).parent)) or "daphne"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([daphne, "-b", "127.0.0.1", "-p", str(port),
                                    "astron.asgi:application"], cwd=ROOT, env=environment,
                                   stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"daphne exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"daphne did not answer within 60 s:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        server_log = log_path.read_text(errors="replace")
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"daphne-{request.node.name}.log").write_text(server_log)


