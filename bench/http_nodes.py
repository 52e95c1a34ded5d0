"""HTTP node benchmark: `http` nodes through the engine against a local server.

    python bench/http_nodes.py            # full run
    python bench/http_nodes.py --quick    # fewer repetitions (CI smoke)

The server is a minimal asyncio HTTP/1.1 keep-alive server in a child process (so it does
not share the benchmark's CPU-bound event loop), on 127.0.0.1. Each case runs the same
flows twice: with the shared, pooled guarded client, and with a fresh guarded client per
request (same address checks, no connection reuse) as the baseline. Throughput is http
nodes finished per second (start and end nodes not counted); the ratio is engine/baseline,
so above 1 means pooling pays.

Prints a table and writes bench/results/http_nodes.json.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import report
from engine import Run, compile_plan
from engine.net import GuardedHttpClient
from engine.ports import HttpRequest, HttpResponse, Services

ALLOW = ["127.0.0.1"]

SERVER = r'''
import asyncio

BODY = b'{"ok":true,"items":[1,2,3]}'
ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
          % (len(BODY), BODY))


async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            writer.write(ANSWER)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=2048)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


asyncio.run(main())
'''


class FreshClientPerRequest:
    """The baseline: a new guarded client (new pool, new connection) for every request."""

    async def send(self, request: HttpRequest) -> HttpResponse:
        async with GuardedHttpClient(ALLOW) as client:
            return await client.send(request)


def fan_out_flow(url: str, width: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "start"}]
    nodes += [{"id": f"h{i}", "type": "http", "params": {"url": url, "query": {"i": str(i)}}}
              for i in range(width)]
    nodes.append({"id": "end", "type": "end"})
    edges = [{"from": "start", "to": f"h{i}"} for i in range(width)]
    edges += [{"from": f"h{i}", "to": "end"} for i in range(width)]
    return {"dsl": "astron/v1", "name": "fan-out", "settings": {"concurrency": min(width, 1024)},
            "nodes": nodes, "edges": edges}


def chain_flow(url: str, length: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "start"}]
    nodes += [{"id": f"h{i}", "type": "http",
               "params": {"method": "POST", "url": url, "body": {"step": i}}}
              for i in range(length)]
    nodes.append({"id": "end", "type": "end"})
    ids = [n["id"] for n in nodes]
    return {"dsl": "astron/v1", "name": "chain", "nodes": nodes,
            "edges": [{"from": a, "to": b} for a, b in pairwise(ids)]}


async def nodes_per_second(document: dict[str, Any], http: Any, runs: int,
                           ) -> tuple[float, float]:
    """http nodes per second in the fastest of `runs` runs (the least disturbed by the
    machine: the server shares its CPUs), and this process's CPU milliseconds per node over
    all runs (less sensitive to other load on the machine)."""
    plan = compile_plan(document)
    count = len(document["nodes"]) - 2
    services = Services(http=http)
    warm = await Run(plan, {}, services=services).execute()  # connections, caches
    assert warm.status == "succeeded", warm.error
    best = float("inf")
    cpu = time.process_time()
    for _ in range(runs):
        started = time.perf_counter()
        result = await Run(plan, {}, services=services).execute()
        best = min(best, time.perf_counter() - started)
        assert result.status == "succeeded", result.error
    cpu_ms = (time.process_time() - cpu) * 1000 / (count * runs)
    return count / best, cpu_ms


async def raw_httpx_per_second(url: str, width: int, runs: int) -> float:
    """The floor: the same fan-out with one plain pooled httpx client, no engine, no checks."""
    import httpx

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=256,
                                                     max_keepalive_connections=64)) as client:
        await asyncio.gather(*(client.get(url, params={"i": i}) for i in range(width)))
        best = float("inf")
        for _ in range(runs):
            started = time.perf_counter()
            responses = await asyncio.gather(*(client.get(url, params={"i": i})
                                               for i in range(width)))
            best = min(best, time.perf_counter() - started)
            assert all(r.status_code == 200 for r in responses)
        return width / best


async def start_server() -> tuple[asyncio.subprocess.Process, int]:
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", SERVER,
                                                   stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 10)
    return process, int(line)


def _row(case: str, engine: float, baseline: float, target: str,
         unit: str = "nodes/s") -> dict[str, Any]:
    def shown(value: float) -> float:
        return round(value) if unit == "nodes/s" else round(value, 3)

    return {"case": case, "engine": shown(engine), "baseline": shown(baseline),
            "unit": unit, "ratio": round(engine / baseline, 2), "target": target}


async def http_node_rows(quick: bool) -> list[dict[str, Any]]:
    width, runs = (50, 5) if quick else (200, 15)
    length = 20 if quick else 50
    process, port = await start_server()
    url = f"http://127.0.0.1:{port}/data"
    fresh = FreshClientPerRequest()
    rows = []
    try:
        async with GuardedHttpClient(ALLOW) as pooled:
            fan_out = fan_out_flow(url, width)
            engine, engine_cpu = await nodes_per_second(fan_out, pooled, runs)
            baseline, baseline_cpu = await nodes_per_second(fan_out, fresh, runs)
            rows.append(_row(f"(h) {width} parallel http nodes (GET): pooled vs a fresh client "
                             "per request", engine, baseline, "ratio ≥ 1"))
            rows.append(_row(f"(h) {width} parallel http nodes: client CPU per node, pooled vs "
                             "fresh", engine_cpu, baseline_cpu, "ratio ≤ 1", "ms CPU/node"))
            floor = await raw_httpx_per_second(url, width, runs)
            rows.append(_row(f"(h) {width} parallel http nodes vs the same requests on a bare "
                             "httpx.AsyncClient", engine, floor, "ratio ≥ 0.8"))
            async with GuardedHttpClient(ALLOW, lane_size=256) as one_pool:
                _, single_cpu = await nodes_per_second(fan_out, one_pool, runs)
            rows.append(_row(f"(h) {width} parallel http nodes: client CPU per node, pool lanes "
                             "of 4 vs one httpcore pool", engine_cpu, single_cpu, "ratio ≤ 1",
                             "ms CPU/node"))
            chain = chain_flow(url, length)
            engine, engine_cpu = await nodes_per_second(chain, pooled, runs)
            baseline, baseline_cpu = await nodes_per_second(chain, fresh, runs)
            rows.append(_row(f"(h) chain of {length} http nodes (POST JSON): pooled vs a fresh "
                             "client per request", engine, baseline, "ratio ≥ 1"))
            rows.append(_row(f"(h) chain of {length} http nodes: client CPU per node, pooled vs "
                             "fresh", engine_cpu, baseline_cpu, "ratio ≤ 1", "ms CPU/node"))
    finally:
        process.terminate()
        await process.wait()
    return rows


async def main(quick: bool) -> None:
    rows = await http_node_rows(quick)
    report("http_nodes", rows, ["case", "engine", "baseline", "unit", "ratio", "target"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))
