"""Plan cache benchmark: starting a run through the API with a cold cache, an L3, L2 and L1
hit; plan lookups per second per tier; flow lookups of unknown slugs; concurrent misses of
one plan with and without the single flight; run starts while Redis hangs, with and without
the circuit breaker (with REDIS_URL only).

    python bench/cache.py            # SQLite (in-process L2), and PostgreSQL + Redis when
                                     # REDIS_URL is set (DATABASE_URL, else astron_bench_cache)
    python bench/cache.py --quick    # fewer samples

Each database runs in a child process of its own (a fresh SQLite file; the PostgreSQL
database is created when missing and migrated). Runs are started with the hello sample
(with a description of its own, so that its cache keys are this benchmark's) through the
whole stack (middleware, token authentication, throttle, serializer) with Django's test
client, without `wait`, and the executor is left out (runs stay queued): what is measured
is starting a run, not executing it.

The run-start rows, each with what is cleared before every request (outside the timing):

- cold: process memory (plan L1, version map), L2 and `Document.plan`:
  the plan is compiled;
- L3 hit: plan L1, version map and L2: the plan comes from `Document.plan`;
- L2 hit: plan L1 and version map: the plan comes from L2;
- L1 hit: nothing.

The same cold and L1 rows for a chain of 100 template nodes show how the ratio grows with
the plan: for hello, compiling is about a millisecond, less than the rest of the request.

The flow lookup rows ask for a missing slug, a new one each time and the same one again,
directly (`flow_of`) and through the API (GET /api/flows/<slug>/).

The single flight rows: THREADS threads ask for one plan nothing has cached or compiled, at
the same moment, through `plan_cache.get` and through the loader it wraps (what each thread
would do without it): wall time until every thread has the plan, and compiles per miss.

The breaker rows (REDIS_URL set): warm run starts while the cache points at a socket that
accepts connections and never answers (a hung Redis), with the circuit breaker and with it
disabled, so that every Redis call waits for its socket timeout.

Targets: an L1 hit under 20 µs; a warm start (L1) at least 5× faster than a cold one.

For the tracing helper: `prepare()` (after Django is set up) gives a `Bench` with a client,
and `api_start_latency(bench, requests)` measures warm run starts through the API; call it
with tracing on and off.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import django_setup, percentile, report

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/astron_bench_cache"
OWNER = "cache-bench"
SLUG = "hello"
CHAIN = "chain"
CHAIN_STEPS = 100
BODY = json.dumps({"inputs": {"name": "Ada"}})


@dataclass
class Scale:
    starts: int  # requests per run-start case
    l1: int  # plan lookups per tier…
    l2: int
    l3: int
    compiles: int
    lookups: int  # flow lookups
    flights: int  # concurrent cold misses, each way
    hung: int  # run starts with Redis hung, with the breaker…
    hung_unguarded: int  # …and without


FULL = Scale(starts=300, l1=200_000, l2=3_000, l3=1_000, compiles=200, lookups=5_000,
             flights=20, hung=200, hung_unguarded=10)
QUICK = Scale(starts=60, l1=50_000, l2=500, l3=200, compiles=40, lookups=1_000, flights=5,
              hung=50, hung_unguarded=5)
THREADS = 20
HUNG_TIMEOUT_S = 0.25


# --- Setup -----------------------------------------------------------------------------------


def ensure_database(url: str) -> None:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = conninfo_to_dict(url)["dbname"]
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


@dataclass
class Bench:
    client: Any
    owner: Any
    digests: dict[str, str]  # slug → the published version's document hash

    @property
    def digest(self) -> str:
        return self.digests[SLUG]


def chain_document(steps: int) -> dict[str, Any]:
    """A flow of `steps` template nodes in a row: a bigger plan to compile than hello's."""
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "start", "params": {
        "inputs": {"name": {"type": "string", "required": True}}}}]
    edges = []
    previous = "start"
    for i in range(steps):
        nodes.append({"id": f"t{i}", "type": "template",
                      "params": {"template": "Hello, {{start.name}}!"}})
        edges.append({"from": previous, "to": f"t{i}"})
        previous = f"t{i}"
    nodes.append({"id": "end", "type": "end", "inputs": {"greeting": f"{{{{{previous}.text}}}}"}})
    edges.append({"from": previous, "to": "end"})
    return {"dsl": "astron/v1", "name": f"Chain of {steps}",
            "description": "bench/cache.py", "nodes": nodes, "edges": edges}


def prepare() -> Bench:
    """The benchmark's user, its published flows and an API client (Django set up)."""
    from django.contrib.auth.models import User
    from django.test import Client

    from flows import services
    from flows.models import ApiToken, Flow, Run

    owner, _ = User.objects.get_or_create(username=OWNER)
    Run.objects.filter(owner=owner).delete()
    hello = json.loads((ROOT / "samples" / "hello.json").read_text())
    hello["description"] = "Greets a person by name (bench/cache.py)."
    digests = {}
    for slug, dsl in ((SLUG, hello), (CHAIN, chain_document(CHAIN_STEPS))):
        flow = Flow.objects.filter(owner=owner, slug=slug).first()
        if flow is None:
            flow = services.create_flow(owner, dsl, slug=slug)
        version, _ = services.publish_flow(flow)
        digests[slug] = version.document_id
    ApiToken.objects.filter(user=owner, name="bench").delete()
    _, key = services.create_token(owner, "bench")
    client = Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Token {key}")
    return Bench(client, owner, digests)


def without_execution() -> None:
    """Runs stay queued: the executor thread would compete with the requests for the GIL."""
    from flows.services import runs

    runs._execute = lambda run_id: None


def start(bench: Bench, slug: str = SLUG) -> float:
    """One POST /api/flows/{slug}/runs/; its latency in ms."""
    began = time.perf_counter()
    response = bench.client.post(f"/api/flows/{slug}/runs/", BODY,
                                 content_type="application/json")
    elapsed = (time.perf_counter() - began) * 1000
    assert response.status_code == 201, response.content[:300]
    return elapsed


def api_start_latency(bench: Bench, requests: int = 200) -> dict[str, float]:
    """Warm run starts through the API (the tracing helper's hook): p50, p99, mean in ms."""
    for _ in range(10):
        start(bench)
    samples = [start(bench) for _ in range(requests)]
    return {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99),
            "mean_ms": sum(samples) / len(samples), "requests": requests}


# --- Cases -----------------------------------------------------------------------------------


def clearing(bench: Bench, level: str, slug: str = SLUG) -> Any:
    """What is cleared before each request of a run-start case."""
    from flows.cache import plan_cache
    from flows.lookup import version_map
    from flows.models import Document

    def clear() -> None:
        if level in ("cold", "l3", "l2"):
            plan_cache.clear_l1()
            version_map.clear()
        if level in ("cold", "l3"):
            plan_cache.forget(bench.digests[slug])
        if level == "cold":
            Document.objects.filter(hash=bench.digests[slug]).update(plan=None)

    return clear


def start_rows(bench: Bench, scale: Scale, database: str, slug: str = SLUG,
               levels: tuple[str, ...] = ("cold", "l3", "l2", "l1")) -> list[dict[str, Any]]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from flows.cache import cache_stats

    labels = {"cold": "cold: nothing cached, nothing compiled",
              "l3": "L3 hit: plan from Document.plan",
              "l2": "L2 hit: plan from the shared cache",
              "l1": "L1 hit: plan in process memory"}
    flow = "hello" if slug == SLUG else f"{CHAIN_STEPS}-node chain"
    for _ in range(20):
        start(bench, slug)  # the key's last use recorded, connections open, code paths warm
    # The levels take turns, request by request (in this order, each leaves what the next
    # needs: cold fills every tier, L3 refills L2, L2 refills L1), so that a change of load
    # on the machine weighs on all of them alike.
    clears = {level: clearing(bench, level, slug) for level in levels}
    samples: dict[str, list[float]] = {level: [] for level in levels}
    tiers = {level: dict.fromkeys(("l1.hit", "l2.hit", "l3.hit", "compile"), 0)
             for level in levels}
    for _ in range(scale.starts):
        for level in levels:
            clears[level]()
            before = cache_stats()
            samples[level].append(start(bench, slug))
            after = cache_stats()
            for tier in tiers[level]:
                tiers[level][tier] += after[f"plan.{tier}"] - before[f"plan.{tier}"]
    rows = []
    p50s = {}
    for level in levels:
        clears[level]()
        with CaptureQueriesContext(connection) as queries:
            start(bench, slug)
        p50s[level] = percentile(samples[level], 50)
        rows.append({"case": f"run start, {flow} ({database}): {labels[level]}", "unit": "ms",
                     "p50": round(p50s[level], 3),
                     "p99": round(percentile(samples[level], 99), 3),
                     "queries": sum(1 for q in queries.captured_queries
                                    if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))),
                     "requests": scale.starts, "tiers": tiers[level]})
    ratio = p50s["cold"] / p50s["l1"]
    rows.append({"case": f"run start, {flow} ({database}): cold p50 / L1-hit p50", "unit": "×",
                 "p50": round(ratio, 2), "target": "≥ 5", "met": ratio >= 5})
    return rows


def timed(operation: Any, count: int, before: Any = None) -> list[float]:
    """Latencies in µs of `operation` (after `before`, not timed)."""
    samples = []
    for _ in range(count):
        if before is not None:
            before()
        began = time.perf_counter()
        operation()
        samples.append((time.perf_counter() - began) * 1e6)
    return samples


def tier_rows(bench: Bench, scale: Scale, database: str) -> list[dict[str, Any]]:
    from flows.cache import plan_cache
    from flows.models import Document

    digest = bench.digest
    plan_cache.get(digest)

    def drop_l1() -> None:
        plan_cache.l1.pop(digest)

    def drop_l2() -> None:
        plan_cache.forget(digest)

    def drop_l3() -> None:
        plan_cache.forget(digest)
        Document.objects.filter(hash=digest).update(plan=None)

    # L1: one call is well under a microsecond of timer resolution: time batches of 100.
    batches = []
    for _ in range(scale.l1 // 100):
        began = time.perf_counter()
        for _ in range(100):
            plan_cache.get(digest)
        batches.append((time.perf_counter() - began) * 1e6 / 100)
    cases = [("L1 hit", batches, "< 20 µs"),
             ("L2 hit", timed(lambda: plan_cache.get(digest), scale.l2, drop_l1), ""),
             ("L3 hit", timed(lambda: plan_cache.get(digest), scale.l3, drop_l2), ""),
             ("compile", timed(lambda: plan_cache.get(digest), scale.compiles, drop_l3), "")]
    rows = []
    for label, samples, target in cases:
        mean = sum(samples) / len(samples)
        row = {"case": f"plan lookup ({database}): {label}", "unit": "µs",
               "p50": round(percentile(samples, 50), 2), "p99": round(percentile(samples, 99), 2),
               "per_s": round(1e6 / mean), "requests": len(samples) * (100 if label == "L1 hit"
                                                                       else 1)}
        if target:
            row["target"] = target
            row["met"] = percentile(samples, 50) < 20
        rows.append(row)
    return rows


def lookup_rows(bench: Bench, scale: Scale, database: str) -> list[dict[str, Any]]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from flows import services
    from flows.errors import ServiceError

    def refused(slugs: Any) -> Any:
        def lookup() -> None:
            try:
                services.flow_of(bench.owner, next(slugs))
            except ServiceError:
                return
            raise AssertionError("a missing slug was found")
        return lookup

    def api_404(slugs: Any) -> Any:
        def request() -> None:
            response = bench.client.get(f"/api/flows/{next(slugs)}/")
            assert response.status_code == 404, response.content[:300]
        return request

    def random_slugs() -> Any:
        return iter(lambda: f"x-{secrets.token_hex(8)}", None)

    def same_slug() -> Any:
        return iter(lambda: "x-never-created", None)

    known = timed(lambda: services.flow_of(bench.owner, SLUG, for_run=True), scale.lookups // 5)
    rows = [_lookup_row(database, "existing slug (one indexed query)", known, None)]
    for label, operation, count in (
            ("unknown slug, a new one each time → 404", refused(random_slugs()), scale.lookups),
            ("unknown slug, the same one again → 404", refused(same_slug()), scale.lookups),
            ("API GET /api/flows/<new unknown slug>/ → 404", api_404(random_slugs()),
             scale.starts),
            ("API GET /api/flows/<same unknown slug>/ → 404", api_404(same_slug()),
             scale.starts)):
        operation()  # whatever is built on first use is built
        with CaptureQueriesContext(connection) as queries:
            samples = timed(operation, count)
        statements = sum(1 for q in queries.captured_queries
                         if not q["sql"].startswith(("SAVEPOINT", "RELEASE")))
        rows.append(_lookup_row(database, label, samples, statements))
    return rows


def _lookup_row(database: str, label: str, samples: list[float],
                queries: int | None) -> dict[str, Any]:
    return {"case": f"flow lookup ({database}): {label}", "unit": "µs",
            "p50": round(percentile(samples, 50), 2), "p99": round(percentile(samples, 99), 2),
            "per_s": round(1e6 / (sum(samples) / len(samples))), "requests": len(samples),
            "queries": queries}


def flight_rows(bench: Bench, scale: Scale, database: str) -> list[dict[str, Any]]:
    """THREADS threads miss one cold plan (the 100-node chain: nothing cached, nothing
    compiled) at the same moment, through `plan_cache.get` (single flight) and through the
    loader it wraps (each thread on its own): wall time until all have it, compiles."""
    import threading

    from django.db import connection

    from flows.cache import cache_stats, plan_cache
    from flows.models import Document

    digest = bench.digests[CHAIN]
    ways = {"single flight": plan_cache.get, "each thread on its own": plan_cache._load}
    samples: dict[str, list[float]] = {way: [] for way in ways}
    compiles = dict.fromkeys(ways, 0)
    for _ in range(scale.flights):
        for way, load in ways.items():
            plan_cache.forget(digest)
            Document.objects.filter(hash=digest).update(plan=None)
            barrier = threading.Barrier(THREADS + 1)

            def ask(load: Any = load, barrier: threading.Barrier = barrier) -> None:
                try:
                    barrier.wait()
                    load(digest)
                finally:
                    connection.close()

            threads = [threading.Thread(target=ask) for _ in range(THREADS)]
            for thread in threads:
                thread.start()
            before = cache_stats()["plan.compile"]
            barrier.wait()
            began = time.perf_counter()
            for thread in threads:
                thread.join()
            samples[way].append((time.perf_counter() - began) * 1000)
            compiles[way] += cache_stats()["plan.compile"] - before
    return [{"case": f"{THREADS} threads miss one cold plan ({database}): {way}", "unit": "ms",
             "p50": round(percentile(samples[way], 50), 2),
             "p99": round(percentile(samples[way], 99), 2),
             "compiles": round(compiles[way] / scale.flights, 1), "requests": scale.flights}
            for way in ways]


def breaker_rows(bench: Bench, scale: Scale, database: str) -> list[dict[str, Any]]:
    """Run starts (warm) while Redis accepts connections and never answers, with the circuit
    breaker and with it disabled (every Redis call waits for its socket timeout)."""
    import socket

    from django.test import override_settings

    from flows.cache import redis_breaker

    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(512)  # connections complete in the kernel; nothing ever reads or answers
    options = {"SERIALIZER": "django_redis.serializers.msgpack.MSGPackSerializer",
               "SOCKET_CONNECT_TIMEOUT": HUNG_TIMEOUT_S, "SOCKET_TIMEOUT": HUNG_TIMEOUT_S}
    hung = {"default": {"BACKEND": "django_redis.cache.RedisCache", "KEY_PREFIX": "astron",
                        "LOCATION": f"redis://127.0.0.1:{hole.getsockname()[1]}/0",
                        "OPTIONS": options}}
    rows = []
    try:
        for label, requests, always in (("with the breaker", scale.hung, False),
                                        ("breaker disabled", scale.hung_unguarded, True)):
            redis_breaker.reset()
            if always:
                redis_breaker.allow = lambda: True  # type: ignore[method-assign]
            with override_settings(CACHES=hung):
                samples = [start(bench) for _ in range(requests)]
            redis_breaker.__dict__.pop("allow", None)
            rows.append({"case": f"run start, Redis hung ({HUNG_TIMEOUT_S * 1000:.0f} ms "
                                 f"socket timeout) ({database}): {label}", "unit": "ms",
                         "p50": round(percentile(samples, 50), 2),
                         "p99": round(percentile(samples, 99), 2), "requests": requests})
    finally:
        redis_breaker.reset()
        hole.close()
    return rows


def child(database: str, quick: bool) -> None:
    """Measure on the database of this process's environment; print the rows as JSON."""
    django_setup()
    from flows.models import Run

    without_execution()
    scale = QUICK if quick else FULL
    bench = prepare()
    rows = [*start_rows(bench, scale, database),
            *start_rows(bench, scale, database, CHAIN, ("cold", "l1")),
            *tier_rows(bench, scale, database), *lookup_rows(bench, scale, database),
            *flight_rows(bench, scale, database)]
    if os.environ.get("REDIS_URL"):
        rows += breaker_rows(bench, scale, database)
    Run.objects.filter(owner=bench.owner).delete()
    print(json.dumps(rows))


def run_child(database: str, env: dict[str, str], quick: bool) -> list[dict[str, Any]]:
    command = [sys.executable, __file__, "--child", database] + (["--quick"] if quick else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"the {database} pass failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.quick)
        return
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(64))
    os.environ.setdefault("SECRETS_KEY", secrets.token_urlsafe(32))
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    sqlite = Path(f"/tmp/astron_bench_cache_{os.getpid()}.sqlite3")
    rows = []
    try:
        rows += run_child("SQLite, in-process L2",
                          {**base, "DATABASE_URL": f"sqlite:///{sqlite}"}, args.quick)
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{sqlite}{suffix}").unlink(missing_ok=True)
    if os.environ.get("REDIS_URL"):
        url = os.environ.get("DATABASE_URL") or POSTGRES_URL
        ensure_database(url)
        rows += run_child("PostgreSQL + Redis",
                          {**base, "DATABASE_URL": url, "REDIS_URL": os.environ["REDIS_URL"]},
                          args.quick)
    report("cache", rows, ["case", "p50", "p99", "unit", "per_s", "queries", "compiles",
                           "requests", "target", "met"])


if __name__ == "__main__":
    main()
