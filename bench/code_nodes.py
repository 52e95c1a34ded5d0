"""Code node benchmark: `code` nodes through the engine and the sandbox pool.

    python bench/code_nodes.py            # full run
    python bench/code_nodes.py --quick    # fewer repetitions (CI smoke)

Each case runs the same flows twice: with a warm `ProcessSandbox` pool, and with a fresh
sandbox process started (and killed) around every node, under the same isolation (bubblewrap
when it works here, else the process fallback) as the baseline. Throughput is code nodes
finished per second (start and end not counted) in the fastest of a few runs; the ratio is
pool/fresh, so above 1 means the pool pays.

Prints a table and writes bench/results/code_nodes.json.
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
from engine.ports import CodeLimits, CodeOutcome, Services
from engine.sandbox import ProcessSandbox

LIMITS = CodeLimits()
STEP = "def main(n):\n    return {'n': n + 1}"


class FreshSandboxPerNode:
    """The baseline: the same isolation, but a new sandbox process for every node."""

    def __init__(self, isolation: str):
        self.isolation = isolation

    async def run(self, code: str, inputs: dict[str, Any], limits: CodeLimits) -> CodeOutcome:
        sandbox = ProcessSandbox(limits, workers=1, isolation=self.isolation)
        try:
            return await sandbox.run(code, inputs, limits)
        finally:
            await sandbox.close()


def chain_flow(length: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "start"}]
    previous = None
    for i in range(length):
        value = 0 if previous is None else f"{{{{{previous}.n}}}}"
        nodes.append({"id": f"c{i}", "type": "code", "inputs": {"n": value},
                      "params": {"code": STEP}, "outputs": {"n": {"type": "integer"}}})
        previous = f"c{i}"
    nodes.append({"id": "end", "type": "end", "inputs": {"n": f"{{{{{previous}.n}}}}"}})
    ids = [n["id"] for n in nodes]
    return {"dsl": "astron/v1", "name": "code chain", "nodes": nodes,
            "edges": [{"from": a, "to": b} for a, b in pairwise(ids)]}


def fan_out_flow(width: int, concurrency: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "start", "type": "start"}]
    nodes += [{"id": f"c{i}", "type": "code", "inputs": {"n": i}, "params": {"code": STEP},
               "outputs": {"n": {"type": "integer"}}} for i in range(width)]
    nodes.append({"id": "end", "type": "end"})
    edges = [{"from": "start", "to": f"c{i}"} for i in range(width)]
    edges += [{"from": f"c{i}", "to": "end"} for i in range(width)]
    return {"dsl": "astron/v1", "name": "code fan-out",
            "settings": {"concurrency": concurrency}, "nodes": nodes, "edges": edges}


async def nodes_per_second(document: dict[str, Any], sandbox: Any, runs: int) -> float:
    plan = compile_plan(document)
    count = len(document["nodes"]) - 2
    services = Services(sandbox=sandbox, code_limits=LIMITS)
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        result = await Run(plan, {}, services=services).execute()
        best = min(best, time.perf_counter() - started)
        assert result.status == "succeeded", result.error
    return count / best


def _row(case: str, pooled: float, fresh: float, target: str) -> dict[str, Any]:
    return {"case": case, "engine": round(pooled, 1), "baseline": round(fresh, 1),
            "unit": "nodes/s", "ratio": round(pooled / fresh, 2), "target": target}


async def code_node_rows(quick: bool) -> list[dict[str, Any]]:
    runs = 3 if quick else 7
    length, width, workers = (10, 16, 4) if quick else (40, 64, 4)
    rows = []
    for pool_size, document, case in (
            (2, chain_flow(length), f"chain of {length} code nodes"),
            (workers, fan_out_flow(width, workers),
             f"{width} parallel code nodes, concurrency {workers}")):
        pool = ProcessSandbox(LIMITS, workers=pool_size)
        try:
            await pool.start()
            isolation = pool.isolation.kind
            await nodes_per_second(document, pool, 1)  # warm: caches, the pool's processes
            pooled = await nodes_per_second(document, pool, runs)
        finally:
            await pool.close()
        fresh = await nodes_per_second(document, FreshSandboxPerNode(isolation), runs)
        rows.append(_row(f"(g) {case} ({isolation}, pool of {pool_size}): pool vs a fresh "
                         "sandbox per node", pooled, fresh, "ratio ≥ 3"))
    return rows


async def main(quick: bool) -> None:
    rows = await code_node_rows(quick)
    report("code_nodes", rows, ["case", "engine", "baseline", "unit", "ratio", "target"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))
