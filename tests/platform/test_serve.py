"""`manage.py serve --processes N`: several daphne processes on one address (flows/serving.py),
each executing the runs it starts; SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import connection

from flows import services
from flows.models import Worker
from flows.serving import listening_sockets
from tests.processes import environment_for_another_process
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = {"dsl": "astron/v1", "name": "Hello",
         "nodes": [{"id": "start", "type": "start"},
                   {"id": "end", "type": "end", "inputs": {"greeting": "hi"}}],
         "edges": [{"from": "start", "to": "end"}]}


def test_several_processes_need_postgresql_and_redis(settings):
    if connection.vendor == "sqlite":
        with pytest.raises(CommandError, match="PostgreSQL"):
            call_command("serve", "--processes", "2")
    settings.REDIS_URL = None
    if connection.vendor == "postgresql":
        with pytest.raises(CommandError, match="Redis"):
            call_command("serve", "--processes", "2")
    with pytest.raises(CommandError, match="at least 1"):
        call_command("serve", "--processes", "0")


def test_an_address_in_use_is_refused_with_a_clear_message():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"cannot listen on 127.0.0.1:{port}"):
            call_command("serve", "--processes", "1", "--port", str(port))


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="Linux and BSDs only")
def test_each_process_has_its_own_socket_and_the_kernel_spreads_connections_over_them():
    listeners = listening_sockets("127.0.0.1", 0, 2)
    try:
        assert len({listener.fileno() for listener in listeners}) == 2
        port = listeners[0].getsockname()[1]
        assert listeners[1].getsockname()[1] == port
        # Many connections: each socket gets some (the kernel hashes each connection).
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(64)]
        accepted = []
        for listener in listeners:
            listener.setblocking(False)
            count = 0
            while True:
                try:
                    connection_, _ = listener.accept()
                except BlockingIOError:
                    break
                connection_.close()
                count += 1
            accepted.append(count)
        for client in clients:
            client.close()
        assert sum(accepted) == 64 and min(accepted) > 0, accepted
    finally:
        for listener in listeners:
            listener.close()


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="Linux and BSDs only")
def test_an_address_another_server_shares_is_refused_too():
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    other.bind(("127.0.0.1", 0))
    other.listen()
    try:
        with pytest.raises(OSError):
            listening_sockets("127.0.0.1", other.getsockname()[1], 2)
    finally:
        other.close()


@pytest.mark.skipif(connection.vendor != "postgresql" or not settings.REDIS_URL,
                    reason="several processes need PostgreSQL and Redis")
def test_two_processes_serve_and_execute_runs_and_stop_on_sigterm():
    owner = User.objects.create_user("busy")
    services.create_flow(owner, HELLO, slug="hello")
    key = services.create_token(owner, "serve")[1]
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--processes", "2", "--port", str(port)],
        cwd=ROOT, env=environment_for_another_process(API_RATE="100000/minute"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read().decode()[-3000:]
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the processes did not answer"
            time.sleep(0.2)

        async def clients() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=base, timeout=60,
                                         headers={"Authorization": f"Token {key}"}) as http:
                return await asyncio.gather(*(
                    http.post("/api/flows/hello/runs/", json={"version": "draft", "wait": 30})
                    for _ in range(40)))

        answers = asyncio.run(clients())
        assert [answer.json()["status"] for answer in answers] == ["succeeded"] * 40
        deadline = time.monotonic() + 10
        mine = f":{os.getpid()}:"
        while Worker.objects.exclude(name__contains=mine).count() < 2:  # both beat
            assert time.monotonic() < deadline, list(Worker.objects.values_list("name"))
            time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            raise
    output = server.stdout.read().decode()
    assert "with 2 processes" in output
    assert server.returncode == 0, output[-3000:]
