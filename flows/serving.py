"""Several serving processes on one socket: `manage.py serve --processes N`.

One process is one GIL. This binds the address and starts N daphne processes that accept on
it (`daphne --fd`, as Channels' deployment guide does with a process manager). Where the
kernel offers SO_REUSEPORT (Linux), each process has a socket of its own on the address and
the kernel spreads new connections evenly among them; with one shared socket, whichever
process is in `accept` first takes the connection, and under load one process took two
connections in three (bench/throughput.py). Each process is a complete server:
it executes the runs it starts, and its executor takes over the runs of a process that died
(docs/platform.md, Recovery). A process that exits is started again after a second; SIGTERM
or SIGINT stops them all, each finishing its requests as daphne does.

Several processes need what they share to be shared: PostgreSQL (DATABASE_URL), and Redis
(REDIS_URL) for the cache and the channel layer, through which a run's events reach
watchers connected to another process.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESTART_AFTER_S = 1.0
STOP_WITHIN_S = 20.0


def listening_socket(host: str, port: int, share_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if share_port:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        listener.bind((host, port))
        listener.listen(1024)
    except OSError:
        listener.close()
        raise
    listener.set_inheritable(True)
    return listener


def listening_sockets(host: str, port: int, processes: int) -> list[socket.socket]:
    """One socket per process on the address (SO_REUSEPORT), or one shared by all."""
    if processes == 1 or not hasattr(socket, "SO_REUSEPORT"):
        return [listening_socket(host, port)] * processes
    # Bound once without sharing first: an address another server holds is refused here,
    # even one that shares its port (it would otherwise get half our connections).
    with listening_socket(host, port) as probe:
        port = probe.getsockname()[1]
    listeners: list[socket.socket] = []
    try:
        for _ in range(processes):
            listeners.append(listening_socket(host, port, share_port=True))
    except OSError:
        for listener in listeners:
            listener.close()
        raise
    return listeners


def daphne(listener: socket.socket) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "daphne", "--fd", str(listener.fileno()),
         "astron.asgi:application"], cwd=ROOT, pass_fds=(listener.fileno(),))


def serve(host: str, port: int, processes: int,
          say: Callable[[str], None] = print) -> None:
    """Serve until SIGTERM or SIGINT, keeping `processes` daphne processes alive."""
    listeners = listening_sockets(host, port, processes)
    say(f"serving on http://{host}:{listeners[0].getsockname()[1]} with {processes} processes")
    children = [daphne(listener) for listener in listeners]
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping:
            time.sleep(0.2)
            for index, child in enumerate(children):
                if child.poll() is not None and not stopping:
                    say(f"process {child.pid} exited with {child.returncode}; "
                        f"starting another in {RESTART_AFTER_S:g} s")
                    time.sleep(RESTART_AFTER_S)
                    children[index] = daphne(listeners[index])
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + STOP_WITHIN_S
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for listener in set(listeners):
            listener.close()
