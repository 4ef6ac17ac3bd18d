"""The server's CPU per SCRAM login in the c2s negotiation itself, phase by phase, in one
process: no sockets, no TLS, so the figure moves little with the machine's load (the
side-by-side logins of bench/run.py are dominated by the TLS handshake and the kernel).

A real Server on SQLite (the modules of bench/run.py's Suricate) and one C2S per login over a
recording connection, as bench/loadgen.py's clients log in: the stream header, SASL
SCRAM-SHA-256 against stored keys (4096 iterations; the client's SaltedPassword cached,
RFC 5802 §5.1), the restart, bind with a server-made resource, </stream:stream>, the end of
the connection. Each phase is the process CPU time around the server's handling of that
client step (the client's own work is outside), in µs per login; the total is the best of
``--rounds`` rounds of ``--logins`` logins.

    PYTHONPATH=. .venv/bin/python bench/login_cpu.py [--logins 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import functools
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suricate.config import parse_config  # noqa: E402
from suricate.core.c2s import C2S  # noqa: E402
from suricate.core.server import Server  # noqa: E402
from suricate.jid import JID  # noqa: E402
from suricate.modules import MODULES  # noqa: E402
from suricate.sasl import scram_client  # noqa: E402
from tests.recording_connection import RecordingConnection  # noqa: E402

HEADER = (b"<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
          b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
OPTS = {"max_stanza_size": 262144, "state_timeout": 5000, "access": "all",
        "backwards_compatible_session": True}
USERS = 20


def config(tmp: Path) -> str:
    modules = "\n".join(f"[modules.{m}]" for m in ("mod_presence", "mod_roster", "mod_disco",
                                                   "mod_ping", "mod_offline", "mod_muc"))
    return f"""
[general]
hosts = ["localhost"]
default_server_domain = "localhost"
loglevel = "error"
[auth]
methods = ["rdbms"]
sasl_mechanisms = ["scram_sha256", "plain"]
password.hash = ["sha256"]
password.scram_iterations = 4096
[outgoing_pools.rdbms.default.connection]
driver = "sqlite"
database = "{tmp}/bench.db"
{modules}
"""


async def main(logins: int, rounds: int) -> None:
    # RFC 5802 §5.1: the client caches its SaltedPassword (as bench/loadgen.py does).
    scram_client.salted_password = functools.lru_cache(maxsize=64)(  # type: ignore[assignment]
        scram_client.salted_password)
    tmp = Path(tempfile.mkdtemp(prefix="suricate-login-cpu-"))
    server = Server(parse_config(config(tmp), tmp), tmp, MODULES)
    await server.start()
    for i in range(USERS):
        await server.auth.register(JID(f"u{i}", "localhost", None), "pw")
    loop = asyncio.get_running_loop()
    phases: collections.Counter[str] = collections.Counter()
    cpu = time.process_time

    def step(name: str, c2s: C2S, data: bytes) -> None:
        start = cpu()
        c2s.data_received(data)
        phases[name] += cpu() - start

    async def login(i: int) -> None:
        start = cpu()
        conn = RecordingConnection(loop)
        c2s = C2S(server, conn, OPTS, None)  # type: ignore[arg-type]
        phases["connection"] += cpu() - start
        step("header", c2s, HEADER)
        client = scram_client.ScramClient("SHA-256", f"u{i % USERS}", "pw")
        step("auth", c2s, b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
             b"mechanism='SCRAM-SHA-256'>" + base64.b64encode(client.first()) + b"</auth>")
        out = b"".join(conn.out)
        at = out.rindex(b"<challenge")
        final = client.final(base64.b64decode(out[out.index(b">", at) + 1:
                                                  out.index(b"</challenge>", at)]))
        step("response", c2s, b"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
             + base64.b64encode(final) + b"</response>")
        step("header again", c2s, HEADER)
        step("bind", c2s, b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:"
             b"xmpp-bind'/></iq>")
        await asyncio.sleep(0)
        if b"<jid>" not in b"".join(conn.out):
            raise SystemExit(f"login failed: {b''.join(conn.out)[-300:]!r}")
        start = cpu()
        c2s.data_received(b"</stream:stream>")
        c2s.connection_lost(None)
        await asyncio.sleep(0)  # what the close left to the loop (a hook's write)
        phases["close"] += cpu() - start

    for i in range(200):  # warm up: caches, the allocator, the first logins' reads
        await login(i)
    best: list[float] = []
    phases.clear()
    for _ in range(rounds):
        start = cpu()
        for i in range(logins):
            await login(i)
        best.append(1e6 * (cpu() - start) / logins)
    await server.stop()
    total = logins * rounds
    print("server CPU per login by phase (µs): " + ", ".join(
        f"{name} {1e6 * value / total:.1f}" for name, value in phases.items()))
    print(f"whole login (server and client, best of {rounds}): {min(best):.1f} µs; "
          f"server phases together: {1e6 * sum(phases.values()) / total:.1f} µs")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--logins", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args()
    asyncio.run(main(a.logins, a.rounds))
