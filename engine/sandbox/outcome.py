"""The two ends of one job on the server side: the job sent, and the outcome read back.

Everything the sandbox sends is treated as untrusted: the payload comes from a process that
ran user code, so its shape is checked and its sizes are capped here again, against the
limits of this job, whatever the runner inside already did.
"""

from __future__ import annotations

import json
import math
import signal
from typing import Any

from engine.errors import NodeError
from engine.ports import CodeLimits, CodeOutcome

PROCESS_LIMIT = 32  # RLIMIT_NPROC of user code: a fork bomb stops there
FILE_LIMIT = 64  # RLIMIT_NOFILE
FILE_MB = 64  # RLIMIT_FSIZE: the largest file the code may write (to its private /tmp)


def encode_job(code: str, inputs: dict[str, Any], limits: CodeLimits) -> bytes:
    """The job line; raises TypeError or ValueError when the inputs are not JSON."""
    return json.dumps({"code": code, "inputs": inputs, "limits": {
        "cpu_s": max(1, math.ceil(limits.cpu_s)), "memory_mb": limits.memory_mb,
        "output_bytes": limits.output_kb * 1024, "processes": PROCESS_LIMIT,
        "files": FILE_LIMIT, "file_mb": FILE_MB}}).encode()


def payload_cap(limits: CodeLimits) -> int:
    """Bytes the zygote relays at most: the result and the logs within their limits, with
    room for JSON escaping; beyond it the job is over its output limit whatever it says."""
    return 8 * limits.output_kb * 1024 + 64 * 1024


def read_outcome(status: dict[str, Any], payload: bytes,
                 limits: CodeLimits) -> tuple[CodeOutcome, bool]:
    """The job's outcome, and whether its sandbox process may take another job."""
    if status.get("overflow"):
        return _failed(_output_over(limits)), False
    data = _parse(payload)
    healthy = status.get("exit") == 0 and not status.get("dirty")
    if data is None:
        reason = _ended(status, limits) if not payload or status.get("exit") != 0 else \
            "the sandbox could not read what the code returned"
        return _failed(reason), False
    logs = _logs(data.get("logs"), limits)
    if data.get("ok") is True:
        result = data.get("result")
        if not isinstance(result, dict):
            return _failed("main must return a dict of outputs", logs), False
        if len(payload) > limits.output_kb * 1024 and _size(result) > limits.output_kb * 1024:
            return _failed(_output_over(limits), logs), False
        return CodeOutcome(result=result, logs=logs), healthy
    kind, message = data.get("kind"), data.get("message")
    if kind == "limit":
        text = {"memory": f"memory limit of {limits.memory_mb} MiB exceeded",
                "output": _output_over(limits)}.get(message, "a limit was exceeded")
        return _failed(text, logs), False
    if kind not in ("exception", "invalid") or not isinstance(message, str):
        return _failed("the sandbox answered something unexpected", logs), False
    trace = data.get("traceback")
    details = {"traceback": trace} if isinstance(trace, str) and trace else None
    # The code raised, or returned the wrong thing: its process is still sound.
    return _failed(message[:4000], logs, details), healthy


def _parse(payload: bytes) -> dict[str, Any] | None:
    if not payload:
        return None
    try:
        data = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _logs(logs: Any, limits: CodeLimits) -> str:
    if not isinstance(logs, str):
        return ""
    limit = limits.output_kb * 1024
    # The runner truncated already and said so; a tampered payload is cut here.
    return logs if len(logs) <= limit + 100 else logs[:limit]


def _size(result: dict[str, Any]) -> int:
    return len(json.dumps(result, ensure_ascii=False).encode(errors="replace"))


def _ended(status: dict[str, Any], limits: CodeLimits) -> str:
    """Why a job's process ended without an answer: a limit, a signal or an exit."""
    code = status.get("exit")
    cpu_s = status.get("cpu_s") or 0
    if not isinstance(code, int):
        return "the sandbox process ended unexpectedly"
    if code < 0:
        number = -code
        if number == signal.SIGXCPU or (number == signal.SIGKILL and cpu_s >= limits.cpu_s):
            return f"CPU time limit of {limits.cpu_s:g} s exceeded"
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = str(number)
        return f"the code was killed by signal {name}"
    return f"the code exited with status {code} before main returned"


def _output_over(limits: CodeLimits) -> str:
    return f"output over {limits.output_kb} KiB"


def _failed(message: str, logs: str = "", details: Any = None) -> CodeOutcome:
    return CodeOutcome(logs=logs, error=NodeError("code_error", message, details=details))
