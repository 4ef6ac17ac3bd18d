"""Core figures of a running Suricate: start-up time to accepting connections, and RSS per idle
logged-in connection (plain TCP and STARTTLS), measured from outside the server process.

    .venv/bin/python bench/core_figures.py --connections 1000 --startups 5

The load is generated here, in another process: raw sockets, pre-built stanzas, PLAIN login
(SCRAM-stored password), resource bind and initial presence, then the connections sit idle
while the server's VmRSS is read from /proc. Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import (  # noqa: E402
    byte_compile,
    c2s_listener,
    free_port,
    rss_kib,
    suricate_config,
    wait_port,
)
from suricate.net.certs import ensure_self_signed  # noqa: E402

HEADER = ("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")


def write_config(tmp: Path, plain: int, starttls: int) -> Path:
    cert, _ = ensure_self_signed(tmp / "certs", ["localhost"])
    path = tmp / "bench.toml"
    path.write_text(suricate_config(tmp / "bench.db", [
        c2s_listener(plain, "backlog = 4096"),
        c2s_listener(starttls, "backlog = 4096", 'tls.mode = "starttls"',
                     f'tls.certfile = "{cert.certfile}"', f'tls.keyfile = "{cert.keyfile}"',
                     'tls.verify_mode = "none"'),
    ], loglevel="error"))
    return path


def start_server(config: Path) -> tuple[subprocess.Popen[bytes], float]:
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "suricate", "serve", "--config", str(config)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=sys.stderr)
    return proc, t0


async def read_until(reader: asyncio.StreamReader, marker: bytes, buf: bytearray) -> None:
    while marker not in buf:
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError(f"closed before {marker!r}: {bytes(buf)[-200:]!r}")
        buf += chunk
    del buf[: buf.index(marker) + len(marker)]


async def login(port: int, user: str, tls: bool, ctx: ssl.SSLContext) -> asyncio.StreamWriter:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    buf = bytearray()
    writer.write(HEADER.encode())
    await read_until(reader, b"</stream:features>", buf)
    if tls:
        writer.write(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await read_until(reader, b"<proceed", buf)
        await writer.start_tls(ctx, server_hostname="localhost")
        buf.clear()
        writer.write(HEADER.encode())
        await read_until(reader, b"</stream:features>", buf)
    token = base64.b64encode(f"\0{user}\0pw".encode()).decode()
    writer.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}"
                 "</auth>".encode())
    await read_until(reader, b"<success", buf)
    writer.write(HEADER.encode())
    await read_until(reader, b"</stream:features>", buf)
    writer.write(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"
                 b"<presence/>")
    await read_until(reader, b"</iq>", buf)
    return writer


async def hold(port: int, n: int, tls: bool, parallel: int = 50) -> list[asyncio.StreamWriter]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    sem = asyncio.Semaphore(parallel)

    async def one(i: int) -> asyncio.StreamWriter:
        async with sem:
            return await login(port, f"u{i}", tls, ctx)

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def register(config: Path, n: int) -> None:
    code = (
        "import asyncio,sys\n"
        "from pathlib import Path\n"
        "from suricate.config import load_config\n"
        "from suricate.core.server import Server\n"
        "from suricate.jid import JID\n"
        "async def main():\n"
        f"    cfg = load_config(Path({str(config)!r}))\n"
        f"    s = Server(cfg, Path({str(config.parent)!r}), {{}})\n"
        "    await s.storage.open()\n"
        f"    for i in range({n}):\n"
        "        await s.auth.register(JID.parse(f'u{i}@localhost'), 'pw')\n"
        "    await s.storage.close()\n"
        "asyncio.run(main())\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


async def measure_rss(pid: int, port: int, n: int, tls: bool) -> float:
    before = rss_kib(pid)
    writers = await hold(port, n, tls)
    await asyncio.sleep(5.0)  # let the server settle (offline checks, presence, hibernation)
    after = rss_kib(pid)
    for w in writers:
        w.close()
    await asyncio.sleep(1.0)
    return (after - before) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--startups", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        plain, starttls = free_port(), free_port()
        config = write_config(tmp, plain, starttls)
        register(config, args.connections)
        byte_compile()  # start-up as installed, not a compiler run: see byte_compile
        startups = []
        for _ in range(args.startups):
            proc, t0 = start_server(config)
            wait_port(plain, 30)
            startups.append(time.monotonic() - t0)
            proc.terminate()
            proc.wait(20)
        proc, t0 = start_server(config)
        wait_port(plain, 30)
        try:
            time.sleep(0.5)
            plain_kib = asyncio.run(measure_rss(proc.pid, plain, args.connections, False))
            tls_kib = asyncio.run(measure_rss(proc.pid, starttls, args.connections, True))
        finally:
            proc.terminate()
            proc.wait(20)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, "
          f"{args.connections} connections")
    print(f"start-up to accepting connections: median {statistics.median(startups):.3f} s "
          f"(min {min(startups):.3f}, max {max(startups):.3f}, n={len(startups)})")
    print(f"RSS per idle logged-in connection, plain:    {plain_kib:.1f} KiB")
    print(f"RSS per idle logged-in connection, STARTTLS: {tls_kib:.1f} KiB")


if __name__ == "__main__":
    main()
