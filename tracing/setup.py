"""Tracing configured from the standard OpenTelemetry variables; off unless they say otherwise.

    OTEL_TRACES_EXPORTER         none (default), console, otlp, or a comma-separated list
    OTEL_EXPORTER_OTLP_ENDPOINT  where `otlp` sends (OTLP over HTTP/protobuf; the SDK's
                                 default is http://localhost:4318); the exporter reads the
                                 other OTEL_EXPORTER_OTLP_* variables itself
    OTEL_SERVICE_NAME            "astron" unless set (or given in OTEL_RESOURCE_ATTRIBUTES)
    OTEL_SDK_DISABLED            true: off whatever the rest says

`configure_from_env()` runs once per process (the tracing app's `ready()`; never under
pytest). When tracing is on it installs a TracerProvider with a batching processor per
exporter and instruments Django (a span per request), psycopg (a span per query) and the
django-redis cache client (a span per command: tracing/redis.py); the run and node spans
come from tracing/runs.py. Tests call `install()` with a provider of their own.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

logger = logging.getLogger(__name__)

EXPORTERS = ("none", "console", "otlp")
DEFAULT_SERVICE_NAME = "astron"
# Probes, scrapes and files make no traces (a regex each, searched in the URL).
EXCLUDED_URLS = r"/healthz$,/readyz$,/metrics$,/static/,/favicon\.ico$,/silk/"
FALSE = ("", "false", "0", "no")
TRUE = ("true", "1", "yes")


@dataclass(frozen=True)
class Tracing:
    provider: trace.TracerProvider
    tracer: trace.Tracer  # for the run and node spans


_lock = threading.Lock()
_configured = False
_active: Tracing | None = None


def active() -> Tracing | None:
    """The tracing in force in this process, or None when it is off."""
    return _active


def tracer() -> trace.Tracer | None:
    return _active.tracer if _active is not None else None


def provider() -> trace.TracerProvider | None:
    return _active.provider if _active is not None else None


def exporters_from_env(environ: Mapping[str, str]) -> list[str]:
    """The exporters OTEL_TRACES_EXPORTER names ([] for none); nonsense stops the process."""
    disabled = environ.get("OTEL_SDK_DISABLED", "").strip().lower()
    if disabled not in FALSE + TRUE:
        raise ImproperlyConfigured(f"OTEL_SDK_DISABLED must be true or false, not {disabled!r}.")
    names = [name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",")
             if name.strip()]
    for name in names:
        if name not in EXPORTERS:
            raise ImproperlyConfigured(
                f"OTEL_TRACES_EXPORTER: {name!r} is not one of {', '.join(EXPORTERS)}.")
    if "otlp" in names:
        protocol = (environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                    or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip()
        if protocol != "http/protobuf":
            raise ImproperlyConfigured(
                f"OTEL_EXPORTER_OTLP_PROTOCOL: only http/protobuf is supported, not {protocol!r}.")
    if disabled in TRUE or names == ["none"]:
        return []
    return [name for name in names if name != "none"]


def configure_from_env(environ: Mapping[str, str] | None = None) -> Tracing | None:
    """Configure tracing once per process from the environment; later calls change nothing."""
    global _configured
    environ = os.environ if environ is None else environ
    with _lock:
        if _configured:
            return _active
        names = exporters_from_env(environ)
        _configured = True
        if not names:
            return None
        provider = TracerProvider(resource=_resource(environ))
        for name in names:
            provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
        trace.set_tracer_provider(provider)
    installed = install(provider)
    logger.info("tracing on: %s, service %s", ", ".join(names),
                provider.resource.attributes.get(SERVICE_NAME))
    return installed


def install(provider: trace.TracerProvider, *, django: bool = True,
            database: bool = True) -> Tracing:
    """Send the spans of runs, nodes, requests (`django`) and queries (`database`) to
    `provider`. The django-redis client picks the provider up when it connects."""
    global _active
    if django:
        from opentelemetry.instrumentation.django import DjangoInstrumentor
        from opentelemetry.metrics import NoOpMeterProvider

        excluded = None if os.environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS") else EXCLUDED_URLS
        # Metrics go through prometheus-client (tracing/metrics.py), not OpenTelemetry's.
        DjangoInstrumentor().instrument(tracer_provider=provider, excluded_urls=excluded,
                                        meter_provider=NoOpMeterProvider())
    if database:
        try:
            from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
        except ImportError:  # psycopg is a dependency; without it there is no PostgreSQL
            pass
        else:
            PsycopgInstrumentor().instrument(tracer_provider=provider, skip_dep_check=True)
    if django:
        # A doorbell's publish (in the request's trace) and its task in the worker
        # (RUN_EXECUTOR=celery): the trace goes from the request through the broker.
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument(tracer_provider=provider)
    _active = Tracing(provider, provider.get_tracer("astron"))
    return _active


def uninstall() -> None:
    """Stop tracing here (tests): instrumentations removed, no more run or node spans."""
    global _active
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    instrumentors = [DjangoInstrumentor(), CeleryInstrumentor()]
    try:
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    except ImportError:
        pass
    else:
        instrumentors.append(PsycopgInstrumentor())
    for instrumentor in instrumentors:
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
    _active = None


def _resource(environ: Mapping[str, str]) -> Resource:
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES from os.environ;
    # given attributes win, so the default name is given only when neither set one.
    detected = Resource.create({})
    name = environ.get("OTEL_SERVICE_NAME", "").strip()
    if name:
        return detected.merge(Resource({SERVICE_NAME: name}))
    if str(detected.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        return detected.merge(Resource({SERVICE_NAME: DEFAULT_SERVICE_NAME}))
    return detected


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # Endpoint, headers, timeout and compression come from OTEL_EXPORTER_OTLP_*.
    return OTLPSpanExporter()
