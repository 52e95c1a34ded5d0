"""One ordinary user cannot exhaust a serving process's memory: a flow whose templates double
their text 40 times (64 bytes · 2^40) fails `too_large` at the node that crosses
RUN_VALUE_MAX_BYTES, in a process whose peak memory stays small; and a run that records more than
RUN_STORED_MAX_MB in all fails at the node that crosses it (docs/dsl.md §3 rule 7)."""

from __future__ import annotations

import json
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from flows import services
from tests.processes import environment_for_another_process

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db(transaction=True)

# Executes the flow as the server would (the executor, its database sink), then reports the
# process's peak resident memory.
EXECUTE = """
import json, os, resource, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "astron.settings")
import django
django.setup()
from django.contrib.auth.models import User
from flows import services
from flows.execution.executor import executor
executor.maintenance = False
owner = User.objects.get(username=sys.argv[1])
flow = services.flow_of(owner, sys.argv[2])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
run, _ = services.start_run(owner, flow, {"s": "x" * 64}, version="draft")
executor.wait(run.pk, 60)
run.refresh_from_db()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"status": run.status, "error": run.error, "before_kib": before,
                  "peak_kib": peak}))
executor.stop()
"""


def doubling_document(steps: int) -> dict:
    nodes = [{"id": "start", "type": "start",
              "params": {"inputs": {"s": {"type": "string"}}}},
             {"id": "t1", "type": "template", "params": {"template": "{{start.s}}{{start.s}}"}}]
    nodes += [{"id": f"t{i}", "type": "template",
               "params": {"template": f"{{{{t{i - 1}.text}}}}{{{{t{i - 1}.text}}}}"}}
              for i in range(2, steps + 1)]
    nodes.append({"id": "end", "type": "end", "inputs": {"n": f"{{{{t{steps}.text}}}}"}})
    ids = [node["id"] for node in nodes]
    return {"dsl": "astron/v1", "name": "Doubling", "nodes": nodes,
            "edges": [{"from": a, "to": b} for a, b in pairwise(ids)]}


def test_forty_doublings_fail_too_large_and_memory_stays_bounded():
    owner = User.objects.create_user("doubler")
    services.create_flow(owner, doubling_document(40), slug="doubling")

    done = subprocess.run([sys.executable, "-c", EXECUTE, "doubler", "doubling"], cwd=ROOT,
                          env=environment_for_another_process(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert report["status"] == "failed"
    assert report["error"]["code"] == "too_large"
    assert report["error"]["node"] == "t17"  # 64 · 2^17 bytes is the first over 4 MiB
    grown_mib = (report["peak_kib"] - report["before_kib"]) / 1024
    print(f"peak memory grew {grown_mib:.1f} MiB")  # figure for docs/platform.md
    assert grown_mib < 200, f"the process grew {grown_mib:.0f} MiB"



def test_a_run_past_RUN_STORED_MAX_MB_fails_too_large_at_the_node_that_crosses_it():
    owner = User.objects.create_user("hoarder")
    services.create_flow(owner, doubling_document(20), slug="hoard")
    # What the run records, node by node, as compact JSON: the first node past 1 MiB fails
    # (each text is within RUN_VALUE_MAX_BYTES; together they are not).
    recorded = len(json.dumps({"s": "x" * 64}, separators=(",", ":")))
    crossing = None
    for i in range(1, 21):
        recorded += len(json.dumps({"text": "x" * (64 * 2**i)}, separators=(",", ":")))
        if recorded > 2**20:
            crossing = f"t{i}"
            break

    done = subprocess.run([sys.executable, "-c", EXECUTE, "hoarder", "hoard"], cwd=ROOT,
                          env=environment_for_another_process(RUN_STORED_MAX_MB="1"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert report["status"] == "failed"
    assert report["error"]["code"] == "too_large" and report["error"]["node"] == crossing
    assert "RUN_STORED_MAX_MB" in report["error"]["message"]
