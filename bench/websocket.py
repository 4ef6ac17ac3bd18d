"""XMPP over WebSocket (RFC 7395), Suricate's mod_websockets side by side with Prosody's
mod_websocket, on loopback: RSS per idle logged-in WebSocket connection, and one-to-one
messages/s through WebSocket clients.

    .venv/bin/python bench/websocket.py                      # both servers
    .venv/bin/python bench/websocket.py --servers suricate --connections 200 --seconds 3

Each server runs as our own subprocess pinned to core 0 (``taskset``); the clients (aiohttp's
WebSocket client, PLAIN login, bind, initial presence) run here, pinned to core 1. Messages:
``--pairs`` sender/receiver pairs, each with ``--inflight`` messages in flight (a receiver that
gets one makes its sender send the next), counted for ``--seconds``. Every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import c2s_listener, free_port, rss_kib, suricate_config, wait_port  # noqa: E402
from bench.core_figures import register  # noqa: E402
from bench.run import PASSWORD, Prosody  # noqa: E402
from suricate.net.certs import ensure_self_signed  # noqa: E402

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
OPEN = f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"


class Server:
    name = ""
    url = ""
    proc: Any = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


class SuricateWS(Server):
    name = "Suricate (mod_websockets)"

    def __init__(self, work: Path, users: int) -> None:
        import subprocess

        c2s, http = free_port(), free_port()
        config = work / "suricate.toml"
        config.write_text(suricate_config(work / "bench.db", [c2s_listener(c2s, "backlog = 4096")],
                                          loglevel="error", extra=f"""
[[listen.http]]
port = {http}
ip_address = "127.0.0.1"
transport.max_connections = "infinity"

[[listen.http.handlers.mod_websockets]]
host = "_"
path = "/ws-xmpp"
"""))
        register(config, users)
        self.proc = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "suricate",
                                      "serve", "--config", str(config)], cwd=ROOT,
                                     stdout=subprocess.DEVNULL)
        wait_port(http, 60, proc=self.proc)
        self.url = f"http://127.0.0.1:{http}/ws-xmpp"


class ProsodyWS(Server):
    name = "Prosody (mod_websocket)"

    def __init__(self, work: Path, users: int) -> None:
        cert, _ = ensure_self_signed(work / "certs", ["localhost"])
        http = free_port()
        spec = Prosody("prosody", "127.0.0.1", free_port(), work / "prosody", "0")
        spec.workdir.mkdir(parents=True, exist_ok=True)
        spec.write_config(Path(cert.certfile), Path(cert.keyfile))
        path = spec.workdir / "prosody.cfg.lua"
        text = path.read_text()
        text = text.replace("http_ports = { }", f"http_ports = {{ {http} }}\n"
                            'http_interfaces = { "127.0.0.1" }\n'
                            # loopback, no TLS: let PLAIN through as our clients use it
                            "consider_websocket_secure = true")
        text = text.replace('modules_enabled = { "roster"', 'modules_enabled = { "websocket", '
                            '"roster"')
        path.write_text(text)
        spec.provision([f"u{i}" for i in range(users)])
        spec.start()
        wait_port(http, 60)
        self.spec = spec
        self.proc = spec.proc
        self.url = f"http://127.0.0.1:{http}/xmpp-websocket"

    def stop(self) -> None:
        self.spec.stop()


async def login(http: aiohttp.ClientSession, url: str, user: str
                ) -> tuple[aiohttp.ClientWebSocketResponse, str]:
    ws = await http.ws_connect(url, protocols=("xmpp",), max_msg_size=0)

    async def until(marker: str) -> str:
        while True:
            msg = await ws.receive(timeout=30)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"{user}: {msg}")
            if marker in msg.data:
                return str(msg.data)

    await ws.send_str(OPEN)
    await until("features")
    token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
    await ws.send_str(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                      f"{token}</auth>")
    await until("<success")
    await ws.send_str(OPEN)
    await until("features")
    await ws.send_str("<iq xmlns='jabber:client' type='set' id='b'>"
                      "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    bound = await until("</jid>")
    jid = bound.split("<jid>")[1].split("</jid>")[0]
    await ws.send_str("<presence xmlns='jabber:client'/>")
    return ws, jid


async def many(url: str, n: int, offset: int = 0, parallel: int = 50
               ) -> tuple[aiohttp.ClientSession, list[tuple[Any, str]]]:
    http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    sem = asyncio.Semaphore(parallel)

    async def one(i: int) -> tuple[Any, str]:
        async with sem:
            return await login(http, url, f"u{i + offset}")

    return http, list(await asyncio.gather(*(one(i) for i in range(n))))


async def idle_rss(server: Server, n: int) -> float:
    before = rss_kib(server.proc.pid)
    http, conns = await many(server.url, n)
    await asyncio.sleep(5.0)  # settle: presence, offline checks, buffers
    after = rss_kib(server.proc.pid)
    for ws, _ in conns:
        await ws.close()
    await http.close()
    await asyncio.sleep(1.0)
    return (after - before) / n


async def throughput(server: Server, pairs: int, inflight: int, seconds: float) -> float:
    http, conns = await many(server.url, 2 * pairs)
    count = 0
    counting = False
    stop = asyncio.Event()

    async def drain(ws: Any) -> None:  # the senders get little (their own presence)
        while not stop.is_set():
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                return

    async def receive(ws: Any, sender: Any, to: str) -> None:
        nonlocal count
        body = f"<message xmlns='jabber:client' to='{to}' type='chat'><body>hi</body></message>"
        for _ in range(inflight):
            await sender.send_str(body)
        while not stop.is_set():
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                return
            if "<body>" in msg.data:
                if counting:
                    count += 1
                await sender.send_str(body)

    tasks = []
    for i in range(pairs):
        (sender, _), (receiver, to) = conns[2 * i], conns[2 * i + 1]
        tasks.append(asyncio.ensure_future(receive(receiver, sender, to)))
        tasks.append(asyncio.ensure_future(drain(sender)))
    await asyncio.sleep(1.0)  # warm up
    counting = True
    start = time.monotonic()
    await asyncio.sleep(seconds)
    counting = False
    rate = count / (time.monotonic() - start)
    stop.set()
    for ws, _ in conns:
        await ws.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await http.close()
    return rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", default="suricate,prosody")
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--pairs", type=int, default=50)
    p.add_argument("--inflight", type=int, default=10)
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args()
    os.sched_setaffinity(0, {1})  # the clients; the server has core 0
    users = max(args.connections, 2 * args.pairs)
    rows = []
    for name in args.servers.split(","):
        with tempfile.TemporaryDirectory() as d:
            work = Path(d)
            server: Server = (SuricateWS if name == "suricate" else ProsodyWS)(work, users)
            try:
                time.sleep(0.5)
                kib = asyncio.run(idle_rss(server, args.connections))
                rate = asyncio.run(throughput(server, args.pairs, args.inflight, args.seconds))
            finally:
                server.stop()
        rows.append((server.name, kib, rate))
    print(f"| server | RSS per idle WebSocket connection ({args.connections}) | messages/s "
          f"({args.pairs} pairs x {args.inflight} in flight) |")
    print("|---|---|---|")
    for name, kib, rate in rows:
        print(f"| {name} | {kib:.1f} KiB | {rate:,.0f} |")


if __name__ == "__main__":
    main()
