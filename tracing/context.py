"""Trace context carried from the request that starts a run to wherever the run executes.

`start_run` stores the W3C `traceparent` of the current span on the run's row; the executor
(this process's or another's, now or after a recovery) starts the run's span under it.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()

TRACE_PARENT_LENGTH = 55  # "00-" + 32 hex + "-" + 16 hex + "-" + 2 hex


def current_trace_parent() -> str:
    """The `traceparent` of the current span, or "" when nothing is traced here."""
    if not trace.get_current_span().get_span_context().is_valid:
        return ""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    value = carrier.get("traceparent", "")
    return value if len(value) <= TRACE_PARENT_LENGTH else ""


def context_of(trace_parent: str) -> Context | None:
    """The context to start a span under: the stored parent's, or None for a new trace."""
    if not trace_parent:
        return None
    return _propagator.extract({"traceparent": trace_parent})
