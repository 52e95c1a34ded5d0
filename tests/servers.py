"""A real server for the tests that need one: daphne serving the project on a free port."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def daphne(environment: dict[str, str], log_path: Path) -> Iterator[str]:
    """`daphne astron.asgi:application` with `environment`, its output in `log_path`; yields
    its base URL once /healthz answers, and stops it on the way out."""
    port = free_port()
    program = shutil.which("daphne", path=str(Path(sys.executable).parent)) or "daphne"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([program, "-b", "127.0.0.1", "-p", str(port),
                                    "astron.asgi:application"], cwd=ROOT, env=environment,
                                   stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"daphne exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"daphne did not answer within 60 s:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
