"""What triggers and secrets cost, as a user gets it.

    python bench/triggers.py                # SQLite, the embedded default
    python bench/triggers.py --postgres     # PostgreSQL + Redis (REDIS_URL db 14/15)
    python bench/triggers.py --quick        # 3 s a row

Through a real server (one daphne serving `astron.asgi:application`, the server `bin/dev up`
runs, on a fresh database with the sample `hello` published), N asyncio clients in this
process, each on its own pooled httpx connection, for a fixed time:

- `api start`: `POST /api/flows/hello/runs/` with a token (the baseline);
- `webhook delivery`: `POST /hooks/<id>/` signed as a sender signs (HMAC-SHA256 over `t.` and
  the body), each with its own `Astron-Delivery`: the hook's lookup, its signing secret
  decrypted, the signature checked, then the same run start;
- `api start, flow with a secret`: a flow whose `http` node names `{{secrets.PARTNER_KEY}}`
  (against a local server): the start's existence check of the secret, and the executor's
  read and decryption of it and redaction of every event.

Then, in this process on the same database: the schedule sweep (`fire_due`) over 200 due
schedules — milliseconds per scheduled run started — and the redactor's cost on a
`node.finished` event of about 1 KiB with no secret, one, and ten.

Prints a table and writes bench/results/triggers.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.common import percentile, report  # noqa: E402
from bench.events import SETUP, Server, server_environment  # noqa: E402
from bench.throughput import all_final  # noqa: E402


class Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def secret_flow(base: str) -> dict[str, Any]:
    return {"dsl": "astron/v1", "name": "With a secret", "nodes": [
        {"id": "start", "type": "start"},
        {"id": "call", "type": "http", "params": {
            "url": f"{base}/ok", "headers": {"Authorization": "Bearer {{secrets.PARTNER_KEY}}"}}},
        {"id": "end", "type": "end", "inputs": {"status": "{{call.status}}"}},
    ], "edges": [{"from": "start", "to": "call"}, {"from": "call", "to": "end"}]}


def sign(secret: str, body: bytes) -> str:
    import hashlib
    import hmac

    at = int(time.time())
    digest = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


async def drive(base: str, send: Any, clients: int, seconds: float, key: str
                ) -> dict[str, Any]:
    latencies: list[float] = []
    run_ids: list[str] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def client() -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            while time.monotonic() < deadline:
                began = time.monotonic()
                try:
                    answer = await send(http)
                except httpx.HTTPError:
                    errors += 1
                    continue
                latencies.append(time.monotonic() - began)
                if answer.status_code // 100 != 2:
                    errors += 1
                    continue
                body = answer.json()
                run_ids.append(body.get("run") or body["id"])

    began = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.monotonic() - began
    return {"requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "p99_ms": round(percentile(latencies, 99) * 1000, 1),
            "errors": errors, "final": await all_final(base, key, run_ids, 120)}


IN_PROCESS = r"""
import json, os, sys, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "astron.settings")
import django
django.setup()
from datetime import timedelta
from django.contrib.auth.models import User
from django.utils import timezone
from engine.redaction import Redactor
from flows.models import Flow, Run, Schedule
from flows.services import schedules

rows = []
flow = Flow.objects.get(slug="hello")
made = [schedules.create_schedule(flow, "* * * * *", "Europe/Paris", {"name": "Ada"})
        for _ in range(200)]
Schedule.objects.filter(pk__in=[s.pk for s in made]).update(
    next_fire_at=timezone.now() - timedelta(seconds=1))
began = time.perf_counter()
while schedules.fire_due():
    pass
took = time.perf_counter() - began
# This process's executor (started by the first run) sweeps too and takes some times: the
# runs are counted, not what this loop claimed.
started = Run.objects.filter(trigger__type="schedule").count()
rows.append({"row": "schedule sweep, 200 due", "count": started,
             "ms_each": round(took * 1000 / max(started, 1), 2)})

event = {"node": "call", "type": "http", "status": "succeeded", "attempt": 1,
         "outputs": {"status": 200, "headers": {f"x-header-{i}": "value " * 5 for i in range(12)},
                     "body": {"items": [{"id": i, "title": "a title " * 3} for i in range(10)]}}}
for count in (0, 1, 10):
    redactor = Redactor(named={f"KEY_{i}": f"sk-{i:04d}-" + "x" * 40 for i in range(count)})
    loops = 2000
    began = time.perf_counter()
    for _ in range(loops):
        (redactor.value(event) if redactor else event)
    rows.append({"row": f"redact a 1 KiB event, {count} secret(s)", "count": loops,
                 "ms_each": round((time.perf_counter() - began) * 1000 / loops, 4)})
print(json.dumps(rows))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s a row instead of 10")
    parser.add_argument("--postgres", action="store_true",
                        help="PostgreSQL (astron_bench_events, dropped and created) and Redis")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    seconds = 3 if args.quick else 10

    answers = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=answers.serve_forever, daemon=True).start()
    local = f"http://127.0.0.1:{answers.server_port}"
    flows = {"hello": json.loads((ROOT / "samples" / "hello.json").read_text()),
             "with-secret": secret_flow(local)}
    database = "postgres" if args.postgres else "sqlite"
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="astron-bench-triggers-")))
        environment = server_environment(args.postgres, folder, "triggers", args.redis_url,
                                         WEBHOOK_RATE="1000000/second",
                                         HTTP_ALLOW_HOSTS="127.0.0.1")
        setup = subprocess.run([sys.executable, "-c", SETUP, json.dumps(flows)], cwd=ROOT,
                               env=environment, capture_output=True, text=True, check=False)
        if setup.returncode:
            raise SystemExit(setup.stderr)
        key = json.loads(setup.stdout.strip().splitlines()[-1])["key"]
        auth = {"Authorization": f"Token {key}"}
        with Server(environment, folder, app="astron.asgi:application") as server:
            base = server.http
            httpx.post(f"{base}/api/secrets/", headers=auth,
                       json={"name": "PARTNER_KEY", "value": "sk-" + secrets.token_hex(24)})
            hook = httpx.post(f"{base}/api/flows/hello/webhooks/", headers=auth,
                              json={}).json()
            path = "/hooks/" + hook["url"].rsplit("/hooks/", 1)[1]
            body = json.dumps({"name": "Ada"}).encode()

            def api_start(slug: str, inputs: dict[str, Any]) -> Any:
                return lambda http: http.post(f"/api/flows/{slug}/runs/", headers=auth,
                                              json={"inputs": inputs})

            def delivery(http: httpx.AsyncClient) -> Any:
                return http.post(path, content=body, headers={
                    "Content-Type": "application/json",
                    "Astron-Signature": sign(hook["signing_secret"], body),
                    "Astron-Delivery": secrets.token_hex(8)})

            for name, send in (("api start", api_start("hello", {"name": "Ada"})),
                               ("webhook delivery", delivery),
                               ("api start, flow with a secret", api_start("with-secret", {}))):
                print(f"{name}, {args.clients} clients", file=sys.stderr)
                result = asyncio.run(drive(base, send, args.clients, seconds, key))
                rows.append({"database": database, "row": name, "clients": args.clients,
                             "seconds": seconds, **result})
        done = subprocess.run([sys.executable, "-c", IN_PROCESS], cwd=ROOT, env=environment,
                              capture_output=True, text=True, check=False)
        if done.returncode:
            raise SystemExit(done.stderr)
        for row in json.loads(done.stdout.strip().splitlines()[-1]):
            rows.append({"database": database, **row})
    answers.shutdown()
    rows = [{**row, "load": round(os.getloadavg()[0], 2)} for row in rows]
    report("triggers", rows, ["database", "row", "clients", "seconds", "requests_per_s",
                              "p50_ms", "p99_ms", "errors", "final", "count", "ms_each",
                              "load"])


if __name__ == "__main__":
    main()
