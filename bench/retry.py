"""What a retry saves: retrying a failed run against running it again from the start.

    python bench/retry.py [--repeats N]

A 20-node chain (start, 13 `wait` nodes of 50 ms, an `http` node, 4 more waits, end) whose
`http` node (node 15) calls a local server that fails its first request. The first run fails
at node 15; then, from the same moment, the engine executes (in this process, with the
shared HTTP client) either

- a **retry**: a new run given `Checkpoint.from_events(the failed run's events).reusable()`
  (the same mechanism the platform uses): it takes over nodes 1–14 and executes 6 nodes;
- a **re-run**: the same document from the start: 20 nodes.

Columns: nodes executed, milliseconds (median of the repeats) and the ratio. Prints a table
and writes bench/results/retry.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import median, report  # noqa: E402
from engine import Checkpoint, Run, compile_plan  # noqa: E402
from engine.net import GuardedHttpClient  # noqa: E402
from engine.ports import Services  # noqa: E402
from engine.testing import CollectingSink  # noqa: E402

WAIT_S = 0.05


class FailingOnce(BaseHTTPRequestHandler):
    seen: set[str] = set()

    def do_GET(self) -> None:
        first = self.path not in self.seen
        self.seen.add(self.path)
        body = b'{"ok": true}'
        self.send_response(500 if first else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def chain(url: str) -> dict[str, Any]:
    ids = [f"w{i}" for i in range(2, 15)] + ["call"] + [f"w{i}" for i in range(16, 20)]
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "start"}]
    for node_id in ids:
        nodes.append({"id": "call", "type": "http", "params": {"url": url}} if node_id == "call"
                     else {"id": node_id, "type": "wait", "params": {"seconds": WAIT_S}})
    nodes.append({"id": "end", "type": "end"})
    order = ["start", *ids, "end"]
    return {"dsl": "astron/v1", "name": "Twenty", "nodes": nodes,
            "edges": [{"from": a, "to": b} for a, b in pairwise(order)]}


async def execute(plan: Any, services: Services, **kw: Any) -> tuple[Any, list, float]:
    sink = CollectingSink()
    began = time.perf_counter()
    result = await Run(plan, {}, sink=sink, services=services, **kw).execute()
    return result, sink.events, (time.perf_counter() - began) * 1000


async def measure(base: str, repeats: int) -> list[dict[str, Any]]:
    timings: dict[str, list[float]] = {"retry": [], "re-run": []}
    executed: dict[str, int] = {}
    async with GuardedHttpClient(allow_hosts=["127.0.0.1"]) as http:
        services = Services(http=http)
        for repeat in range(repeats):
            for how in ("retry", "re-run"):
                plan = compile_plan(chain(f"{base}/fail/{how}-{repeat}"))
                failed, events, _ = await execute(plan, services)
                assert failed.status == "failed", failed.error
                reuse = Checkpoint.from_events(events).reusable() if how == "retry" else None
                result, again, took = await execute(plan, services, reuse=reuse)
                assert result.status == "succeeded", result.error
                timings[how].append(took)
                executed[how] = sum(e["type"] == "node.started" for e in again)
    rerun = median(timings["re-run"])
    return [{"how": how, "nodes_executed": executed[how],
             "ms": round(median(timings[how]), 1),
             "vs_rerun": round(median(timings[how]) / rerun, 2),
             "repeats": repeats, "load": round(os.getloadavg()[0], 2)}
            for how in ("retry", "re-run")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 repeats")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), FailingOnce)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rows = asyncio.run(measure(f"http://127.0.0.1:{server.server_port}",
                                   2 if args.quick else args.repeats))
    finally:
        server.shutdown()
    report("retry", rows, ["how", "nodes_executed", "ms", "vs_rerun", "repeats", "load"])


if __name__ == "__main__":
    main()
