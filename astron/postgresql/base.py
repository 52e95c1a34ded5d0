"""Django's PostgreSQL backend whose pooled connections are checked as they are taken.

A connection the server dropped (a restart, `pg_terminate_backend`, a failover) stays in
psycopg's pool looking idle and fails the first query of whoever takes it next. Django's
CONN_HEALTH_CHECKS hands the pool psycopg's own check — a round trip on every checkout,
which the executor and each request make several times per run — and the pool waits with
backoff (1 s, 2 s, 4 s…) between failed checks, so a pool of several dead connections
outlasts the 5 s pool timeout and the request still fails.

Here a checkout costs no round trip: an idle connection has nothing to read, and one the
server ended has its goodbye or the end of the stream waiting on its socket. Only then is
it tested with a round trip; when that fails, the pool tests all its idle connections at
once (the others almost surely died with it), and the request takes a fresh one.
"""

from __future__ import annotations

import select

import psycopg
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool


def server_spoke(connection: psycopg.Connection) -> bool:
    """Whether the server sent anything to this idle connection (or closed it)."""
    try:
        readable, _, _ = select.select([connection.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict) -> psycopg.Connection:
        connection = super().get_new_connection(conn_params)
        if self.pool is None or not server_spoke(connection):
            return connection
        try:
            ConnectionPool.check_connection(connection)
        except psycopg.Error:
            self.pool.putconn(connection)  # broken: the pool discards it and opens another
            self.pool.check()
            connection = super().get_new_connection(conn_params)
        return connection
