"""Helpers of the cache tests: unique documents, query capture, the dead-Redis settings."""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager

from django.db import connection
from django.test.utils import CaptureQueriesContext

from . import factories

REDIS = bool(os.environ.get("REDIS_URL"))

# A Redis nobody listens on: connections are refused at once.
DEAD_REDIS = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
        "KEY_PREFIX": "astron",
        "OPTIONS": {
            "SERIALIZER": "django_redis.serializers.msgpack.MSGPackSerializer",
            "SOCKET_CONNECT_TIMEOUT": 0.2,
            "SOCKET_TIMEOUT": 0.2,
        },
    }
}

TRANSACTION_CONTROL = ("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK", "BEGIN", "COMMIT")


def unique_hello() -> dict:
    """The hello sample with a description of its own: a document no other test has."""
    dsl = factories.sample("hello")
    dsl["description"] = f"cache test {uuid.uuid4().hex}"
    return dsl


def chain(length: int) -> dict:
    """A valid flow of `length` template nodes in a row (its compile takes a while)."""
    nodes = [{"id": "start", "type": "start",
              "params": {"inputs": {"name": {"type": "string", "required": True}}}}]
    edges = []
    previous = "start"
    for i in range(length):
        nodes.append({"id": f"t{i}", "type": "template",
                      "params": {"template": "Hi {{start.name}}"}})
        edges.append({"from": previous, "to": f"t{i}"})
        previous = f"t{i}"
    nodes.append({"id": "end", "type": "end", "inputs": {"greeting": f"{{{{{previous}.text}}}}"}})
    edges.append({"from": previous, "to": "end"})
    return {"dsl": "astron/v1", "name": "Chain", "description": f"chain {uuid.uuid4().hex}",
            "nodes": nodes, "edges": edges}


@contextmanager
def queries():
    """The statements run in the block (transaction control left out), as a list of SQL."""
    found: list[str] = []
    with CaptureQueriesContext(connection) as captured:
        yield found
    found.extend(q["sql"] for q in captured.captured_queries
                 if not q["sql"].lstrip().upper().startswith(TRANSACTION_CONTROL))


def slot_check() -> list[str]:
    """What a run start adds to check its slot (flows/services/capacity.py): PostgreSQL's
    lock per owner, then the count of the owner's runs holding slots."""
    return (["slot lock"] if connection.vendor == "postgresql" else []) + ["flows_run"]


def tables(statements: list[str]) -> list[str]:
    """The first table each statement names (flows_run, flows_flow, …)."""
    named = []
    for sql in statements:
        if "pg_advisory_xact_lock" in sql:
            named.append("slot lock")
            continue
        words = sql.replace('"', " ").split()
        named.append(next((w for w in words if w.startswith(("flows_", "auth_"))), sql[:40]))
    return named
