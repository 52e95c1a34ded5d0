"""Spans for the cache's Redis commands, and only the cache's.

RedisInstrumentor().instrument() would patch every redis client class, the channel layer's
included (one span per group_send and per receive poll: noise, and a span per event). Instead,
django-redis builds its clients through a connection factory named in the cache's OPTIONS
(`CONNECTION_FACTORY`, astron/settings.py); this one instruments each client it makes with
`RedisInstrumentor.instrument_client` when tracing is on. Clients are made lazily, once per
cache client, so the check costs nothing per command and with tracing off nothing is wrapped.
"""

from __future__ import annotations

from typing import Any

from django_redis.pool import ConnectionFactory

from tracing import setup


class TracedConnectionFactory(ConnectionFactory):
    def connect(self, url: str) -> Any:
        client = super().connect(url)
        provider = setup.provider()
        if provider is not None:
            from opentelemetry.instrumentation.redis import RedisInstrumentor

            RedisInstrumentor.instrument_client(client, tracer_provider=provider)
        return client
