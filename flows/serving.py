"""Several serving processes on one socket: `manage.py serve --processes N`.

One process is one GIL. This binds the address once and starts N daphne processes that all
accept on that socket (`daphne --fd`, as Channels' deployment guide does with a process
manager); the kernel spreads the connections among them. Each process is a complete server:
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


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(1024)
    listener.set_inheritable(True)
    return listener


def daphne(listener: socket.socket) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "daphne", "--fd", str(listener.fileno()),
         "astron.asgi:application"], cwd=ROOT, pass_fds=(listener.fileno(),))


def serve(host: str, port: int, processes: int,
          say: Callable[[str], None] = print) -> None:
    """Serve until SIGTERM or SIGINT, keeping `processes` daphne processes alive."""
    listener = listening_socket(host, port)
    say(f"serving on http://{host}:{listener.getsockname()[1]} with {processes} processes")
    children = [daphne(listener) for _ in range(processes)]
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
                    children[index] = daphne(listener)
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
        listener.close()
