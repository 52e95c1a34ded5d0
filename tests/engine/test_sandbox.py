"""The code sandbox itself (docs/sandbox.md): real processes, real attacks, no mocks.

Every attack must end as a clean error or a refused action, and the same sandbox must run
a normal job right after it.
"""

import asyncio
import os
import socket
import time

import pytest

from engine.ports import CodeLimits
from engine.sandbox import ProcessSandbox, sandbox_status
from engine.sandbox.outcome import PROCESS_LIMIT

from .sandboxes import (
    PROJECT,
    SMALL,
    descendants,
    isolation_params,
    make_sandbox,
    needs_bubblewrap,
    parents,
    running,
    skip_unless_isolated,
    skip_unless_other_user,
    still_works,
)


@pytest.fixture(params=isolation_params())
async def sandbox(request):
    sandbox = await make_sandbox(request.param)
    yield sandbox
    await sandbox.close()


async def run(sandbox, code, limits=SMALL, **inputs):
    return await sandbox.run(code, inputs, limits)


# -- what user code gets back ----------------------------------------------------------------


async def test_main_is_called_with_the_inputs_and_prints_are_captured(sandbox):
    outcome = await run(sandbox, "def main(a, b):\n    print('adding', a, b)\n"
                                 "    return {'sum': a + b, 'inputs': [a, b]}", a=2, b=3.5)
    assert outcome.error is None
    assert outcome.result == {"sum": 5.5, "inputs": [2, 3.5]}
    assert outcome.logs == "adding 2 3.5\n"


async def test_an_exception_is_a_code_error_with_only_the_users_traceback(sandbox):
    code = "def check(x):\n    raise RuntimeError('kaput')\n\ndef main():\n    print('before')\n" \
           "    check(1)\n"
    outcome = await run(sandbox, code)
    error = outcome.error
    assert (error.code, error.message) == ("code_error", "RuntimeError: kaput")
    trace = error.details["traceback"]
    assert trace.startswith("Traceback (most recent call last):\n")
    assert 'File "<code>", line 6, in main' in trace
    assert 'File "<code>", line 2, in check' in trace
    assert trace.rstrip().endswith("RuntimeError: kaput")
    assert trace.count("File ") == 2  # no frame of the runner, the engine or the server
    for word in ("runner", "usercode", "engine", "site-packages", str(PROJECT)):
        assert word not in trace
    assert outcome.logs == "before\n"
    await still_works(sandbox)


async def test_division_by_zero_names_the_exception(sandbox):
    outcome = await run(sandbox, "def main(a, b):\n    return {'q': a / b}", a=1, b=0)
    assert outcome.error.message == "ZeroDivisionError: division by zero"


async def test_a_result_that_is_not_a_dict_is_a_code_error(sandbox):
    outcome = await run(sandbox, "def main():\n    return [1, 2]")
    assert outcome.error.code == "code_error"
    assert outcome.error.message == "main must return a dict of outputs, not list"
    await still_works(sandbox)


async def test_a_result_that_is_not_json_is_a_code_error(sandbox):
    for value in ("{1, 2}", "float('nan')", "object()"):
        outcome = await run(sandbox, f"def main():\n    return {{'v': {value}}}")
        assert outcome.error.code == "code_error"
        assert outcome.error.message.startswith("main returned a value that is not JSON: ")
    await still_works(sandbox)


async def test_state_does_not_carry_over_from_one_job_to_the_next(sandbox):
    first = await run(sandbox, "import json, builtins\nLEAK = 1\n"
                               "def main(secret):\n    builtins.leak = secret\n"
                               "    json.dumps = lambda *a, **k: 'tampered'\n    return {}",
                      secret="run A's data")
    assert first.error is None
    for _ in range(3):  # whichever process of the pool takes it
        second = await run(sandbox, "import builtins, json\ndef main():\n"
                                    "    return {'leak': getattr(builtins, 'leak', None),"
                                    " 'dumps': json.dumps([1])}")
        assert second.result == {"leak": None, "dumps": "[1]"}


async def test_each_job_draws_its_own_random_numbers(sandbox):
    """Jobs are forks of one process: the random module must not repeat itself."""
    code = "import random\ndef main():\n    return {'r': random.random()}"
    draws = [(await run(sandbox, code)).result["r"] for _ in range(4)]
    assert len(set(draws)) == 4


async def test_files_written_to_tmp_are_not_seen_by_the_next_job(sandbox):
    written = await run(sandbox, "import os\ndef main():\n"
                                 "    open('secret.txt', 'w').write('run A')\n"
                                 "    return {'where': os.getcwd()}")
    assert written.error is None
    for _ in range(3):
        later = await run(sandbox, "import os\ndef main():\n    return {'seen': os.listdir('.')}")
        assert later.result == {"seen": []}


# -- limits ----------------------------------------------------------------------------------


async def test_an_infinite_loop_ends_at_the_wall_clock_limit(sandbox):
    started = time.monotonic()
    outcome = await run(sandbox, "def main():\n    while True:\n        pass")
    assert time.monotonic() - started < SMALL.wall_s + 1.5
    assert outcome.error.code == "timeout"
    assert "wall-clock limit of 2 s" in outcome.error.message
    await still_works(sandbox)


async def test_sleeping_past_the_wall_clock_is_a_timeout_too(sandbox):
    outcome = await run(sandbox, "import time\ndef main():\n    time.sleep(60)")
    assert outcome.error.code == "timeout"
    await still_works(sandbox)


async def test_cpu_time_limit_names_the_limit(sandbox):
    limits = CodeLimits(cpu_s=1, memory_mb=128, output_kb=64, wall_s=10)
    outcome = await run(sandbox, "def main():\n    while True:\n        pass", limits)
    assert (outcome.error.code, outcome.error.message) == (
        "code_error", "CPU time limit of 1 s exceeded")
    await still_works(sandbox)


@pytest.mark.parametrize("bomb", [
    "def main():\n    x = bytearray(1 << 34)\n    return {}",
    "def main():\n    chunks = []\n    while True:\n        chunks.append(' ' * 1_000_000)",
])
async def test_a_memory_bomb_is_a_code_error_naming_the_memory_limit(sandbox, bomb):
    outcome = await run(sandbox, bomb)
    assert (outcome.error.code, outcome.error.message) == (
        "code_error", "memory limit of 128 MiB exceeded")
    await still_works(sandbox)


async def test_os_exit_is_a_code_error(sandbox):
    outcome = await run(sandbox, "import os\ndef main():\n    print('bye')\n    os._exit(3)")
    assert outcome.error.code == "code_error"
    assert outcome.error.message == "the code exited with status 3 before main returned"
    await still_works(sandbox)


async def test_a_fork_bomb_is_contained(sandbox):
    skip_unless_other_user(sandbox, "a fork bomb (RLIMIT_NPROC does not apply to root)")
    before = len(parents())
    code = ("import os, time\ndef main():\n    forks = 0\n    try:\n        while True:\n"
            "            if os.fork() == 0:\n                time.sleep(60)\n"
            "                os._exit(0)\n            forks += 1\n"
            "    except OSError as error:\n        return {'forks': forks, 'error': str(error)}")
    outcome = await run(sandbox, code)
    assert outcome.error is None
    assert outcome.result["forks"] < PROCESS_LIMIT
    assert "Resource temporarily unavailable" in outcome.result["error"]
    assert len(parents()) < before + PROCESS_LIMIT + 10
    await still_works(sandbox)
    # The sleeping forks went with their sandbox process.
    deadline = time.monotonic() + 3
    while len(parents()) > before + 5 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert len(parents()) <= before + 5


async def test_a_classic_fork_bomb_ends_as_a_clean_error(sandbox):
    skip_unless_other_user(sandbox, "a fork bomb (RLIMIT_NPROC does not apply to root)")
    outcome = await run(sandbox, "import os\ndef main():\n    while True:\n        os.fork()")
    assert outcome.error.code == "code_error"
    assert outcome.error.message.startswith("BlockingIOError: ")
    await still_works(sandbox)


async def test_a_huge_result_is_a_code_error_naming_the_output_limit(sandbox):
    outcome = await run(sandbox, "def main():\n    return {'text': 'x' * 100_000}")
    assert (outcome.error.code, outcome.error.message) == ("code_error", "output over 64 KiB")
    await still_works(sandbox)


async def test_huge_prints_are_truncated(sandbox):
    outcome = await run(sandbox, "def main():\n    for i in range(20_000):\n"
                                 "        print('y' * 100)\n    return {'done': True}")
    assert outcome.result == {"done": True}
    assert outcome.logs.endswith("\n[output truncated at 64 KiB]")
    assert len(outcome.logs.encode()) < 64 * 1024 + 100
    await still_works(sandbox)


async def test_writing_to_raw_file_descriptors_cannot_forge_a_result(sandbox):
    """The code may spoil its own answer (the result pipe is one of its descriptors) but it
    cannot reach the channel to the server: no forged status, no effect on the next job."""
    code = ("import os\ndef main():\n"
            "    for fd in range(0, 20):\n        try:\n"
            "            os.write(fd, b'{\"exit\": 0, \"size\": 2}\\n{}')\n"
            "        except OSError:\n            pass\n"
            "    return {'honest': True}")
    outcome = await run(sandbox, code)
    assert outcome.result is None
    assert outcome.error.code == "code_error"
    await still_works(sandbox)


# -- isolation -------------------------------------------------------------------------------


async def test_there_is_no_network(sandbox):
    skip_unless_isolated(sandbox, "network access")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        ports = [5432, 6379, listener.getsockname()[1]]
        code = ("import socket\ndef main(ports):\n    found = {}\n    for port in ports:\n"
                "        try:\n            socket.create_connection(('127.0.0.1', port), 1)\n"
                "            found[str(port)] = 'connected'\n"
                "        except OSError as error:\n            found[str(port)] = str(error)\n"
                "    names = [name for _, name in socket.if_nameindex()]\n"
                "    return {'found': found, 'interfaces': names}")
        outcome = await run(sandbox, code, ports=ports)
    finally:
        listener.close()
    assert outcome.error is None
    assert "connected" not in outcome.result["found"].values()
    assert outcome.result["interfaces"] == ["lo"]
    await still_works(sandbox)


async def test_the_servers_environment_cannot_be_read(sandbox, monkeypatch):
    skip_unless_other_user(sandbox, "reading the server's /proc/PID/environ")
    secret = "astron-test-secret-5f1c9e"
    monkeypatch.setenv("ASTRON_TEST_SECRET", secret)
    code = ("import os\ndef main(pids):\n    seen = dict(os.environ)\n"
            "    texts = []\n"
            "    names = [n for n in os.listdir('/proc') if n.isdigit()]\n"
            "    for pid in [*pids, *names, 'self']:\n"
            "        for part in ('environ', 'cmdline'):\n            try:\n"
            "                texts.append(open(f'/proc/{pid}/{part}', 'rb').read().decode())\n"
            "            except OSError:\n                pass\n"
            "    return {'env': seen, 'texts': texts}")
    pids = [os.getpid(), os.getppid(), 1]
    outcome = await run(sandbox, code, pids=pids)
    assert outcome.error is None
    assert outcome.result["env"] == {}
    assert not any(secret in text for text in outcome.result["texts"])
    await still_works(sandbox)


async def test_other_processes_are_not_visible(sandbox):
    skip_unless_isolated(sandbox, "seeing other processes")
    outcome = await run(sandbox, "import os\ndef main():\n"
                                 "    return {'pids': sorted(int(n) for n in os.listdir('/proc')"
                                 " if n.isdigit())}")
    pids = outcome.result["pids"]
    assert len(pids) == 3 and pids[:2] == [1, 2]  # bwrap's init, the zygote, this job


async def test_the_projects_files_cannot_be_found_or_read(sandbox):
    skip_unless_isolated(sandbox, "reading files the server's user can read")
    paths = [str(PROJECT / "engine" / "__init__.py"), str(PROJECT), "/work", "/etc/passwd",
             "/etc", "/home", os.path.expanduser("~/.bashrc"), os.__file__.rsplit("/", 1)[0]
             + "/site-packages"]
    code = ("import os\ndef main(paths):\n    found = {}\n    for path in paths:\n"
            "        try:\n            found[path] = os.listdir(path) if os.path.isdir(path)"
            " else open(path).read()[:50]\n"
            "        except OSError as error:\n            found[path] = type(error).__name__\n"
            "    return {'found': found}")
    outcome = await run(sandbox, code, paths=paths)
    found = outcome.result["found"]
    for path in paths[:-1]:
        assert found[path] in ("FileNotFoundError", "PermissionError"), (path, found[path])
    assert found[paths[-1]] in ([], "FileNotFoundError")  # installed packages are hidden
    await still_works(sandbox)


async def test_the_file_system_is_read_only_but_tmp(sandbox):
    skip_unless_isolated(sandbox, "writing where the server's user may write")
    code = ("import os, sys\ndef main():\n    results = {}\n"
            "    for path in ['/x', sys.executable + '.x', os.__file__, '/tmp/x']:\n"
            "        try:\n            open(path, 'a').close()\n            results[path] = 'ok'\n"
            "        except OSError as error:\n            results[path] = type(error).__name__\n"
            "    return {'results': results}")
    outcome = await run(sandbox, code)
    results = outcome.result["results"]
    assert results.pop("/tmp/x") == "ok"
    assert set(results.values()) <= {"PermissionError", "OSError", "FileNotFoundError"}


@needs_bubblewrap
async def test_code_runs_as_an_unprivileged_user():
    sandbox = await make_sandbox("bubblewrap", workers=1)
    try:
        outcome = await run(sandbox, "import os\ndef main():\n    status = open('/proc/self/status')"
                                     ".read()\n    caps = [l for l in status.splitlines()"
                                     " if l.startswith('CapEff')]\n"
                                     "    return {'uid': os.getuid(), 'caps': caps}")
    finally:
        await sandbox.close()
    if os.geteuid() == 0:
        assert outcome.result["uid"] == 65534
    assert outcome.result["caps"] == ["CapEff:\t0000000000000000"]


# -- the pool --------------------------------------------------------------------------------


async def test_processes_are_started_ahead_of_the_jobs(sandbox):
    assert len(sandbox.pids) == 2
    await still_works(sandbox)
    assert len(sandbox.pids) == 2


async def test_a_misbehaving_job_gets_its_process_replaced(sandbox):
    before = set(sandbox.pids)
    await run(sandbox, "import os\ndef main():\n    os._exit(1)")
    deadline = time.monotonic() + 5
    while (len(sandbox.pids) < 2 or set(sandbox.pids) == before) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert len(sandbox.pids) == 2 and set(sandbox.pids) != before


async def test_many_concurrent_jobs_share_the_pool(sandbox):
    code = "import time\ndef main(n):\n    time.sleep(0.02)\n    return {'n': n}"
    outcomes = await asyncio.gather(*(run(sandbox, code, n=n) for n in range(24)))
    assert [o.result for o in outcomes] == [{"n": n} for n in range(24)]
    assert len(sandbox.pids) <= 2


async def test_cancelling_a_job_kills_its_process_at_once(sandbox):
    task = asyncio.create_task(run(sandbox, "def main():\n    while True:\n        pass"))
    await asyncio.sleep(0.3)
    # The busy process is the one with the job's child under it.
    tree = max((descendants([pid]) for pid in sandbox.pids), key=len)
    assert len(tree) >= 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 1
    while running(tree) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert running(tree) == set()
    await still_works(sandbox)


async def test_close_kills_every_process():
    sandbox = await make_sandbox("auto")
    tree = descendants(sandbox.pids)
    await sandbox.close()
    deadline = time.monotonic() + 1
    while running(tree) and time.monotonic() < deadline:  # bwrap's init goes a moment later
        await asyncio.sleep(0.02)
    assert running(tree) == set()
    with pytest.raises(RuntimeError):
        await run(sandbox, "def main():\n    return {}")


def test_sandbox_status_says_how_code_is_isolated():
    status = sandbox_status()
    assert status["isolation"] in ("bubblewrap", "process")
    assert (status["warning"] == "") == (status["isolation"] == "bubblewrap")
    assert status["detail"]


def test_an_unknown_isolation_is_refused():
    with pytest.raises(ValueError):
        ProcessSandbox(SMALL, isolation="chroot")
