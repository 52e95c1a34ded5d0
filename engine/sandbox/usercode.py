"""The job side of the sandbox: limits, `main(**inputs)`, captured prints, the payload.

Imported by runner.py inside the sandbox (standard library only, no engine import), and used
in each job's forked child, never in the zygote except for its constant warm-up jobs.
"""

from __future__ import annotations

import builtins
import io
import linecache
import os
import resource
import sys

# Bound here, so that user code replacing json.dumps and the like fools only itself.
from json import dumps, loads
from traceback import StackSummary, extract_tb, format_exception_only

CODE_FILE = "<code>"  # the file name user code compiles under: how its frames are recognised
MESSAGE_LIMIT = 2000  # characters of an exception's text kept in the error message
MiB = 1024 * 1024


def warm_up() -> None:
    """Run two constant jobs once: the first compile, exec and traceback of an interpreter
    cost milliseconds that every forked child would otherwise pay again."""
    limits = {"output_bytes": 1024}
    for code in ("def main(n):\n    print(n)\n    return {'n': n}",
                 "def main(n):\n    raise ValueError(n)"):
        loads(run_job({"code": code, "inputs": {"n": 1}, "limits": limits}))
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    linecache.cache.pop(CODE_FILE, None)


def apply_limits(limits: dict[str, int]) -> None:
    """Soft and hard limits alike, so that the user code cannot raise them again."""
    memory = limits["memory_mb"] * MiB
    for name, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_DATA, memory),
                        (resource.RLIMIT_NPROC, limits["processes"]),
                        (resource.RLIMIT_NOFILE, limits["files"]),
                        (resource.RLIMIT_FSIZE, limits["file_mb"] * MiB)):
        resource.setrlimit(name, (value, value))
    # SIGXCPU at the limit, SIGKILL a second later if the code catches SIGXCPU.
    resource.setrlimit(resource.RLIMIT_CPU, (limits["cpu_s"], limits["cpu_s"] + 1))


class Capture(io.TextIOBase):
    """sys.stdout and sys.stderr of the user code: keeps the first `limit` characters."""

    def __init__(self, limit: int):
        self.limit = limit
        self.parts: list[str] = []
        self.size = 0
        self.truncated = False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        written = len(text)
        room = self.limit - self.size
        if written > room:
            self.truncated = True
            text = text[:max(room, 0)]
        if text:
            self.parts.append(text)
            self.size += len(text)
        return written  # all of it, as far as the code can tell: the rest is dropped

    def text(self) -> str:
        data = "".join(self.parts).encode("utf-8", "replace")
        if len(data) > self.limit:
            self.truncated = True
            data = data[:self.limit]
        text = data.decode("utf-8", "ignore")
        if self.truncated:
            text += f"\n[output truncated at {self.limit // 1024} KiB]"
        return text


def run_job(request: dict) -> bytes:
    """Run `main(**inputs)` of the request's code; the payload the server reads."""
    output_bytes = request["limits"]["output_bytes"]
    capture = Capture(output_bytes)
    me = os.getpid()
    sys.stdout = sys.stderr = capture
    try:
        result = _call_main(request["code"], request["inputs"])
    except MemoryError:
        _only_the_job(me)
        return _failure(capture, "limit", "memory")
    except BaseException as error:  # SystemExit too: the code's own doing
        _only_the_job(me)
        return _failure(capture, "exception", _describe(error), _user_traceback(error))
    _only_the_job(me)
    if not isinstance(result, dict):
        return _failure(capture, "invalid",
                        f"main must return a dict of outputs, not {type(result).__name__}")
    try:
        data = _encode(result)
    except MemoryError:
        return _failure(capture, "limit", "memory")
    except Exception as error:
        return _failure(capture, "invalid", f"main returned a value that is not JSON: {error}")
    if len(data) > output_bytes:
        return _failure(capture, "limit", "output")
    logs = dumps(capture.text(), ensure_ascii=False).encode()
    return b'{"ok":true,"logs":' + logs + b',"result":' + data + b"}"


def _only_the_job(me: int) -> None:
    """A process the user code forked ends here, silently: only the job's child answers."""
    if os.getpid() != me:
        os._exit(0)


def _encode(result: dict) -> bytes:
    text = dumps(result, ensure_ascii=False, allow_nan=False)
    try:
        return text.encode()
    except UnicodeEncodeError:  # a lone surrogate: escaped, it is still valid JSON
        return dumps(result, allow_nan=False).encode()


def _call_main(code: str, inputs: dict) -> object:
    linecache.cache[CODE_FILE] = (len(code), None, code.splitlines(True), CODE_FILE)
    namespace = {"__name__": "__code__", "__builtins__": builtins}
    exec(compile(code, CODE_FILE, "exec"), namespace)
    function = namespace.get("main")
    if not callable(function):
        raise _NoMain
    return function(**inputs)


class _NoMain(Exception):
    pass


def _describe(error: BaseException) -> str:
    if isinstance(error, _NoMain):
        return "the code must define a function main(**inputs)"
    try:
        text = str(error)
    except Exception:  # a broken __str__ of the user's own exception
        text = "<unprintable>"
    text = text[:MESSAGE_LIMIT]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _user_traceback(error: BaseException) -> str:
    """The traceback with the frames of the user's code only: never the runner's."""
    if isinstance(error, _NoMain):
        return ""
    frames = [frame for frame in extract_tb(error.__traceback__)
              if frame.filename == CODE_FILE]
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += StackSummary.from_list(frames).format()
    lines += format_exception_only(type(error), error)
    return "".join(lines)[:64 * 1024]


def _failure(capture: Capture, kind: str, message: str, trace: str = "") -> bytes:
    data = {"ok": False, "kind": kind, "message": message, "logs": capture.text()}
    if trace:
        data["traceback"] = trace
    return dumps(data, ensure_ascii=False).encode("utf-8", "replace")
