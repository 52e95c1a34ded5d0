"""Tracing benchmark: what tracing costs the engine's runs and the API's run start.

    python bench/tracing.py                 # SQLite, and PostgreSQL when it answers
    python bench/tracing.py --quick         # fewer repetitions
    python bench/tracing.py --database URL  # run start on this database only

(a) The engine chain benchmark of bench/engine.py (a chain of N template nodes, µs per node,
    best of many runs) with the sink the platform gives a run: the bare engine (NullSink),
    the ObservedSink wrapper with tracing off (it still counts metrics), and with tracing on
    (a run span and a span per node into a BatchSpanProcessor whose exporter discards them).
    The engine itself has no tracing: this is what the platform adds per event.
(b) POST /api/flows/hello/runs/ without `wait` through the whole stack (Django's test client,
    a token), timed per request: wall-clock, and the CPU time of the request's thread. The
    run executes on the executor's thread meanwhile (competing for the GIL, as in a server)
    and is waited for before the next request (not timed). One process per database
    alternates blocks with tracing off and on (Django, psycopg and run/node spans into a
    discarding BatchSpanProcessor), with new database connections for each block, so that
    the machine's drift falls on both alike.

Prints a table and writes bench/results/tracing.json. Target: tracing on costs run start
less than 15 %.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import median, percentile, report

ROOT = Path(__file__).resolve().parents[1]
SQLITE_URL = "sqlite:////tmp/astron_bench_tracing.sqlite3"
POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/astron_bench_tracing"
TARGET = 1.15
WARM_UP = 5  # requests per block not counted (a block starts with new connections)


def discarding_provider() -> Any:
    """A TracerProvider that batches spans as in production and exports them nowhere."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class Discard(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    return provider


# -- (a) the engine chain ------------------------------------------------------------------------


async def chain_us_per_node(length: int, repeats: int, sink_of: Any) -> float:
    from bench.engine import chain_flow
    from engine import Run, compile_plan

    plan = compile_plan(chain_flow(length))
    node_types = {node.id: node.type for node in plan.graph.nodes}
    samples = []
    for number in range(repeats + 3):
        run_id = f"00000000-0000-4000-8000-{number:012d}"
        sink = sink_of(run_id, node_types)
        started = time.perf_counter()
        if sink is None:
            result = await Run(plan, {}, run_id=run_id).execute()
        else:
            with sink.executing():
                result = await Run(plan, {}, run_id=run_id, sink=sink).execute()
        elapsed = time.perf_counter() - started
        assert result.status == "succeeded"
        if number >= 3:  # warm-up
            samples.append(elapsed)
    return min(samples) / (length + 2) * 1e6


async def engine_rows(quick: bool) -> list[dict[str, Any]]:
    from engine.ports import NullSink
    from tracing.runs import ObservedSink

    tracer = discarding_provider().get_tracer("bench")
    modes = {
        "bare": lambda run_id, types: None,
        "off": lambda run_id, types: ObservedSink(NullSink(), run_id, types, flow="chain"),
        "on": lambda run_id, types: ObservedSink(NullSink(), run_id, types, flow="chain",
                                                 tracer=tracer),
    }
    repeats = 30 if quick else 200
    rows = []
    for length in (10, 50, 200):
        figures = {mode: [] for mode in modes}
        for _ in range(3):  # interleaved passes; the best of each
            for mode, sink_of in modes.items():
                figures[mode].append(await chain_us_per_node(length, repeats // 3, sink_of))
        best = {mode: min(values) for mode, values in figures.items()}
        rows.append({"case": f"(a) chain of {length} template nodes: wrapper, tracing off, "
                             "vs bare engine", "on": round(best["off"], 2),
                     "off": round(best["bare"], 2), "unit": "µs/node",
                     "ratio": round(best["off"] / best["bare"], 2)})
        rows.append({"case": f"(a) chain of {length} template nodes: tracing on vs off",
                     "on": round(best["on"], 2), "off": round(best["off"], 2),
                     "unit": "µs/node", "ratio": round(best["on"] / best["off"], 2),
                     "extra": f"+{best['on'] - best['off']:.1f} µs/node"})
    return rows


# -- (b) the API's run start --------------------------------------------------------------------


def start_latencies(url: str, rounds: int, requests: int) -> dict[str, dict[str, list[float]]]:
    """In a child process: per POST /api/flows/hello/runs/ (no wait), the wall-clock ms and
    the ms of CPU of the request's thread, in blocks alternating tracing off and on."""
    os.environ["DATABASE_URL"] = url
    os.environ["DJANGO_SETTINGS_MODULE"] = "astron.settings"
    os.environ["API_RATE"] = "1000000/second"
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.db import connections
    from django.test import Client

    from flows import services
    from flows.execution.executor import executor
    from flows.models import Flow
    from tracing import setup

    user, _ = User.objects.get_or_create(username="bench-tracing")
    if not Flow.objects.filter(owner=user, slug="hello").exists():
        hello = json.loads((ROOT / "samples" / "hello.json").read_text())
        services.create_flow(user, hello, slug="hello")
    _, key = services.create_token(user, "bench")
    body = json.dumps({"inputs": {"name": "Ada"}})
    provider = discarding_provider()

    def fresh_connections() -> None:
        # psycopg is instrumented when a connection opens: each block opens its own, in
        # its mode, on the request's side and on the executor's.
        executor.stop()
        for connection in connections.all():
            connection.close()
            if hasattr(connection, "close_pool"):
                connection.close_pool()

    figures: dict[str, dict[str, list[float]]] = {
        mode: {"wall": [], "cpu": []} for mode in ("off", "on")}
    for _ in range(rounds):
        for mode in ("off", "on"):
            fresh_connections()
            if mode == "on":
                setup.install(provider)
            client = Client(HTTP_AUTHORIZATION=f"Token {key}", HTTP_HOST="localhost")
            for number in range(requests + WARM_UP):
                started, cpu = time.perf_counter(), time.thread_time()
                response = client.post("/api/flows/hello/runs/", body,
                                       content_type="application/json")
                cpu, wall = time.thread_time() - cpu, time.perf_counter() - started
                assert response.status_code == 201, response.content
                executor.wait(response.json()["id"], 10)  # not timed: it ends before the next
                if number >= WARM_UP:
                    figures[mode]["wall"].append(wall * 1000)
                    figures[mode]["cpu"].append(cpu * 1000)
            if mode == "on":
                fresh_connections()
                setup.uninstall()
    executor.stop()
    return figures


def start_rows(url: str, label: str, quick: bool) -> list[dict[str, Any]]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PYTEST_"))}
    environ.setdefault("SECRET_KEY", secrets.token_urlsafe(64))
    environ.setdefault("SECRETS_KEY", secrets.token_urlsafe(32))
    environ["DATABASE_URL"] = url
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=environ,
                   check=True)
    rounds, requests = (4, 25) if quick else (12, 40)
    out = subprocess.run(
        [sys.executable, __file__, "--child", url, "--rounds", str(rounds),
         "--requests", str(requests)],
        cwd=ROOT, env=environ, check=True, capture_output=True, text=True).stdout
    figures = json.loads(out.strip().splitlines()[-1])
    rows = []
    for what, name in (("wall", "wall-clock"), ("cpu", "CPU of the request's thread")):
        off, on = figures["off"][what], figures["on"][what]
        for statistic, value in (("median", median), ("p95", lambda v: percentile(v, 95))):
            rows.append({
                "case": f"(b) POST /api/flows/hello/runs/ (no wait), {label}: {name}, "
                        f"{statistic}",
                "on": round(value(on), 3), "off": round(value(off), 3), "unit": "ms",
                "ratio": round(value(on) / value(off), 3),
                "target": f"< {TARGET}" if (what, statistic) == ("wall", "median") else None,
                "extra": f"{len(on)} requests each"})
    return rows


def postgres_answers(url: str) -> bool:
    """The database exists (created when the server answers and it is missing)."""
    try:
        import psycopg
        from psycopg import sql

        base, name = url.rsplit("/", 1)
        with psycopg.connect(f"{base}/postgres", autocommit=True, connect_timeout=3) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                [name]).fetchone():
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True
    except Exception as error:
        print(f"PostgreSQL skipped: {error}", file=sys.stderr)
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--database", help="run start on this database only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(start_latencies(args.child, args.rounds, args.requests)))
        return
    rows = asyncio.run(engine_rows(args.quick))
    if args.database:
        databases = [(args.database, "given database")]
    else:
        Path(SQLITE_URL.removeprefix("sqlite:///")).unlink(missing_ok=True)
        databases = [(SQLITE_URL, "SQLite")]
        if postgres_answers(POSTGRES_URL):
            databases.append((POSTGRES_URL, "PostgreSQL"))
    for url, label in databases:
        rows += start_rows(url, label, args.quick)
    report("tracing", rows, ["case", "on", "off", "unit", "ratio", "target", "extra"])


if __name__ == "__main__":
    main()
