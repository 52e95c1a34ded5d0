"""One sandbox process seen from the server: started warm, fed jobs one at a time, killed.

The process is started in a session of its own, so that killing its process group reaches
everything in it: the process fallback's zygote and job children, or bwrap, whose
`--die-with-parent` then takes the whole sandbox and its PID namespace down.

It is spawned with `subprocess.Popen` (a fork and exec, exactly what asyncio's subprocess
support does inside) and its pipes and exit are watched by the event loop, rather than
through `asyncio.create_subprocess_exec`: on CPython 3.11, cancelling that call while it
connects its pipes leaves a transport whose `wait()` never returns, and the processes a pool
is starting are cancelled whenever their event loop shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
from typing import Any

from engine.sandbox.isolation import SANDBOX_GID, SANDBOX_UID, Isolation

logger = logging.getLogger(__name__)


class WorkerLost(Exception):
    """The sandbox process ended, or broke the protocol: it cannot be used again."""


class Worker:
    def __init__(self, process: subprocess.Popen[bytes], workdir: str | None):
        self.process = process
        self.workdir = workdir
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._stdout: asyncio.ReadTransport | None = None
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pidfd: int | None = None

    @classmethod
    async def start(cls, isolation: Isolation, timeout_s: float) -> Worker:
        """Start a sandbox process and wait until it is ready for a job."""
        workdir = None
        if isolation.kind == "process":
            workdir = await asyncio.to_thread(_make_workdir, isolation.drop_user)
        try:
            process = subprocess.Popen(
                isolation.command(workdir), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env={}, cwd=workdir or "/", start_new_session=True)
        except OSError as error:
            if workdir:
                await asyncio.to_thread(shutil.rmtree, workdir, True)
            raise WorkerLost(f"the code sandbox could not start: {error}") from error
        worker = cls(process, workdir)
        try:
            await worker._connect()
            async with asyncio.timeout(timeout_s):
                line = await worker.reader.readline()  # type: ignore[union-attr]
            ready = json.loads(line) if line else None
        except (TimeoutError, ValueError):
            ready = None
        except BaseException:  # cancelled while starting: leave nothing running behind
            worker.kill()
            await worker.wait_closed()
            raise
        if not isinstance(ready, dict) or ready.get("ready") is not True:
            reason = worker._stderr_tail()
            worker.kill()
            await worker.wait_closed()
            raise WorkerLost(f"the code sandbox could not start{reason}")
        return worker

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.process.stdin and self.process.stdout
        try:
            self._pidfd = os.pidfd_open(self.process.pid)
            loop.add_reader(self._pidfd, self._check_exit)
        except (AttributeError, OSError):
            self._pidfd = None  # an old kernel: `wait_closed` waits in a thread instead
        reader = self.reader = asyncio.StreamReader()
        self._stdout, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), self.process.stdout)
        transport, protocol = await loop.connect_write_pipe(
            lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader()), self.process.stdin)
        self.writer = asyncio.StreamWriter(transport, protocol, None, loop)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    async def execute(self, body: bytes, cap: int) -> tuple[dict[str, Any], bytes]:
        """Send one job; the zygote's status line and the child's payload (at most `cap`)."""
        reader, writer = self.reader, self.writer
        assert reader is not None and writer is not None
        try:
            writer.write(b"%d %d\n" % (len(body), cap))
            writer.write(body)
            await writer.drain()
            status = json.loads(await reader.readline())
            size = status["size"]
            if not isinstance(size, int) or not 0 <= size <= cap:
                raise ValueError(f"payload size {size!r}")
            payload = await reader.readexactly(size)
        except (OSError, ValueError, KeyError, TypeError, asyncio.IncompleteReadError) as error:
            raise WorkerLost("the sandbox process ended unexpectedly") from error
        return status, payload

    def kill(self) -> None:
        """Stop the process and everything it started, now (safe to call twice)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        # Close our ends of its pipes too: a sandbox killed while bwrap was still setting it
        # up can outlive bwrap (its parent-death signal was not armed yet); its runner then
        # meets end-of-file or a broken pipe and exits by itself instead of waiting forever.
        for transport, pipe in ((self.writer, self.process.stdin),
                                (self._stdout, self.process.stdout),
                                (None, self.process.stderr)):
            if transport is not None:
                transport.close()  # it owns the pipe
            elif pipe is not None:
                pipe.close()

    async def wait_closed(self, timeout_s: float = 10) -> None:
        """After `kill`: reap the process and remove the fallback's working directory."""
        try:
            async with asyncio.timeout(timeout_s):
                if self._pidfd is not None:
                    self._check_exit()
                    await asyncio.shield(self._exited)
                elif self.process.poll() is None:
                    await asyncio.to_thread(self.process.wait)
        except TimeoutError:
            logger.warning("code sandbox: process %s did not end after SIGKILL", self.pid)
        if self.workdir:
            await asyncio.to_thread(shutil.rmtree, self.workdir, True)

    def _check_exit(self) -> None:
        """The pidfd became readable: the process ended; reap it."""
        if self.process.poll() is None or self._pidfd is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = None
        if not self._exited.done():
            self._exited.set_result(self.process.returncode)

    def _stderr_tail(self) -> str:
        """What bwrap or the runner said before failing to start (never blocks)."""
        stderr = self.process.stderr
        if stderr is None or stderr.closed:
            return ""
        os.set_blocking(stderr.fileno(), False)
        try:
            text = (os.read(stderr.fileno(), 4096) or b"").decode(errors="replace").strip()
        except OSError:
            return ""
        return f": {text[-300:]}" if text else ""


def _make_workdir(drop_user: bool) -> str:
    """The process fallback's cwd, which the zygote checks is empty after each job."""
    path = tempfile.mkdtemp(prefix="astron-code-")
    if drop_user:
        os.chown(path, SANDBOX_UID, SANDBOX_GID)
    return path
