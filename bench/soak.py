"""Soak test: thousands of clients connecting, chatting, leaving (cleanly or with a TCP reset)
and coming back for minutes, some of them hostile; then an account of every message.

    python bench/soak.py --clients 2000 --minutes 3

The server runs as its own process (``suricate serve``, SQLite, one plain-TCP c2s listener on
loopback) so that its memory can be read from /proc: before the clients (after a warm-up
round), at its peak, and after every client has gone.

Accounting. A message counts as *sent* once the server has answered a ping the sender wrote
after it (processing is in order per connection, so the server had taken the message). Each
sent message must then be *delivered* (seen by the recipient, live or from offline storage
when the recipient comes back) or *bounced* (an error with its id came back to the sender);
anything else is *lost*. At the end every account logs in once more to collect what is stored.

Honest clients leave in one of two ways: a clean ``</stream:stream>``, or a TCP reset (abort)
after an unavailable presence and a ping. Without stream management (XEP-0198) a recipient
that vanishes with messages in its socket loses them, whatever the server does; the
unavailable presence first is what an XEP-0198-less client can do to make its exit safe, so the
reset exercises the server's handling of dead sockets, not an impossible guarantee.

Hostile clients (``--hostile`` of them) loop over: random bytes, a billion-laughs DTD, an
oversized stanza, endless stream restarts, wrong passwords until cut off, a slow drip of the
header (state_timeout), and a client that never reads its socket while messages pour in.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import c2s_listener, free_port, rss_kib, suricate_config, wait_port  # noqa: E402
from suricate.xml.element import Element  # noqa: E402
from suricate.xml.parser import StreamClose, StreamParser, XMLStreamError  # noqa: E402

DOMAIN = "localhost"
PASSWORD = "soak-pw"
HEADER = (f"<?xml version='1.0'?><stream:stream to='{DOMAIN}' xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>").encode()


def soak_config(port: int, db: Path, redis_port: int = 0) -> str:
    """With ``redis_port``: nodes of a cluster (``--workers N``, sessions in that Redis)."""
    general = ['registration_timeout = "infinity"']
    extra = '[access]\nmax_user_offline_messages = [{acl = "all", value = 100000}]'
    if redis_port:
        general.append('sm_backend = "redis"')
        extra += f"\n[outgoing_pools.redis.default.connection]\nport = {redis_port}\n"
    return suricate_config(
        db, [c2s_listener(port, "max_stanza_size = 65536", "state_timeout = 5000",
                          "backlog = 4096")],
        general=general, auth=['password.format = "plain"'], extra=extra)


# -- the ledger -------------------------------------------------------------------------------
@dataclass
class Ledger:
    sent: dict[str, str] = field(default_factory=dict)  # id -> recipient user
    unconfirmed: set[str] = field(default_factory=set)  # written, no ping answered after
    delivered_live: set[str] = field(default_factory=set)
    delivered_offline: set[str] = field(default_factory=set)
    bounced: set[str] = field(default_factory=set)
    duplicates: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    # For lost_trace: when and by whom each message was sent, and each user's timeline
    # (logins with the node that holds the session, exits), node kills and pauses.
    sent_at: dict[str, tuple[float, str]] = field(default_factory=dict)  # id -> (t, resource)
    timeline: dict[str, list[tuple[float, str]]] = field(default_factory=dict)
    node_events: list[tuple[float, str]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def event(self, user: str, what: str) -> None:
        self.timeline.setdefault(user, []).append((time.monotonic(), what))

    def received(self, msg_id: str, offline: bool) -> None:
        if msg_id in self.delivered_live or msg_id in self.delivered_offline:
            self.duplicates += 1
        (self.delivered_offline if offline else self.delivered_live).add(msg_id)


# -- a raw client -----------------------------------------------------------------------------
class Stream(asyncio.Protocol):
    """One client socket: parses what arrives with the server's own parser."""

    def __init__(self, ledger: Ledger, user: str) -> None:
        self.ledger = ledger
        self.user = user
        self.transport: asyncio.Transport | None = None
        self.parser = StreamParser()
        self.elements: asyncio.Queue[Element | None] = asyncio.Queue()
        self.closed = asyncio.get_running_loop().create_future()
        self.reading = True
        self.pending_iq: dict[str, asyncio.Future[Element]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            events = self.parser.feed(data)
        except XMLStreamError as exc:
            self.ledger.counts[f"client_parse_error_{exc.condition}"] += 1
            events = exc.events
        for event in events:
            if isinstance(event, StreamClose):
                self.elements.put_nowait(None)
            elif isinstance(event, Element):
                self._element(event)

    def _element(self, el: Element) -> None:
        if el.name == "message":
            msg_id = el.attrs.get("id", "")
            if el.attrs.get("type") == "error":
                self.ledger.bounced.add(msg_id)
            elif msg_id.startswith("s"):
                offline = any(c.name == "delay" for c in el.elements())
                self.ledger.received(msg_id, offline)
            return
        if el.name == "iq" and el.attrs.get("id") in self.pending_iq:
            fut = self.pending_iq.pop(el.attrs["id"])
            if not fut.done():
                fut.set_result(el)
            return
        self.elements.put_nowait(el)

    def connection_lost(self, exc: Exception | None) -> None:
        self.elements.put_nowait(None)
        for fut in self.pending_iq.values():
            if not fut.done():
                fut.set_exception(ConnectionError("closed"))
        if not self.closed.done():
            self.closed.set_result(None)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def restart(self) -> None:
        self.parser = StreamParser()

    async def expect(self, name: str, timeout: float = 30.0) -> Element:
        while True:
            el = await asyncio.wait_for(self.elements.get(), timeout)
            if el is None:
                raise ConnectionError(f"closed while waiting for {name}")
            if el.name == name:
                return el

    async def ping(self, ident: str, timeout: float = 60.0) -> None:
        fut = asyncio.get_running_loop().create_future()
        self.pending_iq[ident] = fut
        self.write(f"<iq type='get' id='{ident}' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/>"
                   "</iq>".encode())
        await asyncio.wait_for(fut, timeout)


async def open_stream(port: int, ledger: Ledger, user: str, rcvbuf: int | None = None) -> Stream:
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if rcvbuf is not None:
        # A small window: the kernel cannot soak up megabytes for a client that never reads.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    _, stream = await loop.create_connection(lambda: Stream(ledger, user), sock=sock)
    return stream


async def login(port: int, ledger: Ledger, user: str, resource: str,
                password: str = PASSWORD, rcvbuf: int | None = None) -> Stream:
    stream = await open_stream(port, ledger, user, rcvbuf)
    stream.write(HEADER)
    await stream.expect("features")
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    stream.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}"
                 "</auth>".encode())
    result = await stream.elements.get()
    if result is None or result.name != "success":
        raise PermissionError(f"login {user} refused")
    stream.restart()
    stream.write(HEADER)
    await stream.expect("features")
    stream.write(f"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                 f"<resource>{resource}</resource></bind></iq>".encode())
    await stream.expect("iq")
    return stream


# -- honest users -----------------------------------------------------------------------------
@dataclass
class Run:
    port: int
    users: list[str]
    deadline: float
    rate: float  # messages per second per connected client
    ledger: Ledger
    rng: random.Random
    seq: int = 0
    redis: Any = None  # the cluster's Redis (redis.asyncio), to learn each session's node

    def next_id(self, sender: str) -> str:
        self.seq += 1
        return f"s{self.seq}-{sender}"


async def honest(run: Run, user: str) -> None:
    ledger, rng = run.ledger, run.rng
    life = 0
    await asyncio.sleep(rng.uniform(0, 5))  # spread the first logins
    while time.monotonic() < run.deadline:
        life += 1
        try:
            stream = await login(run.port, ledger, user, f"r{life}")
        except (TimeoutError, OSError, ConnectionError, PermissionError):
            ledger.counts["login_failed"] += 1
            await asyncio.sleep(1)
            continue
        ledger.counts["logins"] += 1
        ledger.event(user, f"login r{life}")
        if run.redis is not None:
            asyncio.create_task(_record_node(run, user, f"r{life}"))
        written: list[str] = []
        expecting_bounce: set[str] = set()
        try:
            stream.write(b"<presence/>")
            until = min(run.deadline, time.monotonic() + rng.uniform(2, 20))
            while time.monotonic() < until and not stream.closed.done():
                await asyncio.sleep(rng.expovariate(run.rate))
                msg_id = run.next_id(user)
                if rng.random() < 0.01:
                    to = f"nobody{rng.randrange(1000)}"  # no such account: a bounce
                    expecting_bounce.add(msg_id)
                else:
                    to = rng.choice(run.users)
                body = "x" * rng.choice((10, 100, 1000))
                stream.write(f"<message to='{to}@{DOMAIN}' id='{msg_id}' type='chat'>"
                             f"<body>{body}</body></message>".encode())
                ledger.unconfirmed.add(msg_id)
                written.append(msg_id)
                ledger.sent[msg_id] = to
                ledger.sent_at[msg_id] = (time.monotonic(), f"r{life}")
                if len(written) % 20 == 0:
                    await stream.ping(f"c{msg_id}")
                    ledger.unconfirmed.difference_update(written)
                    written.clear()
            # Leaving: unavailable first (no more live messages for us), a ping to confirm
            # everything written, bounces given time to come back, then the way out.
            stream.write(b"<presence type='unavailable'/>")
            ledger.event(user, f"unavailable r{life}")
            await stream.ping(f"bye{life}")
            ledger.unconfirmed.difference_update(written)
            limit = time.monotonic() + 10
            while expecting_bounce - ledger.bounced and time.monotonic() < limit:
                await asyncio.sleep(0.1)
            if rng.random() < 0.5:
                stream.write(b"</stream:stream>")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(stream.closed), 10)
                ledger.counts["left_clean"] += 1
                ledger.event(user, f"left clean r{life}")
            else:
                ledger.counts["left_reset"] += 1
                ledger.event(user, f"left reset r{life}")
            if stream.transport is not None:
                stream.transport.abort()
        except (TimeoutError, OSError, ConnectionError) as exc:
            ledger.counts[f"honest_error_{type(exc).__name__}"] += 1
            ledger.event(user, f"error r{life} {type(exc).__name__}")
            if stream.transport is not None:
                stream.transport.abort()
        await asyncio.sleep(rng.uniform(0, 2))


async def _record_node(run: Run, user: str, resource: str) -> None:
    """The node holding ``user/resource`` (its row in Redis, once written)."""
    for _ in range(5):
        await asyncio.sleep(0.3)
        with contextlib.suppress(Exception):
            row = await run.redis.hget(f"suricate:sess:{user}@{DOMAIN}", resource)
            if row is not None:
                run.ledger.event(user, f"{resource} on {row.decode().split(chr(9))[0]}")
                return


async def collect(run: Run, user: str) -> None:
    """Log in once more: what was stored offline for ``user`` arrives now."""
    for _ in range(3):
        try:
            stream = await login(run.port, run.ledger, user, "collect")
            break
        except (TimeoutError, OSError, ConnectionError, PermissionError):
            await asyncio.sleep(1)
    else:
        run.ledger.counts["collect_failed"] += 1
        return
    stream.write(b"<presence/>")
    await stream.ping("collect")
    await asyncio.sleep(2)  # offline messages come after the available presence is handled
    stream.write(b"</stream:stream>")
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.shield(stream.closed), 10)
    if stream.transport is not None:
        stream.transport.abort()


# -- hostile clients --------------------------------------------------------------------------
async def hostile(run: Run, user: str) -> None:
    rng, ledger = run.rng, run.ledger
    behaviours = [_garbage, _bomb, _oversized, _restarts, _bad_passwords, _slow_drip,
                  _non_reader]
    while time.monotonic() < run.deadline:
        behaviour = rng.choice(behaviours)
        try:
            await asyncio.wait_for(behaviour(run, user), 60)
            ledger.counts[f"hostile_{behaviour.__name__.strip('_')}"] += 1
        except (TimeoutError, OSError, ConnectionError, PermissionError) as exc:
            ledger.counts[f"hostile_{behaviour.__name__.strip('_')}_{type(exc).__name__}"] += 1
        await asyncio.sleep(rng.uniform(0, 1))


async def _until_closed(stream: Stream, timeout: float = 30) -> None:
    await asyncio.wait_for(asyncio.shield(stream.closed), timeout)


async def _garbage(run: Run, user: str) -> None:
    stream = await open_stream(run.port, run.ledger, user)
    stream.write(HEADER + os.urandom(run.rng.randrange(1, 4096)))
    await _until_closed(stream)


async def _bomb(run: Run, user: str) -> None:
    stream = await open_stream(run.port, run.ledger, user)
    entities = "".join(f"<!ENTITY l{i} '{f'&l{i - 1};' * 10 if i else 'lol'}'>" for i in range(9))
    stream.write(f"<?xml version='1.0'?><!DOCTYPE s [{entities}]>".encode() + HEADER[21:])
    await _until_closed(stream)


async def _oversized(run: Run, user: str) -> None:
    stream = await login(run.port, run.ledger, user, "big")
    stream.write(b"<message to='" + user.encode() + b"@localhost'><body>"
                 + b"y" * 100_000 + b"</body></message>")
    await _until_closed(stream)


async def _restarts(run: Run, user: str) -> None:
    stream = await open_stream(run.port, run.ledger, user)
    stream.write(HEADER * 50)
    await _until_closed(stream)


async def _bad_passwords(run: Run, user: str) -> None:
    stream = await open_stream(run.port, run.ledger, user)
    stream.write(HEADER)
    for _ in range(5):
        token = base64.b64encode(f"\0{user}\0wrong".encode()).decode()
        stream.write(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                     f"{token}</auth>".encode())
    await _until_closed(stream)


async def _slow_drip(run: Run, user: str) -> None:
    stream = await open_stream(run.port, run.ledger, user)
    for byte in HEADER[:40]:
        if stream.closed.done():
            break
        stream.write(bytes([byte]))
        await asyncio.sleep(0.5)
    await _until_closed(stream)


async def _non_reader(run: Run, user: str) -> None:
    stream = await login(run.port, run.ledger, user, "deaf", rcvbuf=4096)
    assert stream.transport is not None
    stream.write(b"<presence/>")
    stream.transport.pause_reading()  # never reads again: the server must cut it off
    body = b"z" * 30_000
    for _ in range(400):  # 12 MB: more than the server's cap plus both socket buffers
        if stream.closed.done():
            return
        stream.write(b"<message to='" + user.encode() + b"@localhost/deaf' type='chat'><body>"
                     + body + b"</body></message>")
        await asyncio.sleep(0.01)
    # Reading again only to notice the close (a paused transport does not see it).
    stream.elements = asyncio.Queue()
    stream.data_received = lambda data: None  # type: ignore[method-assign]
    stream.transport.resume_reading()
    await _until_closed(stream)


# -- the server process -----------------------------------------------------------------------
async def prepare_accounts(tmp: Path, cfg_text: str, users: list[str]) -> None:
    from suricate.config import parse_config
    from suricate.core.server import Server
    from suricate.jid import JID
    from suricate.modules import MODULES

    server = Server(parse_config(cfg_text, tmp), tmp, MODULES)
    await server.storage.open()
    try:
        for user in users:
            await server.auth.register(JID(user, DOMAIN, None), PASSWORD)
    finally:
        await server.storage.close()


def start_server(tmp: Path, cfg_path: Path, port: int,
                 workers: int = 1) -> subprocess.Popen[bytes]:
    with open(tmp / "server.log", "wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "suricate", "serve", "--config", str(cfg_path),
             "--data-dir", str(tmp), "--workers", str(workers)],
            stdout=subprocess.DEVNULL, stderr=log, cwd=Path(__file__).resolve().parent.parent)
    try:
        wait_port(port, 30, proc=proc, interval=0.05)
    except RuntimeError as exc:  # exited
        raise RuntimeError(f"the server exited: {(tmp / 'server.log').read_text()[-2000:]}") \
            from exc
    except TimeoutError:
        proc.kill()
        raise RuntimeError("the server did not start") from None
    return proc


def start_redis(tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                            stdout=subprocess.DEVNULL)
    wait_port(port, 10, proc=proc, interval=0.05)
    return proc, port


async def kill_a_node(proc: subprocess.Popen[bytes], after: float,
                      ledger: Ledger) -> None:
    """SIGKILL one worker (a node) ``after`` seconds in; the supervisor starts it again as a
    new node and the survivors reap the dead one's sessions."""
    await asyncio.sleep(after)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    if children:
        os.kill(int(children[0]), signal.SIGKILL)
        ledger.counts["node_killed"] += 1
        ledger.node_events.append((time.monotonic(), f"SIGKILL pid {children[0]}"))


async def pause_a_node(proc: subprocess.Popen[bytes], after: float, pause: float,
                       ledger: Ledger) -> None:
    """SIGSTOP one worker ``after`` seconds in, SIGCONT it ``pause`` seconds later: past
    DEAD_AFTER the survivors reap it, and on resuming it rejoins (docs/cluster.md)."""
    await asyncio.sleep(after)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    if not children:
        return
    pid = int(children[0])
    os.kill(pid, signal.SIGSTOP)
    ledger.counts["node_paused"] += 1
    ledger.node_events.append((time.monotonic(), f"SIGSTOP pid {pid}"))
    try:
        await asyncio.sleep(pause)
    finally:
        os.kill(pid, signal.SIGCONT)
        ledger.node_events.append((time.monotonic(), f"SIGCONT pid {pid}"))


def lost_trace(ledger: Ledger, lost: set[str], log_text: str, limit: int = 20) -> list[str]:
    """For each lost message (up to ``limit``): its id, sender and recipient with the node
    each was on, and the last events known around its sending (both users' timelines, the
    node kills and pauses, the server log lines naming the recipient)."""
    def at(t: float) -> str:
        return f"{t - ledger.started:7.2f}s"

    def near(events: list[tuple[float, str]], t: float) -> list[str]:
        before = [e for e in events if e[0] <= t][-4:]
        after = [e for e in events if e[0] > t][:3]
        return [f"{at(when)} {what}" for when, what in before + after]

    def node_of(user: str, resource: str) -> str:
        for _, what in ledger.timeline.get(user, []):
            if what.startswith(f"{resource} on "):
                return what.split(" on ", 1)[1]
        return "?"

    lines: list[str] = []
    for msg_id in sorted(lost)[:limit]:
        sender = msg_id.split("-", 1)[1]
        to = ledger.sent[msg_id]
        t, resource = ledger.sent_at.get(msg_id, (0.0, "?"))
        lines.append(f"{msg_id} sent {at(t)} by {sender}/{resource} on "
                     f"{node_of(sender, resource)} to {to}")
        lines += [f"  {to}: {e}" for e in near(ledger.timeline.get(to, []), t)]
        lines += [f"  node: {e}" for e in near(ledger.node_events, t)]
        named = [line for line in log_text.splitlines() if f"{to}@{DOMAIN}" in line]
        lines += [f"  log: {line[:200]}" for line in named[-4:]]
    return lines


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="suricate-soak-"))
    port = free_port()
    workers = getattr(args, "workers", 1)
    redis = None
    redis_port = 0
    redis_client = None
    if workers > 1:
        redis, redis_port = start_redis(tmp)
        from redis.asyncio import Redis
        redis_client = Redis(port=redis_port)
    cfg_text = soak_config(port, tmp / "soak.db", redis_port)
    cfg_path = tmp / "soak.toml"
    cfg_path.write_text(cfg_text)
    users = [f"u{i}" for i in range(args.clients)]
    hostiles = [f"h{i}" for i in range(args.hostile)]
    await prepare_accounts(tmp, cfg_text, users + hostiles)
    proc = start_server(tmp, cfg_path, port, workers)
    ledger = Ledger()
    ledger_seq = 0
    rng = random.Random(args.seed)
    try:
        # Warm-up: one round of logins so that what stays allocated after first use (code
        # paths, caches, the SQLite page cache) is in the baseline.
        warm = Run(port, users[:50], time.monotonic(), args.rate, Ledger(), rng)
        await asyncio.gather(*(collect(warm, u) for u in warm.users))
        await asyncio.sleep(1)
        baseline = rss_kib(proc.pid)
        peak = baseline
        chat_seconds = 0.0
        after_rounds: list[int] = []
        sem = asyncio.Semaphore(500)
        for _ in range(args.rounds):
            # A second round on the same server tells a leak (grows every round) from memory
            # the allocator keeps after the first peak (stays level).
            started = time.monotonic()
            run = Run(port, users, started + args.seconds, args.rate, ledger, rng, ledger_seq,
                      redis_client)
            tasks = [asyncio.create_task(honest(run, u)) for u in users]
            if getattr(args, "kill_after", 0) and workers > 1:
                tasks.append(asyncio.create_task(kill_a_node(proc, args.kill_after, ledger)))
            if getattr(args, "pause_after", 0) and workers > 1:
                tasks.append(asyncio.create_task(pause_a_node(
                    proc, args.pause_after, args.pause_for, ledger)))
            tasks += [asyncio.create_task(hostile(run, h)) for h in hostiles]
            while not all(t.done() for t in tasks):
                await asyncio.sleep(1)
                peak = max(peak, rss_kib(proc.pid))
            for task in tasks:
                task.result()  # a bug in the soak itself must not pass silently
            chat_seconds += time.monotonic() - started
            ledger_seq = run.seq
            # Everyone logs in once more to collect what waited offline.

            async def bounded(user: str, run: Run = run) -> None:
                async with sem:
                    await collect(run, user)

            await asyncio.gather(*(bounded(u) for u in users))
            await asyncio.sleep(3)  # the server finishes closing the last streams
            after_rounds.append(rss_kib(proc.pid))
        after = after_rounds[-1]
    finally:
        proc.terminate()
        try:
            exit_code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            exit_code = proc.wait()
        if redis_client is not None:
            await redis_client.aclose()
        if redis is not None:
            redis.terminate()
            redis.wait(10)
    sent = set(ledger.sent)
    confirmed = sent - ledger.unconfirmed
    delivered = ledger.delivered_live | ledger.delivered_offline
    lost = confirmed - delivered - ledger.bounced
    log_text = (tmp / "server.log").read_text(errors="replace")
    result = {
        "clients": args.clients, "hostile": args.hostile, "nodes": workers, "seconds": round(chat_seconds, 1),
        "logins": ledger.counts["logins"], "sent": len(sent), "confirmed": len(confirmed),
        "unconfirmed": len(ledger.unconfirmed),
        "delivered_live": len(ledger.delivered_live),
        "delivered_from_offline": len(ledger.delivered_offline - ledger.delivered_live),
        "bounced": len(ledger.bounced), "lost": len(lost), "duplicates": ledger.duplicates,
        "rss_kib": {"baseline": baseline, "peak": peak, "after": after,
                    "after_each_round": after_rounds},
        "server_exit_code": exit_code,
        "server_errors_logged": log_text.count(" ERROR "),
        "events": dict(sorted(ledger.counts.items())),
        "lost_sample": sorted(lost)[:10],
        "lost_trace": lost_trace(ledger, lost, log_text),
    }
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        result["data_dir"] = str(tmp)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--hostile", type=int, default=None,
                        help="hostile clients (default: 5%% of --clients)")
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--rate", type=float, default=0.5,
                        help="messages per second per connected client")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1,
                        help="chat rounds on the same server (memory after each is reported)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--workers", type=int, default=1,
                        help="nodes (suricate serve --workers N, sessions in a private "
                        "redis-server the soak starts)")
    parser.add_argument("--kill-after", type=float, default=0,
                        help="with --workers: SIGKILL one node this many seconds into the "
                        "first round (the supervisor restarts it)")
    parser.add_argument("--pause-after", type=float, default=0,
                        help="with --workers: SIGSTOP one node this many seconds into the "
                        "first round (SIGCONT after --pause-for)")
    parser.add_argument("--pause-for", type=float, default=6,
                        help="seconds the node stays stopped (past DEAD_AFTER = 3 s: reaped)")
    args = parser.parse_args(argv)
    if args.hostile is None:
        args.hostile = max(1, args.clients // 20)
    args.seconds = args.seconds if args.seconds is not None else (args.minutes or 3) * 60
    gc.collect()
    result = asyncio.run(soak(args))
    print(json.dumps(result, indent=2))
    return 0 if result["lost"] == 0 and result["server_exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
