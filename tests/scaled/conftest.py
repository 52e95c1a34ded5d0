"""The scaled-out mode for real (`RUN_EXECUTOR=celery`): serving processes that execute
nothing, Celery workers fed through the broker, PostgreSQL and Redis (docs/scaling.md).

These tests start their own processes: a daphne, and workers they kill, stop, pause and
restart. They run where PostgreSQL, Redis and a broker are configured (CI's third pass,
.ci/run: CELERY_BROKER_URL set); elsewhere they are skipped. Each test has a queue of its own
on the broker, so that sessions sharing a broker keep apart.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.contrib.auth.models import User

from flows import services
from flows.execution.executor import executor
from tests.processes import environment_for_another_process
from tests.servers import daphne

ROOT = Path(__file__).resolve().parents[2]
BROKER = os.environ.get("CELERY_BROKER_URL", "")
REQUEST_S = 0.4


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    why = None
    if not BROKER:
        why = "needs a broker: CELERY_BROKER_URL (CI's third pass sets it)"
    elif not settings.REDIS_URL or "postgres" not in os.environ.get("DATABASE_URL", ""):
        why = "needs PostgreSQL and Redis (DATABASE_URL, REDIS_URL)"
    for item in items:
        if why and str(item.path).startswith(str(Path(__file__).parent)):
            item.add_marker(pytest.mark.skip(reason=why))


def wait_for(predicate: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {seconds} s waiting for {what}"
        time.sleep(0.1)


class Stack:
    """A serving process and workers on the test database, with a queue of their own."""

    def __init__(self, folder: Path, **variables: str) -> None:
        self.folder = folder
        self.queue = f"astron.test.{uuid.uuid4().hex[:10]}"
        self.environment = environment_for_another_process(
            RUN_EXECUTOR="celery", CELERY_BROKER_URL=BROKER, RUN_QUEUE=self.queue,
            HTTP_ALLOW_HOSTS="127.0.0.1", CODE_WORKERS="0", API_RATE="100000/minute",
            # One owner starts every run here: its limit must not be what holds them back.
            **{"RUN_LEASE_S": "3", "RUN_DRAIN_S": "1", "RUN_MAX_ACTIVE_PER_OWNER": "1000",
               **variables})
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.base = ""
        self._server: Any = None

    def serve(self) -> str:
        self._server = daphne(self.environment, self.folder / "daphne.log")
        self.base = self._server.__enter__()
        return self.base

    def worker(self, name: str, **variables: str) -> subprocess.Popen[bytes]:
        """A Celery worker, once it is ready to take doorbells."""
        log = self.folder / f"worker-{name}.log"
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "astron", "worker", "-n",
                 f"{name}@%h", "--without-mingle", "--without-gossip", "-l", "info"],
                cwd=ROOT, env={**self.environment, **variables}, stdout=output,
                stderr=subprocess.STDOUT)
        self.workers[name] = process
        wait_for(lambda: process.poll() is not None or b" ready." in log.read_bytes(), 60,
                 f"worker {name} to start")
        assert process.poll() is None, log.read_text()
        return process

    def log(self, name: str) -> str:
        return (self.folder / f"worker-{name}.log").read_text(errors="replace")

    def close(self) -> None:
        for process in self.workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
            process.wait(10)
        if self._server is not None:
            self._server.__exit__(None, None, None)
        from kombu import Connection

        with Connection(BROKER) as broker:
            broker.default_channel.queue_delete(self.queue)


@pytest.fixture
def stack(tmp_path: Path, transactional_db: None) -> Iterator[Stack]:
    executor.stop()  # this process executes nothing: the workers do
    built = Stack(tmp_path)
    try:
        yield built
    finally:
        built.close()


@pytest.fixture
def owner(transactional_db: None) -> tuple[User, str]:
    user = User.objects.create_user("scaled")
    return user, services.create_token(user, "scaled")[1]


def api(base: str, key: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"Authorization": f"Token {key}"}, timeout=60)


# -- a server that counts the requests the runs' http nodes send ---------------------------


class Counted:
    """Requests received, by the Idempotency-Key each http node sends."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.keys: dict[str, int] = defaultdict(int)

    def count(self, key: str) -> None:
        with self.lock:
            self.keys[key] += 1

    def repeated(self) -> dict[str, int]:
        with self.lock:
            return {key: n for key, n in self.keys.items() if n > 1}

    def total(self) -> int:
        with self.lock:
            return len(self.keys)


@pytest.fixture
def counting_server() -> Iterator[tuple[str, Counted]]:
    counted = Counted()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            counted.count(self.headers.get("Idempotency-Key", ""))
            try:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(REQUEST_S)
                body = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # a worker killed mid-request

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 1024  # 200 runs connect at once

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", counted
    server.shutdown()


def requests_in_a_row(url: str, steps: int = 3) -> dict:
    names = [f"h{i}" for i in range(1, steps + 1)]
    nodes = [{"id": "start", "type": "start"},
             *({"id": name, "type": "http",
                "params": {"method": "POST", "url": f"{url}/{name}", "body": {"step": name}}}
               for name in names),
             {"id": "end", "type": "end", "inputs": {"ok": f"{{{{{names[-1]}.body.ok}}}}"}}]
    ids = ["start", *names, "end"]
    return {"dsl": "astron/v1", "name": "Requests in a row", "nodes": nodes,
            "edges": [{"from": a, "to": b} for a, b in pairwise(ids)]}
