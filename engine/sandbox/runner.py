"""The script inside every sandbox process: a zygote that forks one child per job.

Standard library only, and no import from the engine: it runs in a separate interpreter
(`python -I -S -B runner.py ...`), started by the pool inside bubblewrap or as a plain process.
What a child does with its job lives beside it, in usercode.py.

Protocol on the zygote's stdin and stdout, all bytes:

    server → zygote   b"<body length> <payload cap>\\n" then the body: a JSON job
    zygote → server   one JSON status line, then `size` bytes of payload: the child's JSON

The zygote never parses a job or a payload. It keeps them in buffers it zeroes after use,
because each job's child starts as a copy of the zygote's memory: the child of a later run
must find no trace of an earlier run's inputs or results there. User code runs only in the
child, which sees neither the zygote's stdin nor its stdout (both are /dev/null in the
child), so it can neither read the next job nor forge a status line.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import sys
from types import ModuleType

CHUNK = 65536
# Imported once by the zygote so that each job's child finds them loaded.
PRELOAD = ("collections", "datetime", "decimal", "functools", "itertools", "math", "random",
           "string", "textwrap")


# -- the zygote ------------------------------------------------------------------------------


def main(argv: list[str]) -> None:
    options = dict(zip(argv[::2], argv[1::2], strict=False))
    if "--uid" in options and os.getuid() == 0:
        # First thing, before any job: from here on nothing in the sandbox is privileged.
        uid, gid = int(options["--uid"]), int(options["--gid"])
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    _set_not_dumpable()
    os.environ.clear()  # empty already, but bwrap --chdir sets PWD
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for name in PRELOAD:
        __import__(name)
    usercode = _load_usercode()
    usercode.warm_up()
    scope = options.get("--scope", "group")
    workdir = options.get("--workdir", os.getcwd())
    _write_all(1, json.dumps({"ready": True, "uid": os.getuid()}).encode() + b"\n")
    job = bytearray(64 * 1024)
    payload = bytearray(64 * 1024)
    while True:
        header = _read_header(0)
        if header is None:
            return  # the server closed our stdin: the pool is shutting down
        length, cap = header
        if len(job) < length:
            job = _grown(job, 0, length)
        _read_exact(0, job, length)
        result_r, result_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            _child(usercode, job, length, result_r, result_w)  # never returns
        os.close(result_w)
        job[:length] = bytes(length)
        size, overflow, payload = _collect(result_r, pid, cap, payload)
        _, wait_status, usage = os.wait4(pid, 0)
        dirty = overflow or _left_behind(scope, workdir)
        status = {"exit": os.waitstatus_to_exitcode(wait_status), "size": size,
                  "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
                  "overflow": overflow, "dirty": dirty}
        _write_all(1, json.dumps(status).encode() + b"\n")
        _write_all(1, memoryview(payload)[:size])
        payload[:size] = bytes(size)
        if dirty:
            return  # the pool replaces a sandbox with anything left over


def _load_usercode() -> ModuleType:
    """The job side, which sits beside this script (in the sandbox: /sandbox/usercode.py).
    Its directory leaves sys.path again: user code is not to import from there."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    try:
        import usercode
    finally:
        sys.path.remove(here)
    return usercode


def _set_not_dumpable() -> None:
    """Job children run as the same user as the zygote: a non-dumpable zygote cannot be
    traced, nor its /proc/<pid>/mem, fd or environ opened, by one of them."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (ImportError, OSError, AttributeError):
        pass  # an interpreter built without ctypes: rare, and nothing better to do


def _read_header(fd: int) -> tuple[int, int] | None:
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            return None
        line += chunk
        if len(line) > 64:
            raise SystemExit("malformed job header")
    length, cap = line.split()
    return int(length), int(cap)


def _read_exact(fd: int, buffer: bytearray, length: int) -> None:
    view = memoryview(buffer)
    done = 0
    while done < length:
        count = os.readv(fd, [view[done:length]])
        if count == 0:
            raise SystemExit("the server closed the pipe in the middle of a job")
        done += count


def _grown(buffer: bytearray, used: int, needed: int) -> bytearray:
    """A larger buffer holding the first `used` bytes; the old one is zeroed, not just freed."""
    bigger = bytearray(max(needed, 2 * len(buffer)))
    bigger[:used] = memoryview(buffer)[:used]
    buffer[:] = bytes(len(buffer))
    return bigger


def _collect(fd: int, pid: int, cap: int, buffer: bytearray) -> tuple[int, bool, bytearray]:
    """Read the child's payload until the child exits or the pipe closes, whichever is first
    (a grandchild holding the pipe open must not hold the zygote); past `cap` bytes, kill the
    child and stop."""
    size = 0
    try:
        exited = os.pidfd_open(pid)
    except (AttributeError, OSError):
        exited = None  # an old kernel: read until the pipe closes
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if exited is not None:
        poller.register(exited, select.POLLIN)
    os.set_blocking(fd, False)
    try:
        while True:
            child_gone = any(ready == exited for ready, _ in poller.poll())
            while True:  # everything the pipe holds now
                if len(buffer) < size + CHUNK:
                    buffer = _grown(buffer, size, size + CHUNK)
                try:
                    count = os.readv(fd, [memoryview(buffer)[size:size + CHUNK]])
                except BlockingIOError:
                    break
                if count == 0:
                    return size, False, buffer
                size += count
                if size > cap:
                    _kill(pid)
                    return cap, True, buffer
            if child_gone:
                return size, False, buffer
    finally:
        os.close(fd)
        if exited is not None:
            os.close(exited)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _left_behind(scope: str, workdir: str) -> bool:
    """Whether the job left anything a later job could see: a process, a file, an IPC object."""
    me = os.getpid()
    if os.listdir(workdir):
        return True
    if scope == "namespace":
        # Our own PID namespace: only its init (pid 1) and this zygote should be alive.
        if any(name.isdigit() and int(name) not in (1, me) for name in os.listdir("/proc")):
            return True
        for kind in ("shm", "msg", "sem"):
            try:
                with open(f"/proc/sysvipc/{kind}") as table:
                    if len(table.read().splitlines()) > 1:
                        return True
            except OSError:
                pass
        return False
    group = os.getpgrp()
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != me:
            try:
                with open(f"/proc/{name}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == group:
                return True
    return False


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# -- the child: one job ----------------------------------------------------------------------


def _child(usercode: ModuleType, job: bytearray, length: int, result_r: int,
           result_w: int) -> None:
    """The forked child: shed the zygote's pipes and files, take the limits, run the job."""
    try:
        os.close(result_r)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, result_w)
        os.closerange(result_w + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        request = json.loads(bytes(job[:length]))
        job[:length] = bytes(length)
        usercode.apply_limits(request["limits"])
        _write_all(result_w, usercode.run_job(request))
    finally:
        os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
