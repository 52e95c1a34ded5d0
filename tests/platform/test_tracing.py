"""Tracing: a request that starts a run, the run and its nodes make one trace.

Spans go to an in-memory exporter through a provider of the test's own
(`tracing.setup.install`); the process's tracing stays off under pytest.
"""

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from engine import Run, compile_plan
from engine.ports import NullSink
from flows.execution.executor import executor
from flows.models import Run as RunRow
from tracing import setup
from tracing.context import context_of, current_trace_parent
from tracing.runs import MAX_NODE_SPANS, ObservedSink

from .factories import flow, run, sample

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def spans():
    """Tracing on, into memory, for this test only."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    setup.install(provider, database=False)
    yield exporter
    executor.stop()  # before uninstalling: no run span may end after the test
    setup.uninstall()
    provider.shutdown()


def spans_when(exporter, ready, seconds=10.0):
    """The finished spans once `ready(spans)` holds (a run span ends just after its row)."""
    deadline = time.monotonic() + seconds
    while True:
        finished = exporter.get_finished_spans()
        if ready(finished) or time.monotonic() > deadline:
            return finished
        time.sleep(0.02)


def named(spans, prefix):
    return [span for span in spans if span.name.startswith(prefix)]


def has_run_span(spans):
    return any(span.name.startswith("run ") for span in spans)


def wait_flow(seconds_input="abc"):
    """start → a wait node whose seconds come from an input: a string fails it."""
    return {"dsl": "astron/v1", "name": "Nap", "nodes": [
        {"id": "start", "type": "start",
         "params": {"inputs": {"s": {"type": "string", "default": seconds_input}}}},
        {"id": "nap", "type": "wait", "params": {"seconds": "{{start.s}}"}},
        {"id": "end", "type": "end"}],
        "edges": [{"from": "start", "to": "nap"}, {"from": "nap", "to": "end"}]}


# -- through the API ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_run_started_through_the_api_continues_the_request_trace(spans, api, owner):
    flow(owner, "hello", slug="hello")

    response = api.post("/api/flows/hello/runs/", {"inputs": {"name": "Ada"}})
    assert response.status_code == 201
    run_id = response.json()["id"]
    executor.wait(run_id, 10)
    finished = spans_when(spans, has_run_span)

    [request] = [s for s in finished if s.kind == SpanKind.SERVER]
    [run_span] = named(finished, "run ")
    nodes = named(finished, "node ")
    assert request.name.startswith("POST")
    assert run_span.name == "run hello"
    assert run_span.context.trace_id == request.context.trace_id
    assert run_span.parent.span_id == request.context.span_id
    assert run_span.attributes["astron.run.id"] == run_id
    assert run_span.attributes["astron.run.status"] == "succeeded"
    assert run_span.attributes["astron.flow.version"] == "draft"
    assert {(n.attributes["astron.node.id"], n.attributes["astron.node.type"],
             n.attributes["astron.node.status"], n.attributes["astron.node.attempts"])
            for n in nodes} == {("start", "start", "succeeded", 1),
                                ("greet", "template", "succeeded", 1),
                                ("end", "end", "succeeded", 1)}
    assert all(n.parent.span_id == run_span.context.span_id for n in nodes)
    assert all(n.context.trace_id == request.context.trace_id for n in nodes)
    stored = RunRow.objects.get(pk=run_id).trace_parent
    assert stored.startswith(f"00-{request.context.trace_id:032x}-{request.context.span_id:016x}-")


@pytest.mark.django_db(transaction=True)
def test_a_failing_node_span_carries_its_error_code(spans, owner, api):
    from flows import services

    services.create_flow(owner, wait_flow(), slug="nap")

    run_id = api.post("/api/flows/nap/runs/", {"inputs": {}}).json()["id"]
    executor.wait(run_id, 10)
    finished = spans_when(spans, has_run_span)

    [nap] = [s for s in named(finished, "node ") if s.attributes["astron.node.id"] == "nap"]
    assert nap.name == "node wait"
    assert nap.attributes["astron.node.status"] == "failed"
    assert nap.attributes["astron.node.attempts"] == 1
    assert nap.attributes["astron.node.error.code"] == "invalid_param"
    assert nap.status.status_code == StatusCode.ERROR
    [run_span] = named(finished, "run ")
    assert run_span.attributes["astron.run.status"] == "failed"
    assert run_span.attributes["astron.run.error.code"] == "invalid_param"
    assert run_span.status.status_code == StatusCode.ERROR


@pytest.mark.django_db(transaction=True)
def test_the_trace_parent_is_stored_so_any_worker_continues_the_trace(spans, owner,
                                                                       monkeypatch):
    """The run row carries the trace: whoever executes it later (here the recovery pass, as
    another process would after this one died) opens the run's span under the caller's."""
    from datetime import timedelta

    from django.utils import timezone

    hello = flow(owner, "hello")
    monkeypatch.setattr("flows.services.dispatch.hand_over", lambda run: None)  # never executed
    # The recovery below is the only one: the executor's own sweep, started with the run,
    # could take the run up first (it did once in CI, under load).
    monkeypatch.setattr(executor, "maintenance", False)
    with setup.tracer().start_as_current_span("a caller") as caller:
        started = run(owner, hello)
    context = caller.get_span_context()
    assert started.trace_parent.startswith(f"00-{context.trace_id:032x}-{context.span_id:016x}-")
    RunRow.objects.filter(pk=started.pk).update(  # queued, and its lease ran out unused
        lease_expires_at=timezone.now() - timedelta(seconds=1))

    assert executor.recover_now() == 1
    executor.wait(started.pk, 10)
    finished = spans_when(spans, has_run_span)

    [run_span] = named(finished, "run ")
    assert run_span.attributes["astron.run.id"] == str(started.pk)
    assert run_span.context.trace_id == context.trace_id
    assert run_span.parent.span_id == context.span_id


@pytest.mark.django_db
def test_nothing_traced_stores_no_trace_parent(owner):
    assert setup.active() is None
    assert current_trace_parent() == ""
    assert run(owner, flow(owner, "hello")).trace_parent == ""
    assert context_of("") is None


@pytest.mark.django_db(transaction=True)
def test_a_waiting_run_ends_its_span_waiting_and_the_answer_opens_another(spans, api, owner):
    flow(owner, "approval", slug="approval")
    run_id = api.post("/api/flows/approval/runs/",
                      {"inputs": {"request": "refund"}, "wait": 10}).json()["id"]
    first = spans_when(spans, has_run_span)
    [paused] = named(first, "run ")
    assert paused.attributes["astron.run.status"] == "waiting"
    [question] = [s for s in named(first, "node ") if s.attributes["astron.node.id"] == "ask"]
    assert question.attributes["astron.node.status"] == "waiting"

    api.post(f"/api/runs/{run_id}/answer/", {"answer": "ok", "option": "yes"})
    finished = spans_when(spans, lambda s: len(named(s, "run ")) == 2)

    resumed = next(s for s in named(finished, "run ") if s is not paused and
                   s.context.span_id != paused.context.span_id)
    assert resumed.context.trace_id == paused.context.trace_id
    assert resumed.attributes["astron.run.status"] == "succeeded"
    assert resumed.attributes["astron.run.resumed"] is True
    answered = [s for s in named(finished, "node ") if s.attributes["astron.node.id"] == "ask"
                and s.attributes["astron.node.status"] == "succeeded"]
    assert len(answered) == 1 and answered[0].parent.span_id == resumed.context.span_id


# -- the sink wrapper on its own (no Django, no database) ------------------------------------


def observe(document, inputs, tracer):
    plan = compile_plan(document)
    sink = ObservedSink(NullSink(), "r1", {n.id: n.type for n in plan.graph.nodes},
                        flow="f", version=1, tracer=tracer)

    async def go():
        with sink.executing():
            return await Run(plan, inputs, sink=sink).execute()

    return asyncio.run(go())


@pytest.fixture
def memory():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter, provider.get_tracer("test")
    provider.shutdown()


def iteration(items):
    body = {"nodes": [{"id": "begin", "type": "start"},
                      {"id": "shout", "type": "template", "inputs": {"word": "{{item}}"},
                       "params": {"template": "{{word}}!"}},
                      {"id": "end", "type": "end", "inputs": {"text": "{{shout.text}}"}}],
            "edges": [{"from": "begin", "to": "shout"}, {"from": "shout", "to": "end"}]}
    return {"dsl": "astron/v1", "name": "each", "nodes": [
        {"id": "start", "type": "start", "params": {"inputs": {"words": {"type": "array"}}}},
        {"id": "each", "type": "iteration", "params": {"items": "{{start.words}}",
                                                       "body": body}},
        {"id": "end", "type": "end", "inputs": {"results": "{{each.results}}"}}],
        "edges": [{"from": "start", "to": "each"}, {"from": "each", "to": "end"}]}


def test_body_nodes_of_an_iteration_are_children_of_its_span(memory):
    exporter, tracer = memory
    result = observe(iteration(2), {"words": ["a", "b"]}, tracer)
    assert result.status == "succeeded"

    finished = exporter.get_finished_spans()
    [each] = [s for s in finished if s.attributes.get("astron.node.id") == "each"]
    body = [s for s in finished if s.attributes.get("astron.node.scope") == "each"]
    assert len(body) == 6  # begin, shout, end for each of the two items
    assert {s.attributes["astron.node.item"] for s in body} == {0, 1}
    assert all(s.parent.span_id == each.context.span_id for s in body)


def test_every_node_is_timed_by_its_type_with_or_without_tracing():
    from tracing.metrics import REGISTRY

    def timed(node_type):
        return REGISTRY.get_sample_value("astron_node_duration_seconds_count",
                                         {"type": node_type}) or 0

    before = {t: timed(t) for t in ("iteration", "template", "start")}
    assert observe(iteration(3), {"words": ["a", "b", "c"]}, None).status == "succeeded"
    assert timed("iteration") - before["iteration"] == 1
    assert timed("template") - before["template"] == 3  # a body node per item
    assert timed("start") - before["start"] == 4  # the run's start and each body's


def test_a_huge_run_keeps_a_bounded_number_of_node_spans(memory):
    exporter, tracer = memory
    words = [f"w{i}" for i in range(MAX_NODE_SPANS // 3 + 20)]
    assert observe(iteration(len(words)), {"words": words}, tracer).status == "succeeded"

    finished = exporter.get_finished_spans()
    [run_span] = [s for s in finished if s.name.startswith("run ")]
    assert len(finished) == MAX_NODE_SPANS + 1
    assert run_span.attributes["astron.run.node_spans_dropped"] == 3 * len(words) + 3 - \
        MAX_NODE_SPANS


def test_without_a_tracer_the_wrapper_only_passes_events_on(memory):
    exporter, _ = memory
    events = []

    class Keep(NullSink):
        def emit(self, event):
            events.append(event)

    plan = compile_plan(sample("hello"))
    sink = ObservedSink(Keep(), "r1", {}, tracer=None)
    result = asyncio.run(Run(plan, {"name": "Ada"}, sink=sink).execute())
    assert result.status == "succeeded"
    assert (events[0]["type"], events[-1]["type"]) == ("run.started", "run.finished")
    assert sink.span is None and exporter.get_finished_spans() == ()


def test_an_interrupted_execution_ends_its_span_interrupted(memory):
    exporter, tracer = memory
    plan = compile_plan({"dsl": "astron/v1", "name": "slow", "nodes": [
        {"id": "start", "type": "start"}, {"id": "nap", "type": "wait", "params": {"seconds": 30}},
        {"id": "end", "type": "end"}],
        "edges": [{"from": "start", "to": "nap"}, {"from": "nap", "to": "end"}]})
    sink = ObservedSink(NullSink(), "r1", {}, flow="slow", tracer=tracer)

    async def go():
        async def execute():
            with sink.executing():
                await Run(plan, {}, sink=sink).execute()

        task = asyncio.create_task(execute())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
    finished = exporter.get_finished_spans()
    [run_span] = [s for s in finished if s.name.startswith("run ")]
    [nap] = [s for s in finished if s.attributes.get("astron.node.id") == "nap"]
    assert run_span.attributes["astron.run.status"] == "interrupted"
    assert nap.attributes["astron.node.status"] == "interrupted"
    assert run_span.status.status_code == StatusCode.UNSET  # it continues elsewhere


# -- setup from the environment ----------------------------------------------------------------


def test_tracing_is_off_in_tests_and_without_variables():
    assert setup.active() is None or setup.active().provider is not trace.get_tracer_provider()
    assert setup.exporters_from_env({}) == []
    assert setup.exporters_from_env({"OTEL_TRACES_EXPORTER": "none"}) == []
    assert setup.exporters_from_env({"OTEL_TRACES_EXPORTER": "console, otlp"}) == [
        "console", "otlp"]
    assert setup.exporters_from_env({"OTEL_TRACES_EXPORTER": "otlp",
                                     "OTEL_SDK_DISABLED": "true"}) == []


@pytest.mark.parametrize("environ, variable", [
    ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
    ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
     "OTEL_EXPORTER_OTLP_PROTOCOL"),
    ({"OTEL_SDK_DISABLED": "maybe"}, "OTEL_SDK_DISABLED"),
])
def test_a_malformed_variable_is_refused_by_name(environ, variable):
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match=variable):
        setup.exporters_from_env(environ)


def django_process(code, **environ):
    """Run `code` in a fresh process that loads Django as a server would (not under pytest)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "PYTEST_")) and k != "SILK"}
    env.update(environ)
    prelude = ("import os, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', "
               "'astron.settings'); django.setup()\n")
    done = subprocess.run([sys.executable, "-c", prelude + code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_server_process_configures_tracing_from_the_environment_once():
    out = django_process(
        "from django.conf import settings\n"
        "from opentelemetry import trace\n"
        "from tracing import setup\n"
        "active = setup.active()\n"
        "assert active is not None and trace.get_tracer_provider() is active.provider\n"
        "assert setup.configure_from_env() is active  # idempotent\n"
        "print(active.provider.resource.attributes['service.name'])\n"
        "print(settings.MIDDLEWARE[0])\n",
        OTEL_TRACES_EXPORTER="console")
    name, middleware = out.split()[:2]
    assert name == "astron"
    assert middleware.startswith("opentelemetry.instrumentation.django")

    out = django_process("from tracing import setup\nprint(setup.active())\n")
    assert out.strip() == "None"


def test_the_service_name_comes_from_otel_service_name():
    out = django_process("from tracing import setup\n"
                         "print(setup.active().provider.resource.attributes['service.name'])\n",
                         OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="astron-eu")
    assert out.strip() == "astron-eu"


# -- redis: the cache's client only -------------------------------------------------------------


def test_only_the_cache_client_is_instrumented_for_redis(memory):
    import redis
    import redis.asyncio

    from tracing.redis import TracedConnectionFactory

    exporter, _ = memory
    factory = TracedConnectionFactory({})
    plain = factory.connect("redis://127.0.0.1:6379/0")
    assert not hasattr(plain.execute_command, "__wrapped__")  # tracing off: nothing wrapped

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    setup.install(provider, django=False, database=False)
    try:
        traced = factory.connect("redis://127.0.0.1:6379/0")
    finally:
        setup.uninstall()
    assert hasattr(traced.execute_command, "__wrapped__")
    # The classes (the channel layer's clients among them) are left alone.
    assert not hasattr(redis.Redis.execute_command, "__wrapped__")
    assert not hasattr(redis.asyncio.Redis.execute_command, "__wrapped__")
    if settings.REDIS_URL:
        traced.set("astron:test:tracing", b"1", ex=5)
        assert [s.name for s in exporter.get_finished_spans()] == ["SET"]


def test_the_cache_settings_name_the_traced_connection_factory():
    options = json.dumps(settings.CACHES["default"].get("OPTIONS", {}))
    if settings.REDIS_URL:
        assert "tracing.redis.TracedConnectionFactory" in options


# -- queries (PostgreSQL: SQLite is not instrumented) ---------------------------------------------


@pytest.fixture
def traced_queries(spans):
    """psycopg instrumented too; the pool starts again, so that its connections are traced
    (connections made before tracing was on are not: a server sets it up first)."""
    from django.db import connections

    from tracing.setup import install

    def restart_pools():
        for connection in connections.all():
            connection.close()
            if hasattr(connection, "close_pool"):
                connection.close_pool()

    install(setup.provider(), django=False)
    restart_pools()
    yield spans
    executor.stop()
    setup.uninstall()
    restart_pools()  # no traced connection outlives the test


@pytest.mark.skipif(settings.DATABASES["default"]["ENGINE"] != "astron.postgresql",
                    reason="psycopg spans need PostgreSQL")
@pytest.mark.django_db(transaction=True)
def test_queries_nest_under_the_request_and_the_run(traced_queries, api, owner):
    flow(owner, "hello", slug="hello")

    run_id = api.post("/api/flows/hello/runs/", {"inputs": {"name": "Ada"}}).json()["id"]
    executor.wait(run_id, 10)
    finished = spans_when(traced_queries, has_run_span)

    [request] = [s for s in finished if s.kind == SpanKind.SERVER]
    [run_span] = named(finished, "run ")
    queries = [s for s in finished if s.kind == SpanKind.CLIENT and "postgresql" in (
        s.attributes.get("db.system"), s.attributes.get("db.system.name"))]

    def statement(query):
        return query.attributes.get("db.statement") or query.attributes.get("db.query.text")

    def under(span):  # queries outside any span (the executor's claim…) have no parent
        return [q for q in queries if q.parent and q.parent.span_id == span.context.span_id]

    under_request, under_run = under(request), under(run_span)
    assert any('INSERT INTO "flows_run"' in statement(q) for q in under_request)
    assert any('INSERT INTO "flows_runevent"' in statement(q) for q in under_run)
