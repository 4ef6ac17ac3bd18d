"""Restart and rolling upgrade, as the clients see them (docs/operations.md, "Restarts and
rolling upgrades").

    python bench/rolling_upgrade.py --pairs 20 --ack-delay 0.3

Two ``suricate serve`` nodes (``sm_backend = "redis"``, the Redis at 127.0.0.1:6379, database
``--db``, emptied first; one SQLite file) on ports 40101/40102 and 40111/40112. ``--pairs``
pairs of users chat, one message every ``--interval`` (50 ms) each way, each with its own
id; every client enables XEP-0198 with resumption, asks for an acknowledgement after each
message, and answers the server's <r/> ``--ack-delay`` seconds late (a phone's round trip).
The script
stops node A (SIGTERM), starts it again, then stops B and starts it again; a client whose
stream ends reconnects to the other node, tries <resume/>, else binds anew (sending again what
the server had not acknowledged, XEP-0198 §5). At the end every client logs out and in again
to collect what is stored offline. Each message is then counted: delivered once (live, or
from offline storage), twice or more (duplicates), bounced (an error came back), or lost;
and how long the clients of a stopped node took to have a session on the other one.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from suricate.config import parse_config  # noqa: E402
from suricate.core.server import Server  # noqa: E402
from suricate.jid import JID  # noqa: E402
from tests.e2e.harness import server_toml  # noqa: E402

MODULES = ("[modules.mod_disco]\n[modules.mod_ping]\n[modules.mod_presence]\n"
           "[modules.mod_roster]\n[modules.mod_offline]\n"
           "[modules.mod_stream_management]\nresume_timeout = 60\n")
PORTS = {"A": (40101, 40102), "B": (40111, 40112)}
OPEN = ("<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
SM = "{urn:xmpp:sm:3}"
CTX = ssl.create_default_context()
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE


class Tally:
    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.sent: dict[str, tuple[str, str]] = {}
        self.received: dict[str, list[str]] = collections.defaultdict(list)
        self.bounced: set[str] = set()
        self.events: collections.Counter[str] = collections.Counter()
        self.resume_failed_ms: list[float] = []
        self.reconnect_s: list[float] = []  # stream ended -> session again on another node

    def now(self) -> str:
        return f"{time.monotonic() - self.t0:6.2f}"


class Client:
    """A raw XEP-0198 client over direct TLS that counts what it handles."""

    def __init__(self, user: str, node: str, tally: Tally, ack_delay: float) -> None:
        self.user, self.node, self.tally, self.ack_delay = user, node, tally, ack_delay
        self.sm_id: str | None = None
        self.h_in = 0
        self.acked_out = 0
        self.unacked: list[str] = []  # what we sent that the server has not acknowledged
        self.connected = asyncio.Event()
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter
        self.parser = ET.XMLPullParser(("start", "end"))
        self.depth = 0

    async def _element(self) -> Any:
        while True:
            for event, el in self.parser.read_events():
                if event == "start":
                    self.depth += 1
                    continue
                self.depth -= 1
                if self.depth == 1:
                    return el
            data = await self.reader.read(65536)
            if not data:
                return None
            self.parser.feed(data)

    async def _until(self, tag: str) -> Any:
        while True:
            el = await self._element()
            if el is None:
                raise ConnectionError("closed")
            if el.tag.endswith(tag):
                return el
            self.handle(el)

    def _restart(self) -> None:
        self.parser = ET.XMLPullParser(("start", "end"))
        self.depth = 0
        self.writer.write(OPEN.encode())

    async def login(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", PORTS[self.node][1], ssl=CTX, server_hostname="localhost")
        self._restart()
        await self._until("features")
        token = base64.b64encode(f"\0{self.user}\0pw".encode()).decode()
        self.writer.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                          f"{token}</auth>".encode())
        await self._until("success")
        self._restart()
        await self._until("features")
        if self.sm_id is not None:
            started = time.monotonic()
            self.writer.write(f"<resume xmlns='urn:xmpp:sm:3' previd='{self.sm_id}' "
                              f"h='{self.h_in}'/>".encode())
            while True:
                el = await self._element()
                if el is None:
                    raise ConnectionError("closed")
                if el.tag in (SM + "resumed", SM + "failed"):
                    break
            took = (time.monotonic() - started) * 1000
            if el.tag == SM + "resumed":
                self.tally.events["resumed"] += 1
                self._acked(int(el.get("h")))
                for stanza in self.unacked:
                    self.writer.write(stanza.encode())
                self.connected.set()
                return
            self.tally.events["resume failed"] += 1
            self.tally.resume_failed_ms.append(took)
            if el.get("h") is not None:
                self._acked(int(el.get("h")))
        self.writer.write(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:"
                          b"xmpp-bind'><resource>r</resource></bind></iq>")
        await self._until("iq")
        self.writer.write(b"<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        self.sm_id = (await self._until("enabled")).get("id")
        self.h_in = 0
        again, self.unacked, self.acked_out = self.unacked, [], 0
        self.send("<presence/>")
        for stanza in again:  # XEP-0198 §5: not acknowledged, sent on the new session
            self.send(stanza)
            self.tally.events["sent again by a client"] += 1
        self.connected.set()

    def _acked(self, h: int) -> None:
        self.unacked = self.unacked[(h - self.acked_out) % 2**32:]
        self.acked_out = h

    def send(self, stanza: str) -> None:
        self.unacked.append(stanza)
        self.writer.write(stanza.encode() + b"<r xmlns='urn:xmpp:sm:3'/>")

    def handle(self, el: Any) -> None:
        if el.tag == SM + "r":
            writer, h = self.writer, self.h_in
            answer = f"<a xmlns='urn:xmpp:sm:3' h='{h}'/>".encode()
            if self.ack_delay:
                asyncio.get_running_loop().call_later(
                    self.ack_delay, lambda: writer.is_closing() or writer.write(answer))
            else:
                writer.write(answer)
        elif el.tag == SM + "a":
            self._acked(int(el.get("h")))
        elif el.tag.startswith("{jabber:client}"):
            self.h_in += 1
            if el.tag == "{jabber:client}message" and el.get("id") in self.tally.sent:
                if el.get("type") == "error":
                    self.tally.bounced.add(el.get("id"))
                else:
                    how = "offline" if el.find("{urn:xmpp:delay}delay") is not None else "live"
                    self.tally.received[el.get("id")].append(how)

    async def run(self) -> None:
        while True:
            try:
                el = await self._element()
            except (ConnectionError, OSError, ssl.SSLError):
                el = None
            if el is not None and not el.tag.endswith("}error"):
                self.handle(el)
                continue
            if el is not None:
                self.tally.events["stream error " + el[0].tag.split("}")[1]] += 1
            self.connected.clear()
            ended = time.monotonic()
            await self.reconnect("B" if self.node == "A" else "A")
            self.tally.reconnect_s.append(time.monotonic() - ended)

    async def reconnect(self, node: str) -> None:
        self.node = node
        for _ in range(300):
            try:
                await self.login()
                return
            except (ConnectionError, OSError, ssl.SSLError):
                self.node = "B" if self.node == "A" else "A"
                await asyncio.sleep(0.1)


async def rolling(args: argparse.Namespace, tmp: Path) -> Tally:
    tally = Tally()
    procs: dict[str, subprocess.Popen[str]] = {}

    def start(node: str) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "suricate", "serve", "--config", str(tmp / f"{node}.toml")],
            stdout=subprocess.PIPE, stderr=(tmp / f"{node}.log").open("a"), text=True)
        assert proc.stdout is not None
        banner = proc.stdout.readline().strip()
        print(f"[{tally.now()}] {node} started: {banner}")
        procs[node] = proc

    async def stop(node: str) -> None:
        started = time.monotonic()
        procs[node].send_signal(signal.SIGTERM)
        while procs[node].poll() is None:
            await asyncio.sleep(0.01)
        print(f"[{tally.now()}] {node} stopped in {time.monotonic() - started:.3f} s")

    start("A")
    start("B")
    try:
        clients = []
        for i in range(args.pairs):
            a = Client(f"a{i}", "A", tally, args.ack_delay)
            b = Client(f"b{i}", "B", tally, args.ack_delay)
            await a.reconnect("A")
            await b.reconnect("B")
            clients += [a, b]
        readers = [asyncio.create_task(c.run()) for c in clients]
        done = asyncio.Event()
        counts: collections.Counter[str] = collections.Counter()

        async def chat(me: Client, peer: Client) -> None:
            while not done.is_set():
                await me.connected.wait()
                counts[me.user] += 1
                mid = f"{me.user}-{counts[me.user]}"
                tally.sent[mid] = (me.user, peer.user)
                me.send(f"<message to='{peer.user}@localhost' type='chat' id='{mid}'>"
                        f"<body>{mid}</body></message>")
                await asyncio.sleep(args.interval)

        chats = [asyncio.create_task(chat(clients[2 * i + j], clients[2 * i + 1 - j]))
                 for i in range(args.pairs) for j in (0, 1)]
        for step in ("stop A", "start A", "stop B", "start B"):
            await asyncio.sleep(args.every)
            action, node = step.split()
            await (stop(node) if action == "stop" else asyncio.to_thread(start, node))
        await asyncio.sleep(1)
        done.set()
        await asyncio.gather(*chats)
        await asyncio.sleep(1 + args.ack_delay)
        for task in readers:
            task.cancel()
        tally.events["not acknowledged by the server at the end"] = sum(
            len(c.unacked) for c in clients)
        for c in clients:
            c.writer.write(b"</stream:stream>")
        await asyncio.sleep(0.5)
        for c in clients:  # log in again: what is stored offline
            c.sm_id, c.unacked = None, []
            await c.reconnect(c.node)
        readers = [asyncio.create_task(c.run()) for c in clients]
        await asyncio.sleep(2)
        for task in readers:
            task.cancel()
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
    return tally


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--ack-delay", type=float, default=0.0,
                        help="seconds a client waits before answering <r/>")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between the steps")
    parser.add_argument("--interval", type=float, default=0.05,
                        help="seconds between two messages of one client")
    parser.add_argument("--db", type=int, default=14, help="Redis database (emptied)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rolling-"))
    redis.Redis(db=args.db).flushdb()
    pool = (f'[outgoing_pools.redis.default.connection]\nhost = "127.0.0.1"\nport = 6379\n'
            f"database = {args.db}\n")
    for node, (c2s, tls) in PORTS.items():
        toml = server_toml(tmp, c2s, tls, extra=pool, modules=MODULES)
        (tmp / f"{node}.toml").write_text(
            toml.replace('loglevel = "info"', 'loglevel = "info"\nsm_backend = "redis"'))

    async def register() -> None:
        server = Server(parse_config((tmp / "A.toml").read_text(), tmp), tmp, {})
        await server.storage.open()
        for i in range(args.pairs):
            for side in "ab":
                await server.auth.register(JID(f"{side}{i}", "localhost"), "pw")
        await server.storage.close()

    asyncio.run(register())
    tally = asyncio.run(rolling(args, tmp))
    kinds: collections.Counter[str] = collections.Counter()
    for mid in tally.sent:
        got = tally.received.get(mid, [])
        if len(got) > 1:
            kinds["duplicates"] += 1
        elif got:
            kinds[f"once ({got[0]})"] += 1
        elif mid in tally.bounced:
            kinds["bounced"] += 1
        else:
            kinds["lost"] += 1
    print(f"sent {len(tally.sent)}: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    print("; ".join(f"{k}: {v}" for k, v in sorted(tally.events.items())))
    if tally.resume_failed_ms:
        waits = sorted(tally.resume_failed_ms)
        print(f"<resume/> to <failed/>: median {waits[len(waits) // 2]:.1f} ms, "
              f"max {waits[-1]:.1f} ms")
    if tally.reconnect_s:
        waits = sorted(tally.reconnect_s)
        print(f"stream ended -> session on the other node: median {waits[len(waits) // 2]:.3f}"
              f" s, max {waits[-1]:.3f} s ({len(waits)} reconnections)")
    print(f"logs in {tmp}")
    redis.Redis(db=args.db).flushdb()


if __name__ == "__main__":
    main()
