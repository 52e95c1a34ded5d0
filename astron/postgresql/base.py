"""Django's PostgreSQL backend whose pooled connections are checked as they are taken.

A connection the server dropped (a restart, `pg_terminate_backend`, a failover) stays in
psycopg's pool looking idle and fails the first query of whoever takes it next. Django's
CONN_HEALTH_CHECKS hands the pool psycopg's own check, but the pool waits with backoff
(1 s, 2 s, 4 s…) between failed checks, so a pool of several dead connections, tried one
by one, outlasts the 5 s pool timeout and the request still fails. Here one failed check
makes the pool test all its idle connections at once (the others almost surely died with
it), and the request takes a fresh one: it answers, a few milliseconds late.
"""

from __future__ import annotations

import psycopg
from django.db.backends.postgresql import base
from psycopg_pool import ConnectionPool


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict) -> psycopg.Connection:
        connection = super().get_new_connection(conn_params)
        if self.pool is None:
            return connection
        try:
            ConnectionPool.check_connection(connection)
        except psycopg.Error:
            self.pool.putconn(connection)  # broken: the pool discards it and opens another
            self.pool.check()
            connection = super().get_new_connection(conn_params)
        return connection
