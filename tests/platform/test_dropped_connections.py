"""Connections the database dropped (a restart, pg_terminate_backend) are replaced when they
are taken from the pool, so the first request after the fault answers as usual."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, connections

from tests.platform import factories

pytestmark = pytest.mark.django_db(transaction=True)


def terminate_every_other_backend() -> int:
    """Ends every session on the test database but this thread's, as an operator would,
    and returns once those sessions are gone (the timeout argument makes the server wait
    for each to exit), so their goodbye is on the sockets before the next request."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0]


def in_a_request_thread(work):
    """Runs `work` on another thread, with that thread's own pooled connection, as a request
    served by the ASGI server's thread pool would."""
    def request():
        try:
            return work()
        finally:
            connections.close_all()  # back to the pool, as at the end of a request

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(request).result()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the pool is PostgreSQL's")
def test_the_first_request_after_the_connections_were_dropped_answers():
    owner = factories.user("ada")
    api = factories.api_client(owner)
    # The pool holds connections that served requests before the fault.
    for _ in range(3):
        assert in_a_request_thread(lambda: api.get("/api/flows/").status_code) == 200
    assert terminate_every_other_backend() >= 1

    statuses = [in_a_request_thread(lambda: api.get("/api/flows/").status_code)
                for _ in range(3)]
    assert statuses == [200, 200, 200]
