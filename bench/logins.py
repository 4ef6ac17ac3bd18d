"""Logins per second, side by side in one run: SCRAM-SHA-256 over TLS, FAST over TLS, and FAST
in TLS 1.3 0-RTT (XEP-0484 HT-SHA-256-NONE with the replay counter).

    .venv/bin/python bench/logins.py [--duration 5] [--workers 2] [--iterations 10000]
                                     [--server-cores 0 --client-cores 1]

The server runs in its own process (one core, as in DESIGN §6) on a Direct TLS listener with
early data. Each client worker opens a new TCP connection per login and goes all the way to a
bound session (SASL2 + Bind 2 in the same request), then closes the stream. Clients cache
the SCRAM salted password (RFC 5802 §5.1 allows it and real clients do), so the figure is
the server's cost, not the client's PBKDF2.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import c2s_listener, cpu_seconds, free_port, suricate_config  # noqa: E402
from suricate.sasl import scram_client  # noqa: E402
from tests.mobile.client import authenticate_xml, bind2, ht_response, request_token  # noqa: E402
from tests.mobile.zero_rtt import STREAM_OPEN, ZeroRttClient, client_context  # noqa: E402

MODES = ("scram", "fast", "fast_0rtt")
LABELS = {"scram": "SCRAM-SHA-256 over TLS", "fast": "FAST (HT-SHA-256-NONE) over TLS",
          "fast_0rtt": "FAST in TLS 1.3 0-RTT"}


def config(tmp: Path, port: int, iterations: int) -> str:
    from suricate.net.certs import ensure_self_signed

    cert, _ = ensure_self_signed(tmp / "certs", ["localhost"])
    listener = c2s_listener(
        port, "backlog = 4096", 'tls.mode = "tls"', f'tls.certfile = "{cert.certfile}"',
        f'tls.keyfile = "{cert.keyfile}"', 'tls.verify_mode = "none"', "tls.early_data = true",
        'tls.session_tickets = "stateless"', "max_stanza_size = 65536")
    return suricate_config(
        tmp / "bench.db", [listener],
        auth=['password.hash = ["sha256"]', f"password.scram_iterations = {iterations}"],
        modules=("mod_sasl2", "mod_bind2", "mod_fast_auth_token", "mod_stream_management",
                 "mod_presence", "mod_roster"))


def pin(cores: str | None) -> None:
    if cores:
        os.sched_setaffinity(0, {int(c) for c in cores.split(",")})


def run_server(tmp: str, port: int, iterations: int, users: int, ready: Any,
               cores: str | None = None) -> None:
    pin(cores)
    from suricate.config import parse_config
    from suricate.core.server import Server
    from suricate.jid import JID
    from suricate.modules import MODULES

    async def main() -> None:
        cfg = parse_config(config(Path(tmp), port, iterations), Path(tmp))
        server = Server(cfg, Path(tmp), MODULES)
        await server.start()
        for i in range(users):
            await server.auth.register(JID(f"user{i}", "localhost", None), "secret")
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


# -- one login of each kind ----------------------------------------------------------------------


def login_scram(port: int, ctx: Any, user: str) -> None:
    c = ZeroRttClient(port, ctx)
    c.send(STREAM_OPEN)
    c.expect(r"</stream:features>")
    scram = scram_client.ScramClient("SHA-256", user, "secret")
    c.send(f"<authenticate xmlns='urn:xmpp:sasl:2' mechanism='SCRAM-SHA-256'>"
           f"<initial-response>{base64.b64encode(scram.first()).decode()}</initial-response>"
           f"<user-agent id='bench-scram'/>{bind2('bench')}</authenticate>")
    challenge = c.expect(r"<challenge xmlns='urn:xmpp:sasl:2'>(.*?)</challenge>").group(1)
    final = scram.final(base64.b64decode(challenge))
    c.send(f"<response xmlns='urn:xmpp:sasl:2'>{base64.b64encode(final).decode()}</response>")
    c.expect(r"<success xmlns='urn:xmpp:sasl:2'>.*?</success>")
    c.send("</stream:stream>")
    c.close()


def get_token(port: int, ctx: Any, user: str, agent: str) -> tuple[str, Any]:
    c = ZeroRttClient(port, ctx)
    c.send(STREAM_OPEN)
    c.expect(r"</stream:features>")
    c.send(authenticate_xml("PLAIN", f"\0{user}\0secret".encode(), agent,
                            bind2("bench") + request_token("HT-SHA-256-NONE")))
    token = c.expect(r"<token [^>]*token='([^']+)'").group(1)
    session = c.session()
    c.send("</stream:stream>")
    c.close()
    return token, session


def login_fast(port: int, ctx: Any, user: str, token: str, agent: str, count: int,
               session: Any = None) -> None:
    auth = authenticate_xml("HT-SHA-256-NONE", ht_response(user, token, "HT-SHA-256-NONE", b""),
                            agent, bind2("bench") + f"<fast xmlns='urn:xmpp:fast:0' count='{count}'/>")
    if session is not None:
        c = ZeroRttClient(port, ctx, session, early=STREAM_OPEN + auth)
    else:
        c = ZeroRttClient(port, ctx)
        c.send(STREAM_OPEN)
        c.expect(r"</stream:features>")
        c.send(auth)
    c.expect(r"<success xmlns='urn:xmpp:sasl:2'>.*?</success>")
    c.send("</stream:stream>")
    c.close()


def worker(mode: str, port: int, index: int, duration: float, start: Any, out: Any,
           cores: str | None = None) -> None:
    pin(cores)
    # RFC 5802 §5.1: a client may cache the salted password for a salt and iteration count.
    scram_client.salted_password = functools.lru_cache(maxsize=16)(  # type: ignore[assignment]
        scram_client.salted_password)
    ctx = client_context()
    user = f"user{index}"
    agent = f"bench-{mode}-{index}"
    token, session = (get_token(port, ctx, user, agent) if mode != "scram" else ("", None))
    start.wait()
    deadline = time.monotonic() + duration
    done = 0
    count = 0
    while time.monotonic() < deadline:
        count += 1
        if mode == "scram":
            login_scram(port, ctx, user)
        elif mode == "fast":
            login_fast(port, ctx, user, token, agent, count)
        else:
            login_fast(port, ctx, user, token, agent, count, session)
        done += 1
    out.put(done)


def measure(mode: str, port: int, workers: int, duration: float, server_pid: int,
            cores: str | None = None) -> tuple[float, float]:
    """Logins per second and the server's CPU milliseconds per login."""
    start = mp.Event()
    out: Any = mp.Queue()
    procs = [mp.Process(target=worker, args=(mode, port, i, duration, start, out, cores))
             for i in range(workers)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # tokens fetched, TLS sessions ready
    began = time.monotonic()
    cpu0 = cpu_seconds(server_pid)
    start.set()
    total = sum(out.get(timeout=duration + 60) for _ in procs)
    elapsed = time.monotonic() - began
    cpu = cpu_seconds(server_pid) - cpu0
    for p in procs:
        p.join()
    return total / elapsed, 1000 * cpu / max(total, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2, help="client processes")
    parser.add_argument("--iterations", type=int, default=10000, help="SCRAM iterations")
    parser.add_argument("--server-cores", help="pin the server process to these cores (0,1)")
    parser.add_argument("--client-cores", help="pin the client processes to these cores")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        ready = mp.Event()
        server = mp.Process(target=run_server,
                            args=(tmp, port, args.iterations, args.workers, ready,
                                  args.server_cores), daemon=True)
        server.start()
        if not ready.wait(30):
            raise SystemExit("server did not start")
        assert server.pid is not None
        results = {mode: measure(mode, port, args.workers, args.duration, server.pid,
                                 args.client_cores) for mode in MODES}
        server.terminate()
        server.join()
    print(f"logins/s, {args.workers} client processes x {args.duration:.0f} s each, "
          f"server on one process, new TCP+TLS 1.3 connection per login, SASL2 + Bind 2")
    print(f"  {'':<34} {'logins/s':>8}   ratio   server CPU ms/login")
    for mode in MODES:
        rate, cpu_ms = results[mode]
        ratio = rate / results["scram"][0]
        print(f"  {LABELS[mode]:<34} {rate:8.0f}   x{ratio:.2f}   {cpu_ms:6.3f}")


if __name__ == "__main__":
    main()
