"""A database that refuses connections (stopped, restarting) makes requests answer 503 within
the pool's timeout, not hang: /readyz, the API and the pages (docs/api.md, Errors)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.processes import environment_for_another_process
from tests.servers import daphne, free_port

pytestmark = pytest.mark.django_db


def test_requests_answer_503_within_seconds_while_the_database_refuses(tmp_path):
    nobody_listens = free_port()
    environment = environment_for_another_process(
        DATABASE_URL=f"postgres://postgres@127.0.0.1:{nobody_listens}/astron")
    answers = {}
    with daphne(environment, tmp_path / "daphne.log") as base, \
            httpx.Client(base_url=base, timeout=60) as client:
        for path, headers in [("/readyz", {}),
                              ("/api/flows/", {"Authorization": "Token abc.def"})]:
            started = time.monotonic()
            response = client.get(path, headers=headers)
            answers[path] = (response.status_code, time.monotonic() - started,
                             response.headers.get("Retry-After"))

    for path, (status, seconds, retry_after) in answers.items():
        assert status == 503, (path, status)
        assert seconds < 10, f"{path} took {seconds:.1f} s"  # the pool waits 5 s at most
        if path.startswith("/api/"):
            assert retry_after == "2"
    print({path: f"{seconds:.2f} s" for path, (_, seconds, _) in answers.items()})
