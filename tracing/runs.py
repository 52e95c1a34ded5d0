"""Spans and metrics of a run, derived from its events by a wrapper around its event sink.

The engine emits `run.started`, `node.started`, `node.retrying`, `node.finished`,
`node.skipped`, `run.waiting` and `run.finished` with everything a span or a metric needs
(node, type, status, attempts, error, elapsed time), so it stays free of tracing: the
executor hands it an `ObservedSink` around the database sink, which passes every event on
first, unchanged, then

- counts it (tracing/metrics.py), whether tracing is on or off;
- with tracing on, keeps one span per execution of the run ("run <flow>", under the trace
  of the request that started the run: `Run.trace_parent`), and one child span per node
  execution ("node <type>"), from its node.started to its node.finished. Body nodes of an
  iteration are children of the iteration node's span.

A run that waits for a person ends its execution span with status `waiting`; the execution
that continues it (here or in another process) opens a new one in the same trace.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from engine import events as ev
from engine.ports import EventSink
from tracing import metrics, setup
from tracing.context import context_of
from tracing.logs import hidden_now

# A run of a 10,000-item iteration would otherwise make tens of thousands of spans; the
# metrics still count every node.
MAX_NODE_SPANS = 1000
FAILED = ("failed", "recovered")  # node statuses that carry an error worth counting
SCOPES = ("iteration",)  # node types whose events name them as the scope of body nodes


class ObservedSink:
    """An EventSink that passes events to `sink` and derives spans and metrics from them."""

    def __init__(self, sink: EventSink, run_id: str, node_types: dict[str, str], *,
                 flow: str = "", version: Any = "", trace_parent: str = "",
                 tracer: trace.Tracer | None = None, attributes: dict[str, Any] | None = None):
        self.sink = sink
        self.run_id = run_id
        self.node_types = node_types
        self.tracer = tracer
        self.span: Span | None = None
        self._context: Any = None  # the run span's context: the parent of node spans
        self.outcome: str | None = None  # the run.finished status
        self._questions = 0  # open questions of this execution (run.waiting − run.resumed)
        self._types: dict[tuple[Any, Any, str], str] = {}  # running body node → its type
        self._spans: dict[tuple[Any, Any, str], Span] = {}  # open node spans
        self._latest: dict[str, Span] = {}  # node id → its latest span (iteration scopes)
        self._span_count = 0
        self._dropped = 0
        self._dropped_keys: set[tuple[Any, Any, str]] = set()  # running, with no span
        self._started = False
        if tracer is not None:
            parent = context_of(trace_parent)  # else the current context: a child run's parent
            self.span = tracer.start_span(
                f"run {flow}".rstrip(), context=parent, kind=SpanKind.INTERNAL,
                attributes={"astron.run.id": run_id, "astron.flow": flow,
                            "astron.flow.version": str(version), **(attributes or {})})
            self._context = trace.set_span_in_context(self.span)

    # -- the EventSink port -------------------------------------------------------------------

    def emit(self, event: dict[str, Any]) -> None:
        self.sink.emit(event)
        handler = _HANDLERS.get(event["type"])
        if handler is not None:
            handler(self, event)

    async def durable(self) -> None:
        await self.sink.durable()

    async def drain(self) -> None:
        try:
            await self.sink.drain()
        except BaseException as error:
            self.close(error)
            raise
        self.close()

    # -- the run's span -------------------------------------------------------------------------

    @contextmanager
    def executing(self) -> Iterator[None]:
        """Make the run's span the current one while the engine drives the run, so that the
        spans of what it causes (queries storing its events, cache calls, child runs) nest
        under it; the span ends when the execution stops, whichever way."""
        if self.span is None:
            yield
            return
        token = otel_context.attach(self._context)
        try:
            yield
        except BaseException as error:
            self.close(error)
            raise
        finally:
            otel_context.detach(token)
            self.close()

    def close(self, error: BaseException | None = None) -> None:
        """End the execution's span and the node spans still open (waiting or interrupted)."""
        span, self.span = self.span, None
        if span is None:
            return
        # An execution stops finished, waiting for answers, or interrupted from outside.
        outcome = self.outcome or ("waiting" if self._questions > 0 else "interrupted")
        for node_span in self._spans.values():
            node_span.set_attribute("astron.node.status",
                                    "waiting" if outcome == "waiting" else "interrupted")
            node_span.end()
        self._spans.clear()
        span.set_attribute("astron.run.status", outcome)
        span.set_attribute("astron.run.resumed", not self._started)
        if self._dropped:
            span.set_attribute("astron.run.node_spans_dropped", self._dropped)
        # An Exception is a failure (events not stored…); a CancelledError is the process
        # stopping: the run continues elsewhere, in the same trace.
        if isinstance(error, Exception):
            # Cleaned like a log record: the message or traceback may quote a secret.
            redactor = hidden_now()
            described = redactor.text(f"{type(error).__name__}: {error}")
            span.record_exception(error, attributes={
                "exception.message": redactor.text(str(error)),
                "exception.stacktrace": redactor.text("".join(
                    traceback.format_exception(type(error), error, error.__traceback__)))})
            span.set_status(Status(StatusCode.ERROR, described))
        span.end()

    # -- events ---------------------------------------------------------------------------------

    def _run_started(self, event: dict[str, Any]) -> None:
        self._started = True
        metrics.run_started()

    def _run_waiting(self, event: dict[str, Any]) -> None:
        self._questions += 1
        if self.span is not None:
            self.span.add_event(ev.RUN_WAITING, {"astron.node.id": event["data"].get("node", "")})

    def _run_resumed(self, event: dict[str, Any]) -> None:
        # An answer to a question of an earlier execution resumes it too: never below 0.
        self._questions = max(0, self._questions - 1)
        if self.span is not None:
            self.span.add_event(ev.RUN_RESUMED, {"astron.node.id": event["data"].get("node", "")})

    def _run_finished(self, event: dict[str, Any]) -> None:
        data = event["data"]
        status = data["status"]
        self.outcome = status
        metrics.run_finished(status, data.get("elapsed_ms"))
        span = self.span
        if span is not None:
            span.set_attribute("astron.run.elapsed_ms", data.get("elapsed_ms") or 0)
            error = data.get("error")
            if error:
                span.set_attribute("astron.run.error.code", error.get("code") or "")
                if error.get("node"):
                    span.set_attribute("astron.run.error.node", error["node"])
            if status == "failed":
                span.set_status(Status(StatusCode.ERROR, _message(error)))

    def _node_started(self, event: dict[str, Any]) -> None:
        scope = event["scope"]
        if scope is None and self.span is None:
            return  # metrics only: a top-level node's type is in node_types
        data = event["data"]
        key = (scope, event["item"], data["node"])
        node_type = data.get("type") or ""
        if scope is not None:
            self._types[key] = node_type  # body nodes are not in node_types
        if self.span is None or key in self._spans:
            return  # no tracing, or a retry of a node whose span is open
        if self._span_count >= MAX_NODE_SPANS:
            self._dropped += 1
            self._dropped_keys.add(key)
            return
        self._span_count += 1
        attributes = {"astron.node.id": data["node"], "astron.node.type": node_type}
        context = self._context
        if scope is not None:
            attributes["astron.node.scope"] = scope
            attributes["astron.node.item"] = event["item"]
            parent = self._latest.get(scope)
            if parent is not None:
                context = trace.set_span_in_context(parent)
        span = self.tracer.start_span(  # type: ignore[union-attr]
            f"node {node_type}", context=context, attributes=attributes)
        self._spans[key] = span
        if node_type in SCOPES:
            self._latest[data["node"]] = span

    def _node_retrying(self, event: dict[str, Any]) -> None:
        span = self._spans.get((event["scope"], event["item"], event["data"]["node"]))
        if span is not None:
            data = event["data"]
            span.add_event(ev.NODE_RETRYING, {
                "astron.node.attempt": data.get("attempt") or 0,
                "astron.node.delay_ms": data.get("delay_ms") or 0,
                "astron.node.error.code": (data.get("error") or {}).get("code") or ""})

    def _node_finished(self, event: dict[str, Any]) -> None:
        data = event["data"]
        scope = event["scope"]
        key = (scope, event["item"], data["node"])
        if scope is None:
            node_type = self.node_types.get(data["node"], "")
        else:
            node_type = self._types.pop(key, "")
        status = data["status"]
        error = data.get("error")
        metrics.node_finished(node_type, data.get("elapsed_ms"))
        if status in FAILED and error:
            metrics.node_failed(node_type, error.get("code") or "")
        if self.span is None:
            return
        span = self._spans.pop(key, None)
        if span is None:
            if key in self._dropped_keys:
                self._dropped_keys.discard(key)
                return
            span = self._late_span(event, node_type)
            if span is None:
                return
        attributes = {"astron.node.status": status,
                      "astron.node.attempts": data.get("attempts") or 0,
                      "astron.node.elapsed_ms": data.get("elapsed_ms") or 0}
        if error:
            attributes["astron.node.error.code"] = error.get("code") or ""
            if status == "failed":
                span.set_status(Status(StatusCode.ERROR, _message(error)))
        span.set_attributes(attributes)  # one call: each takes the span's lock
        span.end()

    def _late_span(self, event: dict[str, Any], node_type: str) -> Span | None:
        """A span for a node that finishes in this execution but started in an earlier one
        (a question answered after a pause): it starts its elapsed time before now."""
        if self._span_count >= MAX_NODE_SPANS:
            self._dropped += 1
            return None
        self._span_count += 1
        data = event["data"]
        start = time.time_ns() - int((data.get("elapsed_ms") or 0) * 1e6)
        return self.tracer.start_span(  # type: ignore[union-attr]
            f"node {node_type}", context=self._context, start_time=start,
            attributes={"astron.node.id": data["node"], "astron.node.type": node_type})

    def _node_skipped(self, event: dict[str, Any]) -> None:
        if self.span is not None:
            self.span.add_event(ev.NODE_SKIPPED, {"astron.node.id": event["data"]["node"]})


_HANDLERS = {
    ev.RUN_STARTED: ObservedSink._run_started,
    ev.RUN_WAITING: ObservedSink._run_waiting,
    ev.RUN_RESUMED: ObservedSink._run_resumed,
    ev.RUN_FINISHED: ObservedSink._run_finished,
    ev.NODE_STARTED: ObservedSink._node_started,
    ev.NODE_RETRYING: ObservedSink._node_retrying,
    ev.NODE_FINISHED: ObservedSink._node_finished,
    ev.NODE_SKIPPED: ObservedSink._node_skipped,
}


def _message(error: Any) -> str:
    if not isinstance(error, dict):
        return ""
    return f"{error.get('code')}: {error.get('message')}"


def observed(sink: EventSink, run_id: str, node_types: dict[str, str], *, flow: str = "",
             version: Any = "", trace_parent: str = "",
             attributes: dict[str, Any] | None = None) -> ObservedSink:
    """Wrap a run's sink: metrics always, spans when tracing is on in this process."""
    return ObservedSink(sink, run_id, node_types, flow=flow, version=version,
                        trace_parent=trace_parent, tracer=setup.tracer(),
                        attributes=attributes)
