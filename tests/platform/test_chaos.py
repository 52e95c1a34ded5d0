"""Chaos on PostgreSQL: two worker processes, every database backend terminated mid-run, then
the executing process paused (SIGSTOP) past its lease and its heartbeat, and let go again.

What must hold (docs/platform.md, "Recovery"): every run ends, and ends as it would have;
its events have no gap; no node is left running or finishes twice; and a request is sent
again only for a node that was in flight when its run changed hands — at most one per
takeover, never more than twice, each counted by the `Idempotency-Key` the node sends.
Two processes executing one run at once would repeat every node after the takeover.

The repeat of a node in flight may overlap the first copy at the server: a worker that
fences itself abandons its request, but the server may still be answering it when the new
holder of the lease sends it again (with the 3 s lease here the margin is 0.5 s, a request
takes 0.5 s). That is the one repeat the design allows; the key lets the server drop it.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.db import connection

from flows import services
from flows.models import NodeRun, Run, RunEvent
from tests.processes import environment_for_another_process

ROOT = Path(__file__).resolve().parents[2]
RUNS = 8
STEPS = 6
REQUEST_S = 0.5

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql",
                       reason="terminates PostgreSQL backends"),
]

# A worker process as a serving process has one: an executor with its heartbeat and its
# maintenance (which takes over the runs of processes that stopped beating).
WORKER = """
import os, sys, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "astron.settings")
import django
django.setup()
from flows.execution.executor import executor
executor.start()
for run_id in sys.argv[1:]:
    executor.submit(run_id)
time.sleep(600)
"""


class Requests:
    """What the slow server received: (Idempotency-Key, start, end) per request."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, float, float]] = []
        self.hung_up = 0

    def by_key(self) -> dict[str, list[tuple[float, float]]]:
        keyed: dict[str, list[tuple[float, float]]] = defaultdict(list)
        with self.lock:
            for key, start, end in self.seen:
                keyed[key].append((start, end))
        return keyed


@pytest.fixture
def slow_server():
    requests = Requests()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            start = time.monotonic()
            try:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(REQUEST_S)
                body = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
            except OSError:
                requests.hung_up += 1  # the client went away (a worker killed at the end)
            finally:
                with requests.lock:
                    requests.seen.append((self.headers.get("Idempotency-Key", ""), start,
                                          time.monotonic()))

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", requests
    server.shutdown()


def chain_of_requests(url: str) -> dict:
    steps = [f"h{i}" for i in range(1, STEPS + 1)]
    nodes = [{"id": "start", "type": "start"},
             *({"id": step, "type": "http",
                "params": {"method": "POST", "url": f"{url}/{step}", "body": {"step": step}}}
               for step in steps),
             {"id": "end", "type": "end", "inputs": {"ok": f"{{{{{steps[-1]}.body.ok}}}}"}}]
    ids = ["start", *steps, "end"]
    return {"dsl": "astron/v1", "name": "Requests in a row", "nodes": nodes,
            "edges": [{"from": a, "to": b} for a, b in pairwise(ids)]}


def terminate_backends() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0]


def wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def worker(environment: dict, *run_ids: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER, *run_ids], cwd=ROOT, env=environment,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_terminated_backends_and_a_paused_worker_lose_nothing_and_repeat_nothing(slow_server):
    url, requests = slow_server
    owner = User.objects.create_user("chaos")
    flow = services.create_flow(owner, chain_of_requests(url))
    document = services.documents.store_document(flow.draft)
    runs = [Run.objects.create(owner=owner, flow=flow, document=document, inputs={})
            for _ in range(RUNS)]
    environment = environment_for_another_process(RUN_LEASE_S="3",
                                                  HTTP_ALLOW_HOSTS="127.0.0.1")
    first = worker(environment, *(str(run.pk) for run in runs))
    second = worker(environment)
    paused = False
    try:
        wait_for(lambda: RunEvent.objects.filter(type="node.started", data__node="h1").count()
                 == RUNS, 30, "every run to send its first request")
        time.sleep(REQUEST_S / 2)
        assert terminate_backends() > 0  # both workers lose every connection, mid-request
        time.sleep(REQUEST_S * 1.5)
        terminate_backends()

        first.send_signal(signal.SIGSTOP)  # frozen with its leases, past them and its beat
        paused = True
        mine = f":{first.pid}:"
        wait_for(lambda: not Run.objects.filter(status="running",
                                                lease_owner__contains=mine).exists(),
                 30, "the second worker to take the paused one's runs over")
        first.send_signal(signal.SIGCONT)
        paused = False
        terminate_backends()  # and the woken worker finds its connections gone too

        wait_for(lambda: not Run.objects.exclude(status__in=["succeeded", "failed"]).exists(),
                 90, "every run to end")
    finally:
        if paused:
            first.send_signal(signal.SIGCONT)
        for process in (first, second):
            process.kill()
            process.wait(10)

    taken_over = 0
    for run in Run.objects.filter(pk__in=[run.pk for run in runs]):
        assert run.status == "succeeded", run.error
        assert run.outputs == {"ok": True}
        seqs = list(RunEvent.objects.filter(run=run).order_by("seq")
                    .values_list("seq", flat=True))
        assert seqs == list(range(1, len(seqs) + 1)), f"gaps in {run.pk}"
        types = list(RunEvent.objects.filter(run=run).values_list("type", flat=True))
        assert types.count("run.finished") == 1
        finished = RunEvent.objects.filter(run=run, type="node.finished")
        assert sorted(finished.values_list("data__node", flat=True)) == \
            sorted(["start", *(f"h{i}" for i in range(1, STEPS + 1)), "end"])  # once each
        assert not NodeRun.objects.filter(run=run).exclude(status="succeeded").exists()
        taken_over += run.resumed_after_crash

    by_key = requests.by_key()
    assert len(by_key) == RUNS * STEPS  # every request was sent
    repeated = {key: sorted(sent) for key, sent in by_key.items() if len(sent) > 1}
    assert all(len(sent) == 2 for sent in repeated.values()), repeated
    assert len(repeated) <= taken_over  # only the node in flight at a takeover
    overlapping = sum(second[0] < first[1] for first, second in repeated.values())
    print(f"{RUNS} runs, {taken_over} takeovers, {len(repeated)} requests sent again "
          f"(each a node in flight at its takeover), {overlapping} of them while the server "
          f"still answered the abandoned first copy, {requests.hung_up} hung up")
