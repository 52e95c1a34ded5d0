"""Helpers of the sandbox tests: which isolation works here, and the host's view of processes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engine.ports import CodeLimits
from engine.sandbox import ProcessSandbox
from engine.sandbox.isolation import choose_isolation, detect_isolation

# Small limits keep the attacks quick: an infinite loop ends at the 2 s wall clock.
SMALL = CodeLimits(cpu_s=5, memory_mb=128, output_kb=64, wall_s=2)
PROJECT = Path(__file__).resolve().parents[2]

needs_bubblewrap = pytest.mark.skipif(
    detect_isolation().kind != "bubblewrap",
    reason=f"isolation-specific: {detect_isolation().warning.split(':')[0]}")


def isolation_params() -> list:
    """Both isolations: bubblewrap (skipped where it does not work) and the fallback."""
    return [pytest.param("bubblewrap", marks=needs_bubblewrap), "process"]


async def make_sandbox(isolation: str, workers: int = 2) -> ProcessSandbox:
    sandbox = ProcessSandbox(SMALL, workers, isolation=isolation)
    await sandbox.start()
    return sandbox


def isolated(sandbox: ProcessSandbox) -> bool:
    return sandbox.isolation.kind == "bubblewrap"


def skip_unless_isolated(sandbox: ProcessSandbox, what: str) -> None:
    if not isolated(sandbox):
        pytest.skip(f"the process fallback does not stop {what} (docs/sandbox.md)")


def skip_unless_other_user(sandbox: ProcessSandbox, what: str) -> None:
    """In the fallback only a switch to another user protects the server's processes."""
    if not isolated(sandbox) and not choose_isolation("process").drop_user:
        pytest.skip(f"the process fallback runs as the server's user here, which does not "
                    f"stop {what} (docs/sandbox.md)")


async def still_works(sandbox: ProcessSandbox) -> None:
    """A normal job right after an attack, on the same sandbox, succeeds."""
    outcome = await sandbox.run("def main(n):\n    print('fine')\n    return {'twice': 2 * n}",
                                {"n": 21}, SMALL)
    assert outcome.error is None, outcome.error
    assert outcome.result == {"twice": 42}
    assert outcome.logs == "fine\n"


def parents() -> dict[int, int]:
    """pid → parent pid of every process on the host."""
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as stat:
                    found[int(name)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return found


def descendants(roots: list[int]) -> set[int]:
    """The processes `roots` started, directly or not, and the roots themselves."""
    tree = parents()
    found = {pid for pid in roots if pid in tree}
    grown = True
    while grown:
        more = {pid for pid, parent in tree.items() if parent in found} - found
        found |= more
        grown = bool(more)
    return found


def running(pids: set[int]) -> set[int]:
    """Those of `pids` still alive (zombies count as gone)."""
    alive = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.add(pid)
        except OSError:
            continue
    return alive
