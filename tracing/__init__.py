"""Observability of the platform: OpenTelemetry tracing, Prometheus metrics, the dashboard.

`setup` configures tracing from the standard OTEL_* variables (off unless they say
otherwise); `runs` derives a run's span and its nodes' spans, and the run and node metrics,
from the run's events; `metrics` holds the counters and histograms served at /metrics.
The engine knows nothing of this: the platform wraps the event sink it hands to a run.
"""
