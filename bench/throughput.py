"""Runs per second through a real server, as a user gets them: HTTP clients, many at once.

    python bench/throughput.py                  # SQLite, the embedded default
    python bench/throughput.py --postgres       # PostgreSQL + Redis (REDIS_URL db 14/15)
    python bench/throughput.py --quick          # 3 s a row (CI smoke)
    python bench/throughput.py --postgres --processes 2   # two serving processes, one port

Starts one daphne serving `astron.asgi:application` (the same server `bin/dev up` runs) on a
fresh database with the samples `hello` and `fanout` published, then for each row drives it
with N asyncio clients in this process, each sending `POST /api/flows/<slug>/runs/` one
after another for a fixed time, over its own pooled httpx connection:

- `hello` with `"wait": 10` at 1, 8, 32 and 128 clients: the run's end reaches the request;
- `hello` without `wait` at 32 clients: starting runs, then waiting until every run is
  final and counting them;
- `fanout` with `wait` at 8 clients: three 1 s waits in parallel per run;
- `asks` with `wait` at 8 clients: three `llm` nodes (the echo provider) one after another,
  each a node with side effects, whose start waits until the events before it are stored.

With `--workers N` (and `--postgres`), runs execute in N Celery workers on the broker
(`RUN_EXECUTOR=celery`, docs/scaling.md), the serving processes executing none; a
`fanout` row at 32 clients is added, and with 2 or more workers the takeover time after
kill -9 of a worker holding 100 runs (each waits 5 s), with the default 30 s lease.

With `--ceiling`, two rows at 32 clients that start no run, to show what the serving stack
itself gives on this machine: `GET /healthz` (Django's middleware and a JSON answer, no
database) and `GET /api/runs/<id>/` (a token, the throttle and one run read back and
serialised). A run start cannot be cheaper than either.

Columns: runs/s (requests answered per second over the row), p50/p99 latency, timeouts
(a `wait` answered with a run not yet final), errors (any answer but 2xx) and what they were
(`refused`: status codes, or the client's exception), and `final`:
whether every run the row started was final afterwards (nothing lost). The clients share
the machine's two cores with the server: the figures are what one machine gives, not the
server alone.

Prints a table and writes bench/results/throughput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.common import percentile, report  # noqa: E402
from bench.events import SETUP, Server, server_environment  # noqa: E402

FINAL = ("succeeded", "failed", "cancelled")


def rows_to_run(quick: bool) -> list[dict[str, Any]]:
    return [
        {"flow": "hello", "clients": 1, "wait": True},
        {"flow": "hello", "clients": 8, "wait": True},
        {"flow": "hello", "clients": 32, "wait": True},
        {"flow": "hello", "clients": 128, "wait": True},
        {"flow": "hello", "clients": 32, "wait": False},
        {"flow": "fanout", "clients": 8, "wait": True},
        {"flow": "asks", "clients": 8, "wait": True},
    ]


INPUTS = {"hello": {"name": "Ada"}, "fanout": {"topic": "rivers"}, "asks": {}, "hold": {}}

HOLD = {"dsl": "astron/v1", "name": "Hold",
        "nodes": [{"id": "start", "type": "start"},
                  {"id": "hold", "type": "wait", "params": {"seconds": 5}},
                  {"id": "end", "type": "end", "inputs": {"done": "yes"}}],
        "edges": [{"from": "start", "to": "hold"}, {"from": "hold", "to": "end"}]}


class Workers:
    """`count` Celery workers (`celery -A astron worker`) with the server's environment."""

    def __init__(self, environment: dict[str, str], folder: Path, count: int) -> None:
        self.environment, self.folder, self.count = environment, folder, count
        self.processes: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Workers:
        for n in range(self.count):
            log = self.folder / f"worker-{n}.log"
            with log.open("wb") as output:
                self.processes.append(subprocess.Popen(
                    [sys.executable, "-m", "celery", "-A", "astron", "worker", "-n",
                     f"bench{n}@%h", "--without-mingle", "--without-gossip", "-l", "info"],
                    cwd=ROOT, env=self.environment, stdout=output, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        while not all(b" ready." in (self.folder / f"worker-{n}.log").read_bytes()
                      for n in range(self.count)):
            if time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError("the workers did not start")
            time.sleep(0.2)
        return self

    def __exit__(self, *exc: Any) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def takeover_after_kill(base: str, key: str, workers: Workers, database_url: str) -> float:
    """Start 100 runs that wait 5 s, kill -9 the worker holding most of them, and return
    the seconds until another worker holds every one of them."""
    import psycopg

    async def start() -> list[str]:
        async with httpx.AsyncClient(base_url=base, timeout=30,
                                     headers={"Authorization": f"Token {key}"}) as http:
            answers = await asyncio.gather(*(http.post("/api/flows/hold/runs/",
                                                       json={"inputs": {}})
                                             for _ in range(100)))
        return [answer.json()["id"] for answer in answers]

    run_ids = asyncio.run(start())
    with psycopg.connect(database_url.replace("postgres://", "postgresql://"),
                         autocommit=True) as db:
        def holders() -> dict[str, int]:
            rows = db.execute("SELECT lease_owner, count(*) FROM flows_run WHERE id = ANY(%s) "
                              "AND status IN ('queued', 'running') GROUP BY 1",
                              [run_ids]).fetchall()
            return {owner: count for owner, count in rows}

        deadline = time.monotonic() + 30
        while sum(n for owner, n in holders().items() if owner) < 100:
            if time.monotonic() > deadline:
                raise RuntimeError("the runs did not all start")
            time.sleep(0.1)
        busiest = max(holders().items(), key=lambda item: item[1])[0]
        pid = int(busiest.split(":")[1])
        victim = next(p for p in workers.processes if p.pid == pid)
        victim.kill()
        killed = time.monotonic()
        while any(owner == busiest for owner in holders()):
            time.sleep(0.05)
        return round(time.monotonic() - killed, 2)

ASKS = {
    "dsl": "astron/v1", "name": "Three questions to a model",
    "nodes": [{"id": "start", "type": "start"},
              *({"id": f"ask{n}", "type": "llm",
                 "params": {"provider": "echo", "prompt": f"question {n}"}} for n in (1, 2, 3)),
              {"id": "end", "type": "end", "inputs": {"text": "{{ask3.text}}"}}],
    "edges": [{"from": "start", "to": "ask1"}, {"from": "ask1", "to": "ask2"},
              {"from": "ask2", "to": "ask3"}, {"from": "ask3", "to": "end"}],
}


async def drive(base: str, key: str, flow: str, clients: int, wait: bool,
                seconds: float) -> dict[str, Any]:
    body = {"inputs": INPUTS[flow], **({"wait": 10} if wait else {})}
    latencies: list[float] = []
    run_ids: list[str] = []
    timeouts = errors = 0
    refused: dict[str, int] = {}  # what the errors were: status codes, or the transport's
    deadline = time.monotonic() + seconds

    async def client() -> None:
        nonlocal timeouts, errors
        async with httpx.AsyncClient(base_url=base, timeout=30,
                                     headers={"Authorization": f"Token {key}"}) as http:
            while time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    answer = await http.post(f"/api/flows/{flow}/runs/", json=body)
                except httpx.HTTPError as error:
                    errors += 1
                    refused[type(error).__name__] = refused.get(type(error).__name__, 0) + 1
                    continue
                latencies.append(time.monotonic() - started)
                if answer.status_code // 100 != 2:
                    errors += 1
                    status = str(answer.status_code)
                    refused[status] = refused.get(status, 0) + 1
                    continue
                run = answer.json()
                run_ids.append(run["id"])
                if wait and run["status"] not in FINAL:
                    timeouts += 1

    began = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.monotonic() - began
    final = await all_final(base, key, run_ids)
    return {"runs": len(run_ids), "runs_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "p99_ms": round(percentile(latencies, 99) * 1000, 1),
            "timeouts": timeouts, "errors": errors,
            "refused": " ".join(f"{n}×{what}" for what, n in sorted(refused.items())) or "-",
            "final": final}


async def drive_reads(base: str, key: str, path: str, clients: int,
                      seconds: float) -> dict[str, Any]:
    """`clients` clients sending `GET path` one after another: the ceiling rows."""
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def client() -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=base, timeout=30,
                                     headers={"Authorization": f"Token {key}"}) as http:
            while time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    answer = await http.get(path)
                except httpx.HTTPError:
                    errors += 1
                    continue
                latencies.append(time.monotonic() - started)
                errors += answer.status_code // 100 != 2

    began = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.monotonic() - began
    return {"runs": 0, "runs_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "p99_ms": round(percentile(latencies, 99) * 1000, 1),
            "timeouts": 0, "errors": errors, "refused": "-", "final": True}


async def one_run(base: str, key: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=30,
                                 headers={"Authorization": f"Token {key}"}) as http:
        answer = await http.post("/api/flows/hello/runs/",
                                 json={"inputs": INPUTS["hello"], "wait": 10})
        return answer.json()["id"]


async def all_final(base: str, key: str, run_ids: list[str], patience_s: float = 60) -> bool:
    """Whether every run started is final (waiting up to `patience_s` for the stragglers)."""
    pending = set(run_ids)
    deadline = time.monotonic() + patience_s
    async with httpx.AsyncClient(base_url=base, timeout=30,
                                 headers={"Authorization": f"Token {key}"}) as http:
        while pending and time.monotonic() < deadline:
            for run_id in list(pending)[:200]:
                answer = await http.get(f"/api/runs/{run_id}/")
                if answer.status_code == 200 and answer.json()["status"] in FINAL:
                    pending.discard(run_id)
            if pending:
                await asyncio.sleep(0.5)
    return not pending


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s a row instead of 15")
    parser.add_argument("--postgres", action="store_true",
                        help="PostgreSQL (astron_bench_events, dropped and created) and Redis")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--seconds", type=float, help="seconds a row (default 15, quick 3)")
    parser.add_argument("--only", help="only the rows of this flow (hello, fanout, asks)")
    parser.add_argument("--workers", type=int, default=0,
                        help="Celery workers executing the runs (RUN_EXECUTOR=celery; needs "
                             "--postgres and the broker at --broker-url)")
    parser.add_argument("--broker-url", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--worker-concurrency", type=int,
                        help="RUN_WORKER_CONCURRENCY of each worker (default 200)")
    parser.add_argument("--ceiling", action="store_true",
                        help="also the rows that start no run: GET /healthz and GET a run")
    parser.add_argument("--processes", type=int, default=1,
                        help="serving processes (more than 1: manage.py serve; needs "
                             "--postgres)")
    args = parser.parse_args()
    seconds = args.seconds or (3 if args.quick else 15)

    flows = {name: json.loads((ROOT / "samples" / f"{name}.json").read_text())
             for name in ("hello", "fanout")}
    flows["asks"] = ASKS
    flows["hold"] = HOLD
    rows = []
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="astron-bench-throughput-")))
        environment = server_environment(args.postgres, folder, "throughput", args.redis_url)
        if args.workers and not args.postgres:
            raise SystemExit("--workers needs --postgres (PostgreSQL and Redis)")
        if args.workers:
            environment.update(RUN_EXECUTOR="celery", CELERY_BROKER_URL=args.broker_url,
                               RUN_QUEUE=f"astron.bench.{secrets.token_hex(4)}")
            if args.worker_concurrency:
                environment["RUN_WORKER_CONCURRENCY"] = str(args.worker_concurrency)
        setup = subprocess.run([sys.executable, "-c", SETUP, json.dumps(flows)], cwd=ROOT,
                               env=environment, capture_output=True, text=True, check=False)
        if setup.returncode:
            raise SystemExit(setup.stderr)
        key = json.loads(setup.stdout.strip().splitlines()[-1])["key"]
        if args.processes > 1 and not args.postgres:
            raise SystemExit("--processes needs --postgres (PostgreSQL and Redis)")
        with Server(environment, folder, app="astron.asgi:application",
                    processes=args.processes) as server, \
                Workers(environment, folder, args.workers) as workers:
            extra = [{"flow": "fanout", "clients": 32, "wait": True}] if args.workers else []
            for row in rows_to_run(args.quick) + extra:
                if args.only and row["flow"] != args.only:
                    continue
                print(f"{row['flow']}, {row['clients']} client(s), "
                      f"{'wait' if row['wait'] else 'no wait'}", file=sys.stderr)
                result = asyncio.run(drive(server.http, key, row["flow"], row["clients"],
                                           row["wait"], seconds))
                rows.append({"database": "postgres" if args.postgres else "sqlite",
                             "processes": args.processes, "workers": args.workers,
                             "concurrency": args.worker_concurrency,
                             "flow": row["flow"], "clients": row["clients"],
                             "wait": row["wait"], "seconds": seconds, **result})
            if args.ceiling:
                run_id = asyncio.run(one_run(server.http, key))
                for name, path in (("GET /healthz", "/healthz"),
                                   ("GET a run", f"/api/runs/{run_id}/")):
                    print(f"{name}, 32 clients", file=sys.stderr)
                    result = asyncio.run(drive_reads(server.http, key, path, 32, seconds))
                    rows.append({"database": "postgres" if args.postgres else "sqlite",
                                 "processes": args.processes, "workers": args.workers,
                                 "flow": name, "clients": 32, "wait": False,
                                 "seconds": seconds, **result})
            if args.workers >= 2 and not args.worker_concurrency:  # 100 runs must fit
                print("takeover after kill -9 of a worker holding runs", file=sys.stderr)
                taken_s = takeover_after_kill(server.http, key, workers,
                                              environment["DATABASE_URL"])
                rows.append({"database": "postgres", "processes": args.processes,
                             "workers": args.workers, "flow": "takeover after kill -9",
                             "takeover_s": taken_s})
    report("throughput", rows, ["database", "processes", "workers", "concurrency", "flow",
                                "clients", "wait", "runs", "runs_per_s", "p50_ms", "p99_ms",
                                "timeouts", "errors", "refused", "final", "takeover_s"])


if __name__ == "__main__":
    main()
