"""Live events benchmark: from a run's engine to websocket and server-sent event clients,
through a real server.

    python bench/events.py              # full run (in-memory layer, then channels_redis)
    python bench/events.py --quick      # smaller streams (CI smoke)
    python bench/events.py --postgres   # PostgreSQL instead of a temporary SQLite file

For each channel layer it starts `daphne -b 127.0.0.1 -p PORT bench.events_app:application`
(astron.asgi's application, plus one line per published batch with the time it was
published) on a fresh database, starts runs over the HTTP API and watches them with N
`websockets` clients in this process, authenticating with the token frame — and, with
`--transports` including `sse` (the default: both), the same cases again with N httpx
clients reading `GET /api/runs/<id>/stream/` (server-sent events), rows side by side.

Flows (each starts with a `wait` long enough for every client to connect and replay, so what
is measured is the live tail):
- burst: one `llm` node with the `echo` provider over a long prompt: one `node.chunk` per
  word, all emitted at once (the sink stores and publishes them 500 at a time).
- replay: a late client reading a finished burst run from the database.
- tokens: one `llm` node streaming from a local fake OpenAI-compatible server (TOKEN_SERVER)
  one token every 50, 20 or 10 ms: a model's stream, one or two events per batch.
- items: an `iteration` whose items each stream a short sentence through `echo` and then
  `wait` 0.4 s: batches of ~18 events.

Columns: events/s is per client, from the emission of the first measured event (its `ts`)
to the reception of the last; frames/s is over all clients; emit→recv is the latency from
the engine's emit (`ts`, millisecond precision, truncated: up to 1 ms too high) to the
client's reception; publish→recv from the sink handing the batch to the channel layer (after
batching and storing) to the reception; server_us/client_us_per_frame are the CPU time of
daphne (all threads) and of this process per frame, once every client had its first
frame. Every client must get seq 1..last exactly, ending with run.finished and close code
1000 (`complete`).

Prints a table and writes bench/results/events.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from bisect import bisect_right
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import websockets  # noqa: E402

from bench.common import percentile, report  # noqa: E402

PG_URL = "postgres://postgres@127.0.0.1:5432/astron_bench_events"

SETUP = r"""
import json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "astron.settings")
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0, interactive=False)
from django.contrib.auth.models import User
from flows import services
user = User.objects.create_user("bench")
_, key = services.create_token(user, "bench")
for slug, dsl in json.loads(sys.argv[1]).items():
    services.publish_flow(services.create_flow(user, dsl, slug=slug))
print(json.dumps({"key": key}))
"""


def burst_flow() -> dict[str, Any]:
    return {
        "dsl": "astron/v1", "name": "Burst",
        "nodes": [
            {"id": "start", "type": "start", "params": {"inputs": {
                "text": {"type": "string", "required": True},
                "hold": {"type": "number", "default": 1}}}},
            {"id": "hold", "type": "wait", "params": {"seconds": "{{start.hold}}"}},
            {"id": "say", "type": "llm",
             "params": {"provider": "echo", "model": "echo-1", "prompt": "{{start.text}}"}},
            {"id": "end", "type": "end", "inputs": {"words": "{{say.usage}}"}},
        ],
        "edges": [{"from": "start", "to": "hold"}, {"from": "hold", "to": "say"},
                  {"from": "say", "to": "end"}],
    }


def stream_flow() -> dict[str, Any]:
    body = {
        "nodes": [{"id": "s", "type": "start"},
                  {"id": "say", "type": "llm",
                   "params": {"provider": "echo", "model": "echo-1", "prompt": "{{item}}"}},
                  {"id": "gap", "type": "wait", "params": {"seconds": "{{start.gap}}"}},
                  {"id": "e", "type": "end", "inputs": {"text": "{{say.text}}"}}],
        "edges": [{"from": "s", "to": "say"}, {"from": "say", "to": "gap"},
                  {"from": "gap", "to": "e"}],
    }
    return {
        "dsl": "astron/v1", "name": "Stream",
        "nodes": [
            {"id": "start", "type": "start", "params": {"inputs": {
                "items": {"type": "array", "required": True},
                "hold": {"type": "number", "default": 1},
                "gap": {"type": "number", "default": 0.05}}}},
            {"id": "hold", "type": "wait", "params": {"seconds": "{{start.hold}}"}},
            {"id": "loop", "type": "iteration", "params": {
                "items": "{{start.items}}", "concurrency": 1, "body": body}},
            {"id": "end", "type": "end", "inputs": {"count": "{{loop.results}}"}},
        ],
        "edges": [{"from": "start", "to": "hold"}, {"from": "hold", "to": "loop"},
                  {"from": "loop", "to": "end"}],
    }


def tokens_flow() -> dict[str, Any]:
    """One `llm` node streaming from the local fake model server (TOKEN_SERVER), whose
    answer is `count` tokens, `interval` seconds apart, for the prompt "count interval"."""
    return {
        "dsl": "astron/v1", "name": "Tokens",
        "nodes": [
            {"id": "start", "type": "start", "params": {"inputs": {
                "prompt": {"type": "string", "required": True},
                "hold": {"type": "number", "default": 1}}}},
            {"id": "hold", "type": "wait", "params": {"seconds": "{{start.hold}}"}},
            {"id": "say", "type": "llm",
             "params": {"provider": "local", "model": "fake", "prompt": "{{start.prompt}}"}},
            {"id": "end", "type": "end", "inputs": {"words": "{{say.usage}}"}},
        ],
        "edges": [{"from": "start", "to": "hold"}, {"from": "hold", "to": "say"},
                  {"from": "say", "to": "end"}],
    }


# A fake OpenAI-compatible model server: streams `count` tokens `interval` seconds apart.
TOKEN_SERVER = r'''
import asyncio, json


async def handle(reader, writer):
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = json.loads(await reader.readexactly(length))
        count, interval = body["messages"][-1]["content"].split()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                     b"Connection: close\r\n\r\n")
        for number in range(int(count)):
            delta = {"choices": [{"index": 0, "delta": {"content": f"t{number} "}}]}
            writer.write(b"data: " + json.dumps(delta).encode() + b"\n\n")
            await writer.drain()
            await asyncio.sleep(float(interval))
        end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 2, "completion_tokens": int(count)}}
        writer.write(b"data: " + json.dumps(end).encode() + b"\n\ndata: [DONE]\n\n")
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


asyncio.run(main())
'''


def words(count: int) -> str:
    return " ".join(f"w{i}" for i in range(count))


# -- the server ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fresh_database(postgres: bool, folder: Path, name: str) -> str:
    if not postgres:
        path = folder / f"{name}.sqlite3"
        for stale in folder.glob(f"{name}.sqlite3*"):
            stale.unlink()
        return f"sqlite:///{path}"
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres",
                         autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS astron_bench_events")
        admin.execute("CREATE DATABASE astron_bench_events")
    return PG_URL


def server_environment(postgres: bool, folder: Path, name: str, redis_url: str,
                       **extra: str) -> dict[str, str]:
    """The environment of a benchmark's server: this one's, on a fresh database (and Redis
    with `postgres`), fresh keys, no sandbox pool, no rate that a benchmark would hit."""
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("DATABASE_URL", "REDIS_URL")}
    environment.update(SECRET_KEY=secrets.token_urlsafe(48),
                       SECRETS_KEY=secrets.token_urlsafe(32), CODE_WORKERS="0",
                       API_RATE="1000000/second", PYTHONUNBUFFERED="1",
                       DATABASE_URL=fresh_database(postgres, folder, name), **extra)
    if postgres:
        environment["REDIS_URL"] = redis_url
    return environment


class Server:
    """daphne serving `app` (bench.events_app unless told otherwise) on a free port, with its
    own environment; or `processes` of them sharing the port (`manage.py serve`)."""

    def __init__(self, environment: dict[str, str], folder: Path,
                 app: str = "bench.events_app:application", processes: int = 1):
        self.environment = environment
        self.app = app
        self.processes = processes  # more than one: `manage.py serve` (astron.asgi only)
        self.port = free_port()
        self.publish_log = folder / f"published-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = folder / f"daphne-{self.port}.log"

    def __enter__(self) -> Server:
        environment = {**self.environment, "BENCH_PUBLISH_LOG": str(self.publish_log)}
        with self.log.open("wb") as log:
            command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p",
                       str(self.port), self.app]
            if self.processes > 1:
                command = [sys.executable, "manage.py", "serve", "--processes",
                           str(self.processes), "--port", str(self.port)]
            self.process = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.http}/healthz", timeout=2).status_code == 200:
                    return self
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daphne did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.2)

    def __exit__(self, *exc: Any) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def published(self, run_id: str) -> tuple[list[int], list[float]]:
        """(first seq of each batch, its publish time), in seq order."""
        batches = []
        for line in self.publish_log.read_text().splitlines():
            run, first, _last, at = line.split()
            if run == run_id:
                batches.append((int(first), float(at)))
        batches.sort()
        return [b[0] for b in batches], [b[1] for b in batches]


# -- clients ---------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Started:
    """Counts clients that got their first frame; takes CPU readings once all have."""

    def __init__(self, clients: int, server_pid: int):
        self.waiting = clients
        self.server_pid = server_pid
        self.cpu: tuple[float, float] | None = None

    def first_frame(self) -> None:
        self.waiting -= 1
        if self.waiting == 0:
            self.cpu = (cpu_seconds(self.server_pid), time.process_time())


async def watch(url: str, key: str, started: Started | None = None,
                timeout: float = 300) -> dict[str, Any]:
    """Follow one run until the server closes; every frame with the time it arrived."""
    frames: list[tuple[float, str]] = []
    connected, code, error = None, None, None
    try:
        async with asyncio.timeout(timeout), websockets.connect(
                url, max_size=None, compression=None, ping_interval=None, open_timeout=60,
                close_timeout=10) as ws:
            await ws.send(json.dumps({"type": "auth", "token": key}))
            connected = time.time()
            with contextlib.suppress(websockets.ConnectionClosedOK):
                while True:
                    text = await ws.recv()
                    frames.append((time.time(), text))
                    if started is not None and len(frames) == 1:
                        started.first_frame()
            code = ws.close_code
    except (OSError, TimeoutError, websockets.WebSocketException) as failure:
        error = repr(failure)[:200]
    return {"frames": frames, "connected": connected or time.time(), "code": code,
            "error": error}


async def watch_sse(url: str, key: str, started: Started | None = None,
                    timeout: float = 300) -> dict[str, Any]:
    """The same, as server-sent events (`GET /api/runs/<id>/stream/`): each `data:` line is
    a frame; a stream the server ends (after run.finished) counts as closed with 1000."""
    frames: list[tuple[float, str]] = []
    connected, code, error = None, None, None
    try:
        async with asyncio.timeout(timeout), httpx.AsyncClient(timeout=60) as http, \
                http.stream("GET", url, headers={"Authorization": f"Token {key}"}) as response:
            connected = time.time()
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    frames.append((time.time(), line[6:]))
                    if started is not None and len(frames) == 1:
                        started.first_frame()
            code = 1000 if response.status_code == 200 else response.status_code
    except (OSError, TimeoutError, httpx.HTTPError) as failure:
        error = repr(failure)[:200]
    return {"frames": frames, "connected": connected or time.time(), "code": code,
            "error": error}


def parse_ts(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


async def scenario(server: Server, key: str, slug: str, inputs: dict[str, Any], watchers: int,
                   late: bool = False, transport: str = "ws") -> dict[str, Any]:
    headers = {"Authorization": f"Token {key}"}
    async with httpx.AsyncClient(base_url=server.http, headers=headers, timeout=60) as http:
        response = await http.post(f"/api/flows/{slug}/runs/", json={"inputs": inputs})
        response.raise_for_status()
        run_id = response.json()["id"]
        if late:  # a client that comes after the end: the whole run from the database
            for _ in range(600):
                run = (await http.get(f"/api/runs/{run_id}/")).json()
                if run["status"] in ("succeeded", "failed", "cancelled"):
                    break
                await asyncio.sleep(0.1)
    if transport == "sse":
        url, follow = f"{server.http}/api/runs/{run_id}/stream/", watch_sse
    else:
        url, follow = f"ws://127.0.0.1:{server.port}/ws/runs/{run_id}/", watch
    # Connect in waves, as a crowd of browsers would, not all in the same millisecond.
    started = Started(watchers, server.process.pid)
    tasks = []
    for number in range(watchers):
        tasks.append(asyncio.ensure_future(follow(url, key, started)))
        if number % 10 == 9:
            await asyncio.sleep(0.05)
    results = await asyncio.gather(*tasks)
    server_cpu, client_cpu = cpu_seconds(server.process.pid), time.process_time()
    outcome = analyse(server, run_id, results, late)
    if started.cpu is not None and outcome["frames"]:
        # From the moment every client had its first frame: the stream and the closes.
        outcome["server_us_per_frame"] = (server_cpu - started.cpu[0]) * 1e6 / outcome["frames"]
        outcome["client_us_per_frame"] = (client_cpu - started.cpu[1]) * 1e6 / outcome["frames"]
    return outcome


def analyse(server: Server, run_id: str, results: list[dict[str, Any]],
            late: bool) -> dict[str, Any]:
    batch_firsts, batch_times = server.published(run_id)
    complete = 0
    emit_latency: list[float] = []
    publish_latency: list[float] = []
    rates: list[float] = []
    total_frames = 0
    last_connected = max(r["connected"] for r in results)
    first_measured_emit = None
    window_end = 0.0
    counted = 0
    errors = [result["error"] for result in results if result["error"]]
    for error in sorted(set(errors)):
        print(f"  {errors.count(error)} client(s) failed: {error}", file=sys.stderr)
    for result in results:
        events = [(at, json.loads(text)) for at, text in result["frames"]]
        seqs = [event["seq"] for _, event in events]
        if (seqs == list(range(1, len(seqs) + 1)) and events
                and events[-1][1]["type"] == "run.finished" and result["code"] == 1000):
            complete += 1
        if late:
            measured = events
        else:
            # The live tail: what was emitted after the hold (every client was in by then).
            hold_end = next((event["seq"] for _, event in events
                             if event["type"] == "node.finished"
                             and event["data"]["node"] == "hold"), None)
            if hold_end is None:
                continue
            measured = [(at, event) for at, event in events if event["seq"] > hold_end]
        if not measured:
            continue
        total_frames += len(measured)
        counted = len(measured)
        start = measured[0][0] if late else parse_ts(measured[0][1]["ts"])
        first_measured_emit = start if first_measured_emit is None else min(
            first_measured_emit, start)
        window_end = max(window_end, measured[-1][0])
        rates.append(len(measured) / max(measured[-1][0] - start, 1e-9))
        if late:
            continue
        for at, event in measured:
            emit_latency.append((at - parse_ts(event["ts"])) * 1000)
            index = bisect_right(batch_firsts, event["seq"]) - 1
            if index >= 0:
                publish_latency.append((at - batch_times[index]) * 1000)
    if not late and first_measured_emit is not None and last_connected > first_measured_emit:
        print(f"  warning: a client connected {last_connected - first_measured_emit:.2f}s "
              "after the stream began: raise the hold", file=sys.stderr)
    span = max(window_end - (first_measured_emit or window_end), 1e-9)
    return {
        "events": counted,
        "frames": total_frames,
        "events_per_s": min(rates) if rates else None,
        "frames_per_s": total_frames / span,
        "batches": len(batch_firsts),
        "emit_p50_ms": percentile(emit_latency, 50) if emit_latency else None,
        "emit_p99_ms": percentile(emit_latency, 99) if emit_latency else None,
        "publish_p50_ms": percentile(publish_latency, 50) if publish_latency else None,
        "publish_p99_ms": percentile(publish_latency, 99) if publish_latency else None,
        "complete": f"{complete}/{len(results)}",
    }


# -- the runs ----------------------------------------------------------------------------------------


def cases(quick: bool) -> list[dict[str, Any]]:
    burst_one = 5_000 if quick else 20_000
    burst_many = 500 if quick else 2_000
    tokens = 100 if quick else 300
    stream_items = 10 if quick else 20
    return [
        # Throughput: one client, a burst of node.chunk events.
        {"flow": "burst", "watchers": 1, "slug": "burst",
         "inputs": {"text": words(burst_one), "hold": 1}},
        {"flow": "replay", "watchers": 1, "slug": "burst", "late": True,
         "inputs": {"text": words(burst_one), "hold": 0}},
        # Latency: a model streaming tokens (one node.chunk each), watched by 1 and 100.
        {"flow": "tokens 50/s", "watchers": 1, "slug": "tokens",
         "inputs": {"prompt": f"{tokens} 0.02", "hold": 1}},
        {"flow": "tokens 20/s", "watchers": 100, "slug": "tokens",
         "inputs": {"prompt": f"{tokens // 2} 0.05", "hold": 4}},
        {"flow": "tokens 50/s", "watchers": 100, "slug": "tokens",
         "inputs": {"prompt": f"{tokens} 0.02", "hold": 4}},
        {"flow": "tokens 100/s", "watchers": 100, "slug": "tokens",
         "inputs": {"prompt": f"{tokens} 0.01", "hold": 4}},
        # Batches of ~18 events (an iteration's items, 0.4 s apart), and a burst: fan-out.
        {"flow": "items 45/s", "watchers": 100, "slug": "stream",
         "inputs": {"items": [words(10)] * stream_items, "hold": 4, "gap": 0.4}},
        {"flow": "burst", "watchers": 100, "slug": "burst",
         "inputs": {"text": words(burst_many), "hold": 4}},
    ]


def start_token_server() -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen([sys.executable, "-c", TOKEN_SERVER], stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller streams (CI smoke)")
    parser.add_argument("--postgres", action="store_true",
                        help=f"use PostgreSQL ({PG_URL}, dropped and created) instead of "
                             "a temporary SQLite file")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14",
                        help="REDIS_URL for the channels_redis pass (cache: db N, layer: N+1)")
    parser.add_argument("--layers", default="memory,redis")
    parser.add_argument("--only", metavar="TEXT", help="only the cases whose flow contains "
                        "TEXT, e.g. 'tokens'")
    parser.add_argument("--watchers", type=int, help="only the cases with this many watchers")
    parser.add_argument("--transports", default="ws,sse",
                        help="ws (websocket), sse (server-sent events), or both")
    parser.add_argument("--keep", metavar="FOLDER",
                        help="keep databases and daphne's logs in FOLDER (default: a temporary "
                             "folder, removed)")
    args = parser.parse_args()

    rows = []
    token_server, token_port = start_token_server()
    with contextlib.ExitStack() as stack:
        stack.callback(token_server.wait, 10)
        stack.callback(token_server.terminate)
        if args.keep:
            folder = Path(args.keep).resolve()
            folder.mkdir(parents=True, exist_ok=True)
        else:
            folder = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="astron-bench-events-")))
        base = {key: value for key, value in os.environ.items()
                if key not in ("DATABASE_URL", "REDIS_URL")}
        base.update(SECRET_KEY=secrets.token_urlsafe(48), SECRETS_KEY=secrets.token_urlsafe(32),
                    CODE_WORKERS="0",
                    API_RATE="1000000/minute", PYTHONUNBUFFERED="1", LLM_PROVIDERS=json.dumps(
                        {"local": {"base_url": f"http://127.0.0.1:{token_port}/v1"}}))
        for layer in args.layers.split(","):
            environment = {**base,
                           "DATABASE_URL": fresh_database(args.postgres, folder, layer)}
            if layer == "redis":
                environment["REDIS_URL"] = args.redis_url
            setup = subprocess.run(
                [sys.executable, "-c", SETUP, json.dumps({"burst": burst_flow(),
                                                          "stream": stream_flow(),
                                                          "tokens": tokens_flow()})],
                cwd=ROOT, env=environment, capture_output=True, text=True, check=False)
            if setup.returncode:
                raise SystemExit(setup.stderr)
            key = json.loads(setup.stdout.strip().splitlines()[-1])["key"]
            with Server(environment, folder) as server:
                for case in cases(args.quick):
                    if (args.only and args.only not in case["flow"]) or (
                            args.watchers and args.watchers != case["watchers"]):
                        continue
                    for transport in args.transports.split(","):
                        print(f"{layer}: {case['flow']}, {case['watchers']} watcher(s), "
                              f"{transport}", file=sys.stderr)
                        result = asyncio.run(scenario(
                            server, key, case["slug"], case["inputs"], case["watchers"],
                            case.get("late", False), transport))
                        rows.append({"layer": layer, "transport": transport,
                                     "database": "postgres" if args.postgres else "sqlite",
                                     "flow": case["flow"], "watchers": case["watchers"],
                                     **result})
    report("events", rows, ["layer", "transport", "database", "flow", "watchers", "events",
                            "events_per_s",
                            "frames_per_s", "batches", "emit_p50_ms", "emit_p99_ms",
                            "publish_p50_ms", "publish_p99_ms", "server_us_per_frame",
                            "client_us_per_frame", "complete"])


if __name__ == "__main__":
    main()
