"""What one flooding client costs the others: a bystander's ping latency (p50/p99) while
another client sends as fast as it can, on a listener without a shaper and on one with
``shaper = "normal"``; and the server's memory while a client that never reads is flooded.

    python bench/flood.py [--seconds 5] [--max-rate 50000]

The server runs as its own process (``suricate serve``, SQLite, plain-TCP c2s listeners on
loopback). The bystander is a slixmpp client (STARTTLS, SCRAM) pinging the server every 10 ms
on its own listener; the flooder runs in a child process (its loop must not slow the
bystander's), logged in with PLAIN, and writes 50 stanzas per write, draining: chat messages
to a third client that reads everything, or IQ pings to the server whose answers it reads.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import c2s_listener, free_port, rss_kib, suricate_config  # noqa: E402
from bench.soak import DOMAIN, HEADER, PASSWORD, prepare_accounts, start_server  # noqa: E402

STANZAS = {
    "msg": (
        b"<message to='reader@localhost/r' type='chat'><body>" + b"f" * 200 + b"</body></message>"
    ),
    "iq": b"<iq type='get' id='x' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
}


async def login(
    port: int, user: str, rcvbuf: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)

    async def until(marker: bytes) -> None:
        seen = b""
        while marker not in seen:
            chunk = await reader.read(65536)
            if not chunk:
                raise ConnectionError(f"closed while waiting for {marker!r}: {seen[-300:]!r}")
            seen += chunk

    writer.write(HEADER)
    await until(b"</stream:features>")
    token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode())
    writer.write(
        b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>" + token + b"</auth>"
    )
    await until(b"<success")
    writer.write(HEADER)
    await until(b"</stream:features>")
    writer.write(
        b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        b"<resource>r</resource></bind></iq>"
    )
    await until(b"</jid>")
    return reader, writer


async def _read_all(reader: asyncio.StreamReader, count: list[int]) -> None:
    while chunk := await reader.read(1 << 20):
        count[0] += len(chunk)


async def flood(port: int, reader_port: int, seconds: float, kind: str) -> None:
    """The child process: a reader, a flooder; prints what went through as JSON."""
    rr, _rw = await login(reader_port, "reader")
    received = [0]
    reading = asyncio.create_task(_read_all(rr, received))
    fr, fw = await login(port, "flooder")
    answers = [0]
    answering = asyncio.create_task(_read_all(fr, answers))
    batch = STANZAS[kind] * 50
    sent = 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        fw.write(batch)
        sent += len(batch)
        await fw.drain()
    elapsed = time.monotonic() - start
    reading.cancel()
    answering.cancel()
    print(
        json.dumps(
            {
                "sent_kB_s": round(sent / elapsed / 1e3),
                "read_kB_s": round((received[0] + answers[0]) / elapsed / 1e3),
            }
        )
    )


async def bystander(port: int, seconds: float) -> dict[str, float]:
    from tests.e2e.harness import Client

    client = Client(f"bystander@{DOMAIN}/b", PASSWORD)
    client.register_plugin("xep_0199")
    client.connect("127.0.0.1", port)
    await asyncio.wait_for(client.session_started, 10)
    rtts: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        await client.plugin["xep_0199"].send_ping(DOMAIN, timeout=10)
        rtts.append((time.perf_counter() - start) * 1000)
        await asyncio.sleep(0.01)
    client.disconnect()
    rtts.sort()
    return {
        "pings": len(rtts),
        "p50_ms": round(rtts[len(rtts) // 2], 2),
        "p99_ms": round(rtts[min(len(rtts) - 1, int(0.99 * len(rtts)))], 2),
    }


async def stuck_reader(pid: int, port: int, seconds: float) -> dict[str, object]:
    """RSS while a client that never reads (a 4 KiB receive buffer) is sent 1 kB messages
    as fast as another client can."""
    _br, bw = await login(port, "stuck", rcvbuf=4096)
    bw.write(b"<presence/>")
    fr, fw = await login(port, "flooder")
    errors = [0]

    async def count_errors() -> None:
        while chunk := await fr.read(1 << 20):
            errors[0] += chunk.count(b'type="error"')

    counting = asyncio.create_task(count_errors())
    before = rss_kib(pid)
    peak, sent = before, 0
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        fw.write(
            b"".join(
                b"<message to='stuck@localhost/r' type='chat'><body>"
                + b"s" * 1000
                + b"</body></message>"
                for _ in range(50)
            )
        )
        sent += 50
        await fw.drain()
        peak = max(peak, rss_kib(pid))
    await asyncio.sleep(1)
    counting.cancel()
    return {
        "sent": sent,
        "rss_before_kib": before,
        "rss_peak_delta_kib": peak - before,
        "rss_after_delta_kib": rss_kib(pid) - before,
        "bounced_to_sender": errors[0],
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-rate", type=int, default=50_000)
    parser.add_argument(
        "--flood",
        nargs=4,
        metavar=("PORT", "READER_PORT", "SECONDS", "KIND"),
        help=argparse.SUPPRESS,
    )  # the child process
    args = parser.parse_args()
    if args.flood:
        port, reader_port, seconds, kind = args.flood
        await flood(int(port), int(reader_port), float(seconds), kind)
        return
    with tempfile.TemporaryDirectory(prefix="suricate-flood-") as name:
        tmp = Path(name)
        plain, shaped, tls = free_port(), free_port(), free_port()
        from suricate.net.certs import ensure_self_signed

        cert, _ = ensure_self_signed(tmp / "certs", [DOMAIN])
        cfg = suricate_config(
            tmp / "flood.db",
            [
                c2s_listener(plain),
                c2s_listener(shaped, 'shaper = "normal"'),
                c2s_listener(
                    tls,
                    f'tls.certfile = "{cert.certfile}"',
                    f'tls.keyfile = "{cert.keyfile}"',
                    'tls.verify_mode = "none"',
                ),
            ],
            extra=f"[shaper.normal]\nmax_rate = {args.max_rate}\n"
            '[access]\nmax_user_offline_messages = [{acl = "all", value = 100}]',
        )
        cfg_path = tmp / "flood.toml"
        cfg_path.write_text(cfg)
        await prepare_accounts(tmp, cfg, ["bystander", "flooder", "reader", "stuck"])
        proc = start_server(tmp, cfg_path, tls)
        try:
            results: dict[str, object] = {"idle": await bystander(tls, args.seconds)}
            for label, port in (("no shaper", plain), (f"shaper {args.max_rate} B/s", shaped)):
                for kind in STANZAS:
                    child = subprocess.Popen(
                        [
                            sys.executable,
                            __file__,
                            "--flood",
                            str(port),
                            str(plain),
                            str(args.seconds + 2),
                            kind,
                        ],
                        stdout=subprocess.PIPE,
                    )
                    await asyncio.sleep(1.0)  # the flood is on
                    by = await bystander(tls, args.seconds)
                    out, _ = child.communicate(timeout=60)
                    results[f"{kind} flood, {label}"] = {**by, **json.loads(out or b"{}")}
            results["stuck reader"] = await stuck_reader(proc.pid, plain, args.seconds)
        finally:
            proc.terminate()
            proc.wait(10)
        for label, figures in results.items():
            print(f"{label}: {figures}")


if __name__ == "__main__":
    asyncio.run(main())
