"""Where a STARTTLS login's time goes, phase by phase, and what it costs the server.

One client logs in ``--count`` times, one login after the other (as bench/loadgen.py's roster
scenario does), and times each phase from its own side: TCP connect and the first stream
features, STARTTLS's <proceed/>, the TLS handshake, the stream restarted over TLS, SCRAM-SHA-256,
resource binding, and the roster get. With ``--server-pid`` the server's CPU (utime + stime of
the process, /proc) over the whole run is divided by the logins: with an account holding a big
roster this includes the initial presence's probes (RFC 6121 §4.2.2), which the client does not
wait for.

Against a server bench/run.py provisioned (account ``r0`` holds 200 contacts, ``u5`` none):

    taskset -c 1 .venv/bin/python bench/login_phases.py --host 127.0.0.2 --port 5222 \\
        --user r0 --count 100 --server-pid PID
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import sys
import time
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench.loadgen as L  # noqa: E402

PHASES = ("connect+features", "proceed", "handshake", "features over TLS", "scram", "bind",
          "roster")


async def login_once(host: str, port: int, user: str, ctx: ssl.SSLContext) -> list[float]:
    """One full login; the duration of each of PHASES in ms."""
    marks = [time.perf_counter()]
    c = await L.login(host, port, user, True, ctx, resource=None, presence=False, marks=marks)
    c.send(b"<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>")
    await c.expect((b"id='roster1'", b'id="roster1"'))
    await c.expect(b"</iq>")
    marks.append(time.perf_counter())
    c.send(b"<presence/>")
    c.send(L.CLOSE)
    c.transport.close()
    return [1000 * (b - a) for a, b in pairwise(marks)]


def server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5222)
    p.add_argument("--user", default="r0")
    p.add_argument("--count", type=int, default=40)
    p.add_argument("--server-pid", type=int)
    a = p.parse_args()
    ctx = L.client_context()
    before = server_cpu(a.server_pid) if a.server_pid else 0.0
    runs = []
    for _ in range(a.count):
        runs.append(await login_once(a.host, a.port, a.user, ctx))
        await asyncio.sleep(0.05)  # the server finishes the presence work of this login
    await asyncio.sleep(1)
    kept = runs[min(5, len(runs) - 1):]  # the first logins warm caches on both sides
    for i, name in enumerate(PHASES):
        print(f"{name:>18}: {statistics.median(r[i] for r in kept):6.2f} ms")
    print(f"{'total':>18}: {statistics.median(sum(r) for r in kept):6.2f} ms")
    if a.server_pid:
        cpu = (server_cpu(a.server_pid) - before) * 1000 / a.count
        print(f"server CPU per login: {cpu:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
