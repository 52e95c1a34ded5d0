"""How a sandbox process is started: under bubblewrap when it works on this machine, else as
a plain process with resource limits, and what the platform should say about it.

The choice is made once per server process (`detect_isolation`), by starting a real sandbox:
a bwrap that is installed but cannot create namespaces here (some containers) falls back too.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

SANDBOX_UID = SANDBOX_GID = 65534  # "nobody": the user code's user when the server is root
RUNNER = Path(__file__).resolve().with_name("runner.py")
USERCODE = RUNNER.with_name("usercode.py")  # imported by the runner from its own directory
RUNNER_INSIDE = "/sandbox/runner.py"
TMP_BYTES = 64 * 1024 * 1024  # the private /tmp of a bubblewrap sandbox (tmpfs is memory)
DOCS = "docs/sandbox.md"


@dataclass(frozen=True, slots=True)
class Isolation:
    kind: str  # "bubblewrap" or "process"
    drop_user: bool  # the runner switches to SANDBOX_UID (possible only when we are root)
    warning: str = ""
    bwrap: str = ""
    sized_tmp: bool = False  # this bwrap knows --size (0.8): /tmp is capped at TMP_BYTES
    no_userns: bool = False  # this bwrap knows --disable-userns (used when not root)

    def command(self, workdir: str | None = None) -> list[str]:
        """The argv of one sandbox process; `workdir` is the process fallback's cwd."""
        if self.kind == "bubblewrap":
            return bubblewrap_command(self)
        assert workdir is not None
        argv = [interpreter(), "-I", "-S", "-B", str(RUNNER), "--scope", "group",
                "--workdir", workdir]
        return argv + self.user_args()

    def describe(self) -> str:
        user = f"uid {SANDBOX_UID}" if self.drop_user else "the server's own user"
        if self.kind == "bubblewrap":
            return (f"bubblewrap: new PID, network, IPC and UTS namespaces, the Python "
                    f"standard library read-only, a private /tmp, rlimits, as {user}")
        return f"a plain process with rlimits and an empty environment, as {user}"

    def user_args(self) -> list[str]:
        if not self.drop_user:
            return []
        return ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID)]


def interpreter() -> str:
    """The real interpreter, not a venv's link to it: the venv is not visible in a sandbox."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def bubblewrap_command(isolation: Isolation) -> list[str]:
    args = [isolation.bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session",
            "--hostname", "sandbox"]
    if os.geteuid() == 0:
        # Privileged bwrap keeps every capability unless told otherwise; the runner needs
        # two of them only to switch to the unprivileged user before anything else.
        args += ["--cap-drop", "ALL"]
        if isolation.drop_user:
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    elif isolation.no_userns:
        args += ["--unshare-user", "--disable-userns"]
    args += filesystem_args()
    args += ["--proc", "/proc", "--dev", "/dev"]
    if isolation.sized_tmp:
        args += ["--size", str(TMP_BYTES)]
    args += ["--perms", "1777", "--tmpfs", "/tmp", "--chdir", "/tmp"]
    args += ["--", interpreter(), "-I", "-S", "-B", RUNNER_INSIDE, "--scope", "namespace",
             "--workdir", "/tmp"]
    return args + isolation.user_args()


@functools.cache
def filesystem_args() -> tuple[str, ...]:
    """The read-only file system of a sandbox: the interpreter, its standard library and the
    shared libraries they load, each at its own path (the interpreter's binary names its
    library directory absolutely), and the runner; site-packages hidden. Nothing else."""
    links: dict[str, str] = {}
    binds = {_follow_links(path, links) for path in visible_paths()}
    links = {link: target for link, target in links.items()
             if not any(_within(link, bound) for bound in binds)}
    dirs = set()
    for path in [*binds, *links, RUNNER_INSIDE]:
        for parent in map(str, Path(path).parents):
            if parent != "/" and not any(_within(parent, bound) for bound in binds):
                dirs.add(parent)
    args: list[str] = []
    # bwrap makes missing parents with mode 0700: the unprivileged user could not pass them.
    for directory in sorted(dirs - set(links), key=lambda p: p.count("/")):
        args += ["--perms", "0755", "--dir", directory]
    for path in sorted(binds, key=lambda p: p.count("/")):
        args += ["--ro-bind", path, path]
    for link, target in sorted(links.items()):
        args += ["--symlink", target, link]
    for hidden in hidden_paths():
        if any(_within(hidden, bound) for bound in binds):
            args += ["--tmpfs", hidden]
    return (*args, "--ro-bind", str(RUNNER), RUNNER_INSIDE,
            "--ro-bind", str(USERCODE), f"{os.path.dirname(RUNNER_INSIDE)}/usercode.py")


def visible_paths() -> list[str]:
    stdlib = sysconfig.get_path("stdlib")  # in a venv too, the base interpreter's
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
    paths = [interpreter(), stdlib, sysconfig.get_path("platstdlib", vars=base)]
    if sysconfig.get_config_var("Py_ENABLE_SHARED"):
        library = os.path.join(sysconfig.get_config_var("LIBDIR") or "",
                               sysconfig.get_config_var("INSTSONAME") or "")
        if os.path.isfile(library):
            paths.append(library)
    multiarch = sysconfig.get_config_var("MULTIARCH")
    system = [f"/lib/{multiarch}", f"/usr/lib/{multiarch}"] if multiarch else ["/lib", "/usr/lib"]
    # /lib64 holds the dynamic loader on most 64-bit systems.
    system += ["/lib64", "/usr/lib64"]
    return paths + [path for path in system if os.path.isdir(path)]


def hidden_paths() -> list[str]:
    """Third-party packages installed into the base interpreter: not the standard library."""
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
    found = {os.path.realpath(sysconfig.get_path(name, vars=base)) for name in ("purelib",
                                                                                "platlib")}
    return sorted(path for path in found if os.path.isdir(path))


def _follow_links(path: str, links: dict[str, str]) -> str:
    """The real path of `path`, noting each symlink met on the way so that the sandbox can
    have the same one (/lib → usr/lib on merged-/usr systems)."""
    current = "/"
    for part in Path(path).parts[1:]:
        candidate = os.path.join(current, part)
        if os.path.islink(candidate):
            links[candidate] = os.readlink(candidate)
            current = os.path.realpath(candidate)
        else:
            current = candidate
    return current


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


# -- choosing ---------------------------------------------------------------------------------


def choose_isolation(choice: str = "auto") -> Isolation:
    """`auto`: bubblewrap when it works here, else the process fallback. `bubblewrap` fails
    when it does not work; `process` always uses the fallback (for tests and comparison)."""
    if choice == "process":
        return _fallback("")
    found = detect_isolation()
    if choice == "bubblewrap" and found.kind != "bubblewrap":
        raise RuntimeError(f"bubblewrap is not usable here: {found.warning}")
    return found


@functools.cache
def detect_isolation() -> Isolation:
    """Run once per process; synchronous (tens of milliseconds), so call it at start-up or
    from a thread, not from a coroutine."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return _fallback("bubblewrap (bwrap) is not installed")
    try:
        usage = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10,
                               env={}).stdout
    except (OSError, subprocess.SubprocessError) as error:
        return _fallback(f"bwrap does not run: {error}")
    if "--perms" not in usage:
        return _fallback("bwrap is too old (0.5 or newer is needed)")
    candidate = Isolation("bubblewrap", drop_user=os.geteuid() == 0, bwrap=bwrap,
                          sized_tmp="--size" in usage, no_userns="--disable-userns" in usage)
    problem = probe(candidate)
    if problem:
        return _fallback(f"bubblewrap does not work here ({problem})")
    return candidate


def probe(isolation: Isolation) -> str:
    """Start one sandbox and wait for its ready line; the problem, or "" when it works."""
    try:
        started = subprocess.run(isolation.command("/"), stdin=subprocess.DEVNULL,
                                 capture_output=True, timeout=30, env={}, cwd="/")
    except (OSError, subprocess.SubprocessError) as error:
        return str(error)
    first = started.stdout.split(b"\n", 1)[0]
    try:
        ready = json.loads(first)
    except ValueError:
        ready = None
    expected = SANDBOX_UID if isolation.drop_user else os.getuid()
    if not isinstance(ready, dict) or ready.get("uid") != expected:
        return started.stderr.decode(errors="replace").strip()[-300:] or "no ready line"
    return ""


def _fallback(reason: str) -> Isolation:
    # As root, the runner can switch to SANDBOX_UID, provided that user can still read the
    # standard library (a pyenv build under /root cannot be).
    drop = os.geteuid() == 0 and all(_open_to_others(p) for p in visible_paths()[:3])
    user = f"uid {SANDBOX_UID}" if drop else "the server's user"
    warning = ""
    if reason:
        warning = (f"{reason}: code nodes run in plain processes with rlimits only, which do "
                   "not stop them from using the network, seeing other processes or reading "
                   f"files readable by {user}")
        if os.geteuid() == 0 and not drop:
            warning += ", and running as root they are not even held by the process limit"
        warning += f" (see {DOCS})"
    return Isolation("process", drop_user=drop, warning=warning)


def _open_to_others(path: str) -> bool:
    """Whether SANDBOX_UID could use `path`: every directory on the way searchable by others."""
    for parent in [*reversed(Path(path).parents), Path(path)]:
        try:
            mode = os.stat(parent).st_mode
        except OSError:
            return False
        needed = stat.S_IXOTH if stat.S_ISDIR(mode) else stat.S_IROTH
        if parent == Path(path) and stat.S_ISDIR(mode):
            needed |= stat.S_IROTH
        if mode & needed != needed:
            return False
    return True


def sandbox_status() -> dict[str, str]:
    """What the platform logs at start and shows on the admin dashboard."""
    isolation = detect_isolation()
    return {"isolation": isolation.kind, "warning": isolation.warning,
            "detail": isolation.describe()}
