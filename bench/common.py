"""What the bench scripts share: a free loopback port, waiting for a server to listen, the RSS
and CPU time of a server process (and its children) from /proc, a Suricate config, and the
byte-compiled package that an installed Suricate starts from.

The scripts run as ``python bench/<name>.py`` with the repository root put on ``sys.path``,
and import this module as ``bench.common``.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODULES = ("mod_presence", "mod_roster", "mod_disco", "mod_ping", "mod_offline")


def byte_compile() -> None:
    """Write the ``.pyc`` files of ``suricate/`` before any start-up is timed.

    An installed Suricate starts from byte code: ``pip install .`` and distribution packages
    compile it, and a source checkout writes it at its first start. A checkout run with
    ``PYTHONDONTWRITEBYTECODE=1`` (this machine's environment; the servers inherit it) never
    does, and then every start-up recompiles the ~90 modules it imports, ~0.1 s of CPU that no
    installation pays. ``compileall`` writes them whatever that variable says, and only for
    files whose ``.pyc`` is missing or stale (``__pycache__`` is ignored by git).
    """
    import compileall

    compileall.compile_dir(str(ROOT / "suricate"), quiet=1)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0, *, host: str = "127.0.0.1",
              proc: subprocess.Popen[bytes] | None = None, interval: float = 0.002) -> float:
    """Wait until something accepts on host:port; return the monotonic time it did.

    With ``proc``, fail as soon as that process has exited instead of waiting out the timeout.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return time.monotonic()
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        time.sleep(interval)
    raise TimeoutError(f"nothing on {host}:{port} after {timeout} s")


def tree_pids(pid: int) -> list[int]:
    """pid and its descendants (bounded), from /proc/<pid>/task/*/children."""
    out: list[int] = []
    todo = [pid]
    while todo and len(out) < 64:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            todo.extend(int(c) for c in task.read_text().split())
    return out


def rss_kib(pid: int) -> int:
    """VmRSS of a process and its children; raises if the process itself is gone."""
    total = 0
    for p in tree_pids(pid):
        try:
            text = Path(f"/proc/{p}/status").read_text()
        except FileNotFoundError:
            if p == pid:
                raise
            continue  # a child that ended meanwhile (a worker killed and restarted)
        m = re.search(r"VmRSS:\s+(\d+) kB", text)
        total += int(m.group(1)) if m else 0
    return total


def cpu_seconds(pid: int) -> float:
    """user+system CPU seconds of a process, its threads and its children."""
    total = 0
    for p in tree_pids(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def cpu_user_system(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, its threads and its children (/proc/<pid>/stat
    utime and stime)."""
    user = system = 0
    for p in tree_pids(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        user += int(fields[11])
        system += int(fields[12])
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def c2s_listener(port: int, *options: str, host: str = "127.0.0.1") -> str:
    """One ``[[listen.c2s]]`` table; ``options`` are extra ``key = value`` lines."""
    return "\n".join(["[[listen.c2s]]", f"port = {port}", f'ip_address = "{host}"', *options])


def suricate_config(database: Path, listeners: Iterable[str], *, loglevel: str = "warning",
                    general: Iterable[str] = (), auth: Iterable[str] = (),
                    modules: Iterable[str] = DEFAULT_MODULES, extra: str = "") -> str:
    """A single-host (localhost) Suricate config on SQLite, for a bench server."""
    general_lines = "\n".join(general)
    auth_lines = "\n".join(['methods = ["rdbms"]', *auth])
    listen = "\n\n".join(listeners)
    mods = "\n".join(f"[modules.{m}]" for m in modules)
    return f"""
[general]
hosts = ["localhost"]
default_server_domain = "localhost"
loglevel = "{loglevel}"
{general_lines}

{listen}

[auth]
{auth_lines}

[outgoing_pools.rdbms.default.connection]
driver = "sqlite"
database = "{database}"

{extra}

{mods}
"""
