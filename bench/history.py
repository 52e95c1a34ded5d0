"""History benchmark: the runs list API over a million runs, and runs started per second.

    python bench/history.py            # 1,000,000 runs, ~10,000,000 node runs, pages 1,000 deep
    python bench/history.py --quick    # 50,000 runs, ~500,000 node runs, pages 100 deep
    python bench/history.py --refill   # fill again even when the data is there

It needs PostgreSQL: DATABASE_URL when set, else postgres://postgres@127.0.0.1:5432/astron_bench
(astron_bench_quick with --quick, so that a quick pass never replaces the big fill), created
when missing and migrated. The fill is psycopg COPY into the real schema (every index and
constraint in place, as in production): 100 owners, the measured one (`history-000`) with 15%
of the runs (30% in quick mode), several flows each, mostly succeeded runs, created over six
months, ~10 node runs per run; then VACUUM (ANALYZE). It is skipped when the database already
holds that many runs.

Then, in this process through the whole stack (middleware, token authentication, throttle,
filters, cursor pagination, serializer, renderer) with Django's test client:

- GET /api/runs/: the first page, and the page `depth` deep reached by following `next`, with
  no filter and with each filter; p50/p99 over repeated requests of the same URL, queries
  per request, and EXPLAIN (ANALYZE, BUFFERS) of the page query;
- side by side, the same page as LIMIT/OFFSET through the ORM with the same filters (query
  and serializer, and the cursor page's query and serializer at the same level);
- POST /api/flows/hello/runs/ with `wait` (the hello sample), one client and four client
  threads, in a child process on a fresh SQLite file and on the PostgreSQL database.

Prints a table and writes bench/results/history.json (with the plans).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import re
import resource
import secrets
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, django_setup, percentile, report

ROOT = Path(__file__).resolve().parents[1]

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/astron_bench"
SQLITE_URL = "sqlite:////tmp/astron_bench.sqlite3"
OWNER_PREFIX = "history-"
MEASURED = "history-000"
STARTER = "history-starter"
PAGE = 50
DAY_US = 86_400 * 1_000_000
TARGET_MS = 25.0
TARGET_QUERIES = 3


@dataclass(frozen=True)
class Scale:
    runs: int
    measured_runs: int  # of the measured owner
    depth: int  # the deep page, by cursor
    requests: int  # timed requests per case
    starts: int  # runs started per throughput case


QUICK = Scale(runs=50_000, measured_runs=15_000, depth=100, requests=50, starts=100)
FULL = Scale(runs=1_000_000, measured_runs=150_000, depth=1_000, requests=200, starts=400)


# --- Setup -------------------------------------------------------------------------------------


def ensure_database(url: str) -> None:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = conninfo_to_dict(url)["dbname"]
    with psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        print(f"created database {name}", file=sys.stderr)


def client_for(user: Any, first: bool = True) -> Any:
    """A test client with a new key of `user` (the keys of earlier passes revoked first)."""
    from django.test import Client

    from flows import services
    from flows.models import ApiToken

    if first:
        ApiToken.objects.filter(user=user, name="bench").delete()
    _, key = services.create_token(user, "bench")
    return Client(HTTP_HOST="localhost", HTTP_AUTHORIZATION=f"Token {key}")


# --- The fill ----------------------------------------------------------------------------------

MEASURED_FLOWS = [("orders", 0.50), ("invoices", 0.20), ("onboarding", 0.10),
                  ("support-triage", 0.08), ("reports", 0.05), ("alerts", 0.04),
                  ("billing-sync", 0.02), ("nightly-export", 0.01)]

RUN_COLUMNS = ("id", "owner_id", "flow_id", "version_id", "version_number", "document_id",
               "status", "inputs", "outputs", "answer", "error", "waiting", "pending_answers",
               "answer_serial", "cancel_requested", "wake_at", "recovered",
               "resumed_after_crash", "created_at", "started_at", "finished_at", "elapsed_ms",
               "last_seq", "lease_owner", "lease_expires_at", "idempotency_key",
               "request_hash", "parent_run_id", "parent_node", "depth")
NODE_COLUMNS = ("run_id", "node", "type", "status", "attempts", "inputs", "outputs", "error",
                "logs", "started_at", "finished_at", "elapsed_ms", "position")
N = "\\N"  # NULL in COPY's text format


def chain_document(name: str, steps: int) -> dict[str, Any]:
    """start → step1 … stepN (templates) → end: steps + 2 nodes, so steps + 2 node runs."""
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "start", "params": {"inputs": {
        "name": {"type": "string", "required": True},
        "priority": {"type": "number", "default": 1}}}}]
    previous = "start"
    for number in range(1, steps + 1):
        ref = "{{start.name}}" if previous == "start" else "{{" + previous + ".text}}"
        nodes.append({"id": f"step{number}", "type": "template",
                      "params": {"template": f"{ref} {number}"}})
        previous = f"step{number}"
    nodes.append({"id": "end", "type": "end", "inputs": {"text": "{{" + previous + ".text}}"}})
    edges = [{"from": a["id"], "to": b["id"]} for a, b in pairwise(nodes)]
    return {"dsl": "astron/v1", "name": name, "nodes": nodes, "edges": edges}


@dataclass
class FlowInfo:
    id: int
    versions: list[tuple[int, int, str]]  # (version id, number, document hash), oldest first
    nodes: list[tuple[str, str]]  # (node id, type) in order


def fill_needed(scale: Scale) -> bool:
    from flows.models import NodeRun, Run

    return Run.objects.count() != scale.runs or not NodeRun.objects.exists()


def clear(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        others = conn.execute("SELECT count(*) FROM auth_user WHERE username NOT LIKE %s",
                              [OWNER_PREFIX + "%"]).fetchone()[0]
        if others:
            raise SystemExit(f"the database has {others} users besides the benchmark's: "
                             "refusing to empty it (use a database of its own)")
        conn.execute("TRUNCATE flows_noderun, flows_runevent, flows_run, flows_flowversion, "
                     "flows_flow, flows_document, flows_apitoken, auth_user CASCADE")


def create_flows(scale: Scale, rng: random.Random) -> tuple[list[Any], list[list[FlowInfo]],
                                                             list[list[float]]]:
    """The owners, their flows (published, some twice) and each owner's weights of flows."""
    from django.contrib.auth.models import User

    from flows import services
    from flows.models import Flow

    owners = User.objects.bulk_create([User(username=f"{OWNER_PREFIX}{i:03d}")
                                       for i in range(100)])
    flows: list[list[FlowInfo]] = []
    weights: list[list[float]] = []
    for index, owner in enumerate(owners):
        if index == 0:
            named = MEASURED_FLOWS
        else:
            count = rng.randint(3, 7)
            named = [(f"flow-{k}", 1 / (k + 1)) for k in range(count)]
        infos = []
        for slug, _ in named:
            steps = rng.randint(6, 10)  # 8 to 12 nodes, ~10 on average
            dsl = chain_document(f"{owner.username} {slug}", steps)
            flow = services.create_flow(owner, dsl, slug=slug)
            services.publish_flow(flow)
            if rng.random() < 0.3:
                dsl["description"] = "second version"
                services.update_flow(flow, dsl)
                services.publish_flow(flow)
            versions = [(v.pk, v.number, v.document_id)
                        for v in flow.versions.order_by("number")]
            infos.append(FlowInfo(flow.pk, versions,
                                  [(n["id"], n["type"]) for n in dsl["nodes"]]))
        flows.append(infos)
        total = sum(w for _, w in named)
        weights.append([w / total for _, w in named])
    Flow.objects.filter(owner__in=owners).update(
        created_at=_datetime(_now_us() - 200 * DAY_US))
    return owners, flows, weights


def _now_us() -> int:
    return int(time.time() * 1_000_000)


def _datetime(us: int) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(us / 1_000_000, tz=UTC)


class Stamps:
    """Microseconds since the epoch as PostgreSQL timestamptz text, fast."""

    def __init__(self) -> None:
        self.seconds: dict[int, str] = {}

    def __call__(self, us: int) -> str:
        second, fraction = divmod(us, 1_000_000)
        base = self.seconds.get(second)
        if base is None:
            if len(self.seconds) > 50_000:
                self.seconds.clear()
            base = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second))
            self.seconds[second] = base
        return f"{base}.{fraction:06d}+00"


def generate(scale: Scale, owners: list[Any], flows: list[list[FlowInfo]],
             weights: list[list[float]], rng: random.Random, chunk: int = 5_000):
    """Chunks of (run lines, node run lines), runs in creation order as production writes them."""
    end = _now_us() - 3600 * 1_000_000
    start = end - 180 * DAY_US
    recent = end - 30 * DAY_US
    created = sorted(rng.randrange(start, end) for _ in range(scale.runs))
    # The measured owner holds exactly measured_runs; the others a Zipf-like share each.
    others = [1 / (k ** 0.8) for k in range(1, len(owners))]
    owner_of = [0] * scale.measured_runs + rng.choices(
        range(1, len(owners)), weights=others, k=scale.runs - scale.measured_runs)
    rng.shuffle(owner_of)
    stamp = Stamps()
    runs: list[str] = []
    nodes: list[str] = []
    for i, created_us in enumerate(created):
        owner_index = owner_of[i]
        infos = flows[owner_index]
        flow = infos[0] if len(infos) == 1 else rng.choices(infos, weights[owner_index])[0]
        draw = rng.random()
        if draw < 0.10:
            version_id, version_number, document = N, N, flow.versions[-1][2]  # the draft
        elif draw < 0.15 and len(flow.versions) > 1:
            version_id, version_number, document = flow.versions[0]
        else:
            version_id, version_number, document = flow.versions[-1]
        draw = rng.random()
        if created_us > recent and draw < 0.1:
            status = "waiting"
        elif draw < 0.90:
            status = "succeeded"
        elif draw < 0.97:
            status = "failed"
        else:
            status = "cancelled"
        run_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        name = f"Customer {rng.randrange(100_000)}"
        priority = rng.randrange(1, 4)
        inputs = f'{{"name": "{name}", "priority": {priority}}}'
        steps = len(flow.nodes)
        stop = steps if status == "succeeded" else rng.randrange(1, steps - 1)
        started_us = created_us + rng.randrange(2_000, 40_000)
        at = started_us
        text = name
        error = N
        for position, (node, kind) in enumerate(flow.nodes):
            if position > stop:
                if status == "waiting":
                    break
                nodes.append(f"{run_id}\t{node}\t{kind}\tskipped\t0\t{N}\t{N}\t{N}\t{N}\t{N}\t"
                             f"{N}\t{N}\t{position * 2 + 1}\n")
                continue
            elapsed = rng.randrange(50, 400) if kind != "end" else 20
            if kind == "template":
                text = f"{text} {position}"
                node_in, node_out = f'{{"text": "{text[:40]}"}}', f'{{"text": "{text}"}}'
            elif kind == "start":
                node_in, node_out = inputs, inputs
            else:
                node_in, node_out = f'{{"text": "{text}"}}', f'{{"text": "{text}"}}'
            node_status, attempts, node_error = "succeeded", 1, N
            if position == stop and status != "succeeded":
                node_out = N
                if status == "failed":
                    node_status, attempts = "failed", rng.randrange(1, 4)
                    node_error = (f'{{"code": "node_failed", "message": "{node} failed after '
                                  f'{attempts} attempts: upstream returned 503"}}')
                    error = (f'{{"code": "node_failed", "node": "{node}", "message": "{node} '
                             f'failed after {attempts} attempts"}}')
                elif status == "cancelled":
                    node_status = "cancelled"
                    node_error = ('{"code": "cancelled", "message": "the run stopped before '
                                  'this node finished"}')
                    error = '{"code": "cancelled", "message": "the run was cancelled"}'
                else:
                    node_status, elapsed = "waiting", 0
            finished = N if node_status == "waiting" else stamp(at + elapsed)
            nodes.append(f"{run_id}\t{node}\t{kind}\t{node_status}\t{attempts}\t{node_in}\t"
                         f"{node_out}\t{node_error}\t{N}\t{stamp(at)}\t{finished}\t"
                         f"{elapsed / 1000:.3f}\t{position * 2 + 1}\n")
            at += elapsed + rng.randrange(100, 2_000)
        finished_at = N if status == "waiting" else stamp(at)
        waiting = "[]"
        if status == "waiting":
            waiting = (f'[{{"node": "{flow.nodes[stop][0]}", "question": "Approve {name}?", '
                       '"options": [{"id": "yes", "label": "Yes"}, {"id": "no", "label": "No"}],'
                       ' "timeout_at": null}]')
        outputs = f'{{"text": "{text}"}}' if status == "succeeded" else N
        keyed = rng.random() < 0.05
        runs.append("\t".join((
            run_id, str(owners[owner_index].pk), str(flow.id), str(version_id),
            str(version_number), document, status, inputs, outputs, N, error, waiting, "[]",
            "0", "t" if status == "cancelled" else "f", N, "0", "0", stamp(created_us),
            stamp(started_us), finished_at, f"{(at - started_us) / 1000:.3f}",
            str(2 + 2 * min(stop + 1, steps)), "", N, f"request-{i}" if keyed else N,
            f"{i:064x}" if keyed else "", N, "", "0")) + "\n")
        if len(runs) >= chunk:
            yield runs, nodes
            runs, nodes = [], []
    if runs:
        yield runs, nodes


def fill(url: str, scale: Scale) -> dict[str, Any]:
    """COPY the runs and node runs in; returns the timings and counts."""
    import psycopg
    from psycopg.copy import QueuedLibpqWriter

    from flows.models import NodeRun, Run

    rng = random.Random(20_250_101)
    clear(url)
    began = time.perf_counter()
    owners, flows, weights = create_flows(scale, rng)
    flows_s = time.perf_counter() - began
    run_extra, run_tail = later_columns(Run, RUN_COLUMNS)
    node_extra, node_tail = later_columns(NodeRun, (*NODE_COLUMNS, "id"))

    # The runs first, then their node runs (foreign keys), each COPY through a writer thread.
    run_copy = f"COPY flows_run ({', '.join((*RUN_COLUMNS, *run_extra))}) FROM STDIN"
    node_copy = f"COPY flows_noderun ({', '.join((*NODE_COLUMNS, *node_extra))}) FROM STDIN"
    nodes_file = Path(f"/tmp/astron_bench_nodes_{os.getpid()}.tsv")
    counted_runs = counted_nodes = 0
    copy_began = time.perf_counter()
    with psycopg.connect(url) as conn, nodes_file.open("w") as spool:
        with conn.cursor() as cur, cur.copy(run_copy, writer=QueuedLibpqWriter(cur)) as copy:
            for runs, nodes in generate(scale, owners, flows, weights, rng):
                copy.write(with_tail("".join(runs), run_tail))
                spool.write(with_tail("".join(nodes), node_tail))
                counted_runs += len(runs)
                counted_nodes += len(nodes)
        conn.commit()
    runs_s = time.perf_counter() - copy_began
    node_began = time.perf_counter()
    # In slices of ~256 MiB, each its own transaction: the deferred foreign-key checks of a
    # transaction stay bounded.
    with psycopg.connect(url) as conn, nodes_file.open("rb") as spool:
        rest, block = b"", b"-"
        while block:
            copied = 0
            with conn.cursor() as cur, cur.copy(node_copy, writer=QueuedLibpqWriter(cur)) as copy:
                while copied < 256 << 20:
                    block = spool.read(8 << 20)
                    if not block:
                        break
                    block = rest + block
                    cut = block.rfind(b"\n") + 1
                    rest = block[cut:]
                    copy.write(block[:cut])
                    copied += cut
            conn.commit()
        assert not rest
    nodes_file.unlink()
    nodes_s = time.perf_counter() - node_began
    vacuum_began = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("flows_run", "flows_noderun", "flows_flow", "flows_flowversion",
                      "flows_document", "auth_user"):
            conn.execute(f"VACUUM (ANALYZE) {table}")
        conn.execute("CHECKPOINT")
    vacuum_s = time.perf_counter() - vacuum_began
    return {"runs": counted_runs, "node_runs": counted_nodes, "flows_s": round(flows_s, 1),
            "copy_runs_s": round(runs_s, 1), "copy_node_runs_s": round(nodes_s, 1),
            "vacuum_analyze_s": round(vacuum_s, 1),
            "total_s": round(time.perf_counter() - began, 1)}


def later_columns(model: Any, known: tuple[str, ...]) -> tuple[list[str], str]:
    """Columns of `model` the generator does not write (fields added since), and the text
    that gives each its default at the end of every line."""
    names, values = [], []
    for field in model._meta.concrete_fields:
        if field.column in known:
            continue
        if not field.has_default() and not field.null:
            raise SystemExit(f"{model.__name__}.{field.name} has no default: teach "
                             "bench/history.py a value for it")
        value = field.get_default() if field.has_default() else None
        if value is None:
            text = N
        else:
            text = ("t" if value else "f") if isinstance(value, bool) else (
                json.dumps(value) if isinstance(value, dict | list) else str(value))
            text = text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
        names.append(field.column)
        values.append(text)
    return names, "".join("\t" + value for value in values)


def with_tail(lines: str, tail: str) -> str:
    return lines.replace("\n", tail + "\n") if tail else lines


def sizes(url: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT relname, pg_size_pretty(pg_table_size(oid)), "
            "pg_size_pretty(pg_indexes_size(oid)), reltuples::bigint FROM pg_class "
            "WHERE relname IN ('flows_run', 'flows_noderun')").fetchall()
    return {name: f"{rows:,} rows, table {table}, indexes {indexes}"
            for name, table, indexes, rows in rows}


# --- The list ----------------------------------------------------------------------------------


def timed(function: Any, count: int, cpu: list[float] | None = None) -> list[float]:
    """Wall-clock milliseconds of `count` calls (and this thread's CPU milliseconds in `cpu`)."""
    samples = []
    for _ in range(count):
        began, began_cpu = time.perf_counter(), time.thread_time()
        function()
        samples.append((time.perf_counter() - began) * 1000)
        if cpu is not None:
            cpu.append((time.thread_time() - began_cpu) * 1000)
    return samples


def page_path(link: str) -> str:
    parts = urlsplit(link)
    return f"{parts.path}?{parts.query}"


def cursor_position(path: str) -> Any:
    """The created_at a cursor points at (DRF's cursor: base64 of o=…&r=…&p=…)."""
    from flows.models import Run

    token = parse_qs(urlsplit(path).query)["cursor"][0]
    fields = parse_qs(base64.b64decode(token.encode()).decode())
    return Run._meta.get_field("created_at").to_python(fields["p"][0])


def explain(sql: str) -> list[str]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        return [row[0] for row in cursor.fetchall()]


def summarize(plan: list[str]) -> str:
    """`Limit ← Incremental Sort ← Index Scan run_owner_recent; 57 buffers; 0.21 ms`."""
    steps = []
    for number, line in enumerate(plan):
        text = line.strip()
        if text.startswith("->"):
            text = text[2:].strip()
        elif number:
            continue
        text = text.split("  (")[0]
        text = re.sub(r"^(Index Only Scan|Index Scan|Index Scan Backward|Bitmap Index Scan) "
                      r"(Backward )?using (\w+).*", r"\1 \2\3", text).replace("  ", " ")
        text = re.sub(r" on \w+( \w+)?$", "", text)
        steps.append(text)
    buffers = next((line.strip() for line in plan if line.strip().startswith("Buffers:")), "")
    hit = sum(int(n) for n in re.findall(r"(?:hit|read)=(\d+)", buffers.split("temp")[0]))
    ms = next((line.split(":")[1].strip() for line in plan if "Execution Time" in line), "")
    return f"{' ← '.join(steps)}; {hit} buffers; {ms}"


def page_queryset(owner: Any, params: dict[str, str]) -> Any:
    """The view's queryset with the same filters, as the ORM writes it (for the baselines)."""
    from flows.api.serializers import RunSerializer
    from flows.models import Flow, Run

    queryset = RunSerializer.rows(Run.objects.filter(owner=owner))
    if "flow" in params:
        queryset = queryset.filter(flow=Flow.objects.get(owner=owner, slug=params["flow"]))
    if "status" in params:
        queryset = queryset.filter(status=params["status"])
    if "created_after" in params:
        queryset = queryset.filter(created_at__gt=params["created_after"])
    if "created_before" in params:
        queryset = queryset.filter(created_at__lt=params["created_before"])
    return queryset.order_by("-created_at", "-pk")


def list_case(client: Any, owner: Any, label: str, params: dict[str, str], depth: int,
              requests: int) -> list[dict[str, Any]]:
    """The first page and the page `depth` deep (or the last one) of one filter."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from flows.api.serializers import RunSerializer

    first = "/api/runs/" + (f"?{urlencode(params)}" if params else "")
    path, page, walk = first, 1, []
    body = client.get(first).json()
    while page < depth and body["next"]:
        path = page_path(body["next"])
        began = time.perf_counter()
        response = client.get(path)
        walk.append((time.perf_counter() - began) * 1000)
        body = response.json()
        page += 1
    deep_ids = [row["id"] for row in body["results"]]
    rows = []
    for at, url in [(1, first)] + ([(page, path)] if page > 1 else []):
        for _ in range(5):
            client.get(url)
        load = os.getloadavg()[0]
        cpu: list[float] = []
        counts: list[int] = []

        def get(url: str = url, counts: list[int] = counts) -> None:
            # Every query of every timed request counted (a wrapper costs next to nothing).
            counted = [0]

            def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
                counted[0] += 1
                return execute(sql, params, many, context)

            with connection.execute_wrapper(count):
                response = client.get(url)
            assert response.status_code == 200, response.content[:300]
            counts.append(counted[0])

        samples = timed(get, requests, cpu)
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        page_sql = next(q["sql"] for q in queries.captured_queries
                        if 'FROM "flows_run"' in q["sql"])
        plan = explain(page_sql)

        queryset = page_queryset(owner, params)
        offset = (at - 1) * PAGE
        position = cursor_position(url) if at > 1 else None

        def by_cursor(queryset=queryset, position=position) -> list[Any]:
            rows = queryset.filter(created_at__lt=position) if position else queryset
            return RunSerializer(list(rows[:PAGE + 1])[:PAGE], many=True).data

        def by_offset(queryset=queryset, offset=offset) -> list[Any]:
            return RunSerializer(list(queryset[offset:offset + PAGE + 1])[:PAGE],
                                 many=True).data

        by_cursor(), by_offset()
        cursor_ms = timed(by_cursor, requests)
        offset_ms = timed(by_offset, requests)
        if at > 1:
            assert [row["id"] for row in by_offset()] == deep_ids, "cursor and offset differ"
        offset_plan = explain(connection.ops.compose_sql(
            *queryset[offset:offset + PAGE + 1].query.sql_with_params()))
        p99 = percentile(samples, 99)
        met = p99 < TARGET_MS and max(counts) <= TARGET_QUERIES
        where = "first page" if at == 1 else (f"page {at:,}" + (" (last)" if at < depth else ""))
        rows.append({
            "case": f"{label}, {where}", "p50": round(percentile(samples, 50), 2),
            "p99": round(p99, 2), "unit": "ms", "queries": max(counts),
            "cpu_p50": round(percentile(cpu, 50), 2),
            "orm_p50": round(percentile(cursor_ms, 50), 2),
            "baseline_p50": round(percentile(offset_ms, 50), 2),
            "baseline_p99": round(percentile(offset_ms, 99), 2),
            "ratio": round(percentile(offset_ms, 50) / percentile(cursor_ms, 50), 1),
            "target": f"p99 < {TARGET_MS:.0f} ms, ≤ {TARGET_QUERIES} queries",
            "met": "yes" if met else "NO",
            "plan": summarize(plan), "baseline_plan": summarize(offset_plan),
            "explain": plan, "baseline_explain": offset_plan, "offset": offset,
            "walk_p50": round(percentile(walk, 50), 2) if at > 1 and walk else None,
            "walk_p99": round(percentile(walk, 99), 2) if at > 1 and walk else None,
            "query_counts": {n: counts.count(n) for n in sorted(set(counts))},
            "load_average": round(load, 2), "page_sql": page_sql})
        print(f"  {rows[-1]['case']}: p50 {rows[-1]['p50']} ms, p99 {rows[-1]['p99']} ms, "
              f"{rows[-1]['queries']} queries; offset p50 {rows[-1]['baseline_p50']} ms",
              file=sys.stderr, flush=True)
    return rows


def list_rows(scale: Scale) -> list[dict[str, Any]]:
    from django.contrib.auth.models import User
    from django.db.models import Max, Min

    from flows.models import Run

    owner = User.objects.get(username=MEASURED)
    client = client_for(owner)
    span = Run.objects.filter(owner=owner).aggregate(first=Min("created_at"),
                                                     last=Max("created_at"))
    middle = (span["first"] + (span["last"] - span["first"]) / 2).isoformat()
    recent = (span["last"] - (span["last"] - span["first"]) / 30).isoformat()
    cases = [
        ("no filter", {}),
        ("flow=orders", {"flow": "orders"}),
        ("flow=billing-sync", {"flow": "billing-sync"}),
        ("status=succeeded", {"status": "succeeded"}),
        ("status=failed", {"status": "failed"}),
        ("status=waiting", {"status": "waiting"}),
        ("created_after=(midpoint)", {"created_after": middle}),
        ("created_before=(midpoint)", {"created_before": middle}),
        ("flow=orders&status=failed", {"flow": "orders", "status": "failed"}),
        ("status=succeeded&created_after=(last 6 days)",
         {"status": "succeeded", "created_after": recent}),
    ]
    rows = []
    for label, params in cases:
        rows.extend(list_case(client, owner, label, params, scale.depth, scale.requests))
    rows.append(recovery_row(scale))
    return rows


def recovery_row(scale: Scale) -> dict[str, Any]:
    """The executor's maintenance query (every 5 s in every serving process) at this size."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from flows.services import lifecycle

    lifecycle.runs_needing_a_worker()
    samples = timed(lifecycle.runs_needing_a_worker, max(10, scale.requests // 5))
    with CaptureQueriesContext(connection) as queries:
        lifecycle.runs_needing_a_worker()
    plan = explain(queries.captured_queries[0]["sql"])
    return {"case": "executor: runs needing a worker (every 5 s)", "unit": "ms",
            "p50": round(percentile(samples, 50), 2), "p99": round(percentile(samples, 99), 2),
            "queries": 1, "plan": summarize(plan), "explain": plan,
            "page_sql": queries.captured_queries[0]["sql"]}


# --- Runs started per second -------------------------------------------------------------------


def start_rows(scale: Scale, database: str) -> list[dict[str, Any]]:
    """Runs of the hello sample started through the API with `wait` (in this process)."""
    from django.contrib.auth.models import User
    from django.db import connection, connections
    from django.test.utils import CaptureQueriesContext

    from flows import services
    from flows.execution.executor import executor
    from flows.models import Flow, Run

    user, _ = User.objects.get_or_create(username=STARTER)
    Run.objects.filter(owner=user).delete()
    hello = json.loads((ROOT / "samples" / "hello.json").read_text())
    flow = Flow.objects.filter(owner=user, slug="hello").first()
    if flow is None:
        flow = services.create_flow(user, hello, slug="hello")
    services.publish_flow(flow)
    client = client_for(user)
    body = json.dumps({"inputs": {"name": "Ada"}, "wait": 5})

    def start(client: Any = client) -> float:
        began = time.perf_counter()
        response = client.post("/api/flows/hello/runs/", body, content_type="application/json")
        elapsed = (time.perf_counter() - began) * 1000
        assert response.status_code == 201, response.content[:300]
        assert response.json()["status"] == "succeeded", response.content[:300]
        return elapsed

    for _ in range(10):
        start()
    counts = []
    for _ in range(10):
        with CaptureQueriesContext(connection) as queries:
            start()
        counts.append(len(queries))
    rows = []
    for threads in (1, 4):
        latencies: list[float] = []
        per_thread = scale.starts // threads
        clients = [client] if threads == 1 else [client_for(user, first=False)
                                                 for _ in range(threads)]

        def work(mine: Any, latencies: list[float] = latencies,
                 per_thread: int = per_thread) -> None:
            try:
                latencies.extend(start(mine) for _ in range(per_thread))
            finally:
                if mine is not client:
                    connections.close_all()

        began, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        if threads == 1:
            work(client)
        else:
            workers = [threading.Thread(target=work, args=(mine,)) for mine in clients]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        wall = time.perf_counter() - began
        now = resource.getrusage(resource.RUSAGE_SELF)
        cpu_ms = ((now.ru_utime - usage.ru_utime) + (now.ru_stime - usage.ru_stime)) * 1000
        assert len(latencies) == per_thread * threads, "a client thread failed"
        rows.append({"case": f"start hello with wait, {threads} client"
                             f"{'s' if threads > 1 else ''} ({database})",
                     "engine": round(len(latencies) / wall, 1), "unit": "runs/s",
                     "p50": round(percentile(latencies, 50), 2),
                     "p99": round(percentile(latencies, 99), 2),
                     "queries": max(counts), "requests": len(latencies),
                     "cpu_ms_per_run": round(cpu_ms / len(latencies), 1)})
    executor.stop()
    Run.objects.filter(owner=user).delete()
    return rows


def start_rows_in_child(scale: Scale, url: str, database: str, quick: bool) -> list[dict]:
    if url.startswith("sqlite:"):
        for suffix in ("", "-wal", "-shm"):
            Path(urlsplit(url).path + suffix).unlink(missing_ok=True)
    env = {**os.environ, "DATABASE_URL": url}
    command = [sys.executable, __file__, "--starts", database] + (["--quick"] if quick else [])
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True)
    line = next(line for line in reversed(done.stdout.splitlines()) if line.startswith("ROWS "))
    return json.loads(line[5:])


# --- Main --------------------------------------------------------------------------------------

COLUMNS = ["case", "p50", "p99", "unit", "queries", "cpu_p50", "orm_p50", "baseline_p50", "baseline_p99",
           "ratio", "engine", "cpu_ms_per_run", "target", "met", "plan"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--refill", action="store_true")
    parser.add_argument("--starts", help=argparse.SUPPRESS)  # the child of the start cases
    args = parser.parse_args()
    scale = QUICK if args.quick else FULL
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(64))  # shared with the children
    os.environ.setdefault("SECRETS_KEY", secrets.token_urlsafe(32))

    if args.starts:
        django_setup(os.environ["DATABASE_URL"])
        print("ROWS " + json.dumps(start_rows(scale, args.starts)), flush=True)
        return

    url = os.environ.get("DATABASE_URL") or DEFAULT_URL + ("_quick" if args.quick else "")
    ensure_database(url)
    django_setup(url)
    from django.contrib.auth.models import User

    from flows.models import NodeRun, Run

    from_before = _previous_fill(scale)
    Run.objects.filter(owner__username=STARTER).delete()
    if args.refill or fill_needed(scale):
        print(f"filling {scale.runs:,} runs …", file=sys.stderr, flush=True)
        filled = fill(url, scale)
        print(f"filled: {filled}", file=sys.stderr, flush=True)
    else:
        filled = from_before or {"runs": Run.objects.count(),
                                 "node_runs": NodeRun.objects.count(), "skipped": True}
    measured = Run.objects.filter(owner__username=MEASURED).count()
    rows: list[dict[str, Any]] = [{
        "case": f"fill {filled['runs']:,} runs + {filled['node_runs']:,} node runs "
                "(COPY, then VACUUM ANALYZE)",
        "engine": filled.get("total_s"), "unit": "s", "target": "minutes, not hours",
        "fill": filled}]
    print(f"listing the runs of {MEASURED} ({measured:,} of {User.objects.count()} users' "
          f"{Run.objects.count():,}) …", file=sys.stderr, flush=True)
    load = {"before": os.getloadavg()}
    rows += list_rows(scale)
    load["after_list"] = os.getloadavg()
    from django.db import connections

    connections.close_all()
    print("starting runs …", file=sys.stderr, flush=True)
    rows += start_rows_in_child(scale, SQLITE_URL, "SQLite", args.quick)
    rows += start_rows_in_child(scale, url, "PostgreSQL", args.quick)
    path = report("history", rows, COLUMNS)
    result = json.loads(path.read_text())
    result.update({"mode": "quick" if args.quick else "full", "load_average": load,
                   "postgresql": server_settings(url), "measured_owner": MEASURED,
                   "measured_owner_runs": measured, "page_size": PAGE, "depth": scale.depth,
                   "requests_per_case": scale.requests, "sizes": sizes(url),
                   "database": re.sub(r"//[^@]*@", "//…@", url)})
    path.write_text(json.dumps(result, indent=2))


def server_settings(url: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(url) as conn:
        found = {"version": conn.execute("SHOW server_version").fetchone()[0]}
        for name in ("shared_buffers", "work_mem", "effective_cache_size", "random_page_cost",
                     "max_wal_size", "synchronous_commit", "jit"):
            found[name] = conn.execute(f"SHOW {name}").fetchone()[0]
    return found


def _previous_fill(scale: Scale) -> dict[str, Any] | None:
    """The timings of the fill that made the data there (a run that skips the fill)."""
    path = RESULTS / "history.json"
    if not path.exists():
        return None
    for row in json.loads(path.read_text()).get("rows", []):
        fill = row.get("fill")
        if fill and fill.get("runs") == scale.runs and "total_s" in fill:
            return fill
    return None


if __name__ == "__main__":
    main()
