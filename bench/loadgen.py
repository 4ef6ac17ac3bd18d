"""XMPP load generator for the side-by-side benchmark (bench/run.py drives it).

Raw asyncio protocols, pre-built stanzas, one shared client TLS context, no XML parsing: the
generator matches byte markers (``</stream:features>``, ``</challenge>``, ``</message>``) in
what it reads. SCRAM-SHA-256 is done by hand with the salted password cached per
(password, salt, iterations), as RFC 5802 §5.1 allows clients to do, so the generator does not
spend its core on PBKDF2.

Every scenario is bounded in time and count and prints one JSON object on stdout, including the
generator's own CPU use (user+system seconds / wall seconds of the measured window), so the
runner can tell when the generator rather than the server is the bottleneck.

    python bench/loadgen.py messages --port 5222 --pairs 100 --inflight 20 --seconds 5
    python bench/loadgen.py messages --port 5280 --ws /ws-xmpp --pairs 100 --inflight 20

With ``--ws PATH`` the same scenarios (but the realistic login) speak XMPP over WebSocket
(RFC 7395) to ``ws://host:port/PATH`` (``wss://`` with ``--tls``): an RFC 6455 upgrade offering
the ``xmpp`` subprotocol, ``<open/>`` and ``<close/>`` for the stream header and end, and one
masked text frame per stanza (several frames in one write when a receiver gets several
messages in one read, as the TCP generator writes several stanzas at once).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import hashlib
import hmac
import json
import os
import random
import re
import resource
import secrets
import ssl
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import cpu_seconds as process_cpu_seconds  # noqa: E402
from bench.common import cpu_user_system  # noqa: E402

try:
    import uvloop
except ImportError:  # the generator still works on the stdlib loop, only slower
    uvloop = None  # type: ignore[assignment]

DOMAIN = "localhost"
PASSWORD = "pw"
CLOSE = b"</stream:stream>"
BODY = b"<body>Hello! This is a benchmark message of a typical chat size.</body>"
FAILURE_MARKERS = (b"<failure", b"<stream:error", b"type='error'", b'type="error"',
                   b"<ws-close")  # the last: a WebSocket close frame (Client._deframe)


FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
WS_CLOSE = f"<close xmlns='{FRAMING}'/>".encode()
# RFC 6455 §1.3: the server's Sec-WebSocket-Accept is this GUID appended to our key, hashed.
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# RFC 7395 §3.3.3: each message is a complete XML document, so a stanza carries its own
# default namespace (over TCP it inherits the stream's).
CLIENT_NS = b" xmlns='jabber:client'"

try:  # aiohttp's C masking loop (the pure-Python fallback below costs the generator more)
    from aiohttp._websocket.mask import (  # type: ignore[import-not-found]
        _websocket_mask_cython as _c_mask,
    )
except ImportError:  # pragma: no cover
    _c_mask = None


def _mask_py(mask: bytes, data: bytearray) -> None:
    n = len(data)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    data[:] = (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


_mask = _c_mask or _mask_py
_randbits = random.getrandbits


def ws_frame(payload: bytes) -> bytes:
    """One final, masked text frame (RFC 6455 §5.2). Clients mask every frame with a fresh
    key (§5.3); the key only keeps intermediaries from reading client data as requests, so a
    fast PRNG (not a CSPRNG) does on loopback."""
    size = len(payload)
    if size < 126:
        head = bytes((0x81, 0x80 | size))
    elif size < 65536:
        head = bytes((0x81, 0xFE)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x81, 0xFF)) + size.to_bytes(8, "big")
    key = _randbits(32).to_bytes(4, "big")
    body = bytearray(payload)
    _mask(key, body)
    return head + key + body


def ws_open(domain: str = DOMAIN) -> bytes:
    """RFC 7395 §3.4: the stream header of a WebSocket session."""
    return f"<open xmlns='{FRAMING}' to='{domain}' version='1.0'/>".encode()


def header(domain: str = DOMAIN) -> bytes:
    return (f"<?xml version='1.0'?><stream:stream to='{domain}' xmlns='jabber:client' "
            "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>").encode()


def client_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pid_cpu_seconds(pids: list[int]) -> float:
    """user+system CPU seconds of the server processes (Linux /proc; the nodes of a cluster
    together), 0 for a process that is gone."""
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += process_cpu_seconds(pid)
    return total


class XMPPError(Exception):
    pass


class Client(asyncio.Protocol):
    """A connection that either waits for byte markers (login) or counts messages."""

    __slots__ = ("transport", "buf", "_marker", "_fut", "counting", "on_messages", "_tail",
                 "lost", "on_data", "ws", "raw", "upgraded", "accept")

    def __init__(self) -> None:
        self.transport: Any = None
        self.buf = bytearray()
        self._marker: bytes | tuple[bytes, ...] | None = None
        self._fut: asyncio.Future[bytes] | None = None
        self.counting = False
        self.on_messages: Any = None
        self._tail = b""
        self.lost = False
        self.on_data: Any = None  # the realistic login's parser (Session), once bound
        self.ws = False  # XMPP over WebSocket (RFC 7395): frames in and out
        self.raw = bytearray()  # WebSocket: what is not yet a whole frame (or the 101)
        #: WebSocket: the expected Sec-WebSocket-Accept, then None once upgraded
        self.upgraded: asyncio.Future[None] | None = None
        self.accept = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.on_data is not None:
            self.on_data(data)
            return
        if self.counting:
            # Count '</message>' without parsing; keep a tail for markers split across reads.
            chunk = self._tail + data if self._tail else data
            n = chunk.count(b"</message>")
            self._tail = chunk[-9:]
            if n:
                self.on_messages(n)
            return
        if self.ws:
            self.raw += data
            self._deframe()
        else:
            self.buf += data
        self._check()

    def _deframe(self) -> None:
        """WebSocket, while logging in: the payloads of whole frames onto ``buf`` (RFC 6455
        §5.2), pings answered. When counting, frames are not parsed at all: a frame header
        (2 to 10 bytes, starting 0x81) cannot hold or split a '</message>'."""
        raw = self.raw
        upgrading = self.upgraded
        if upgrading is not None and not upgrading.done():
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(raw[:end]).decode("latin-1")
            del raw[:end + 4]
            fields = {k.strip().lower(): v.strip() for k, _, v in
                      (line.partition(":") for line in head.split("\r\n")[1:])}
            if not head.startswith("HTTP/1.1 101"):
                upgrading.set_exception(XMPPError(f"no WebSocket upgrade: {head[:300]}"))
                return
            if fields.get("sec-websocket-accept", "").encode() != self.accept:
                upgrading.set_exception(XMPPError("bad Sec-WebSocket-Accept (RFC 6455 §4.1)"))
                return
            if fields.get("sec-websocket-protocol") != "xmpp":
                upgrading.set_exception(XMPPError("no xmpp subprotocol (RFC 7395 §3.1)"))
                return
            upgrading.set_result(None)
        while len(raw) >= 2:
            op, size = raw[0] & 0x0F, raw[1] & 0x7F
            start = 2
            if size == 126:
                size, start = int.from_bytes(raw[2:4], "big"), 4
            elif size == 127:
                size, start = int.from_bytes(raw[2:10], "big"), 10
            if len(raw) < start + size:
                return
            payload = bytes(raw[start:start + size])
            del raw[:start + size]
            if op in (0x0, 0x1, 0x2):
                self.buf += payload
            elif op == 0x9:  # ping: a masked pong with the same payload (§5.5.2, §5.5.3)
                key = _randbits(32).to_bytes(4, "big")
                body = bytearray(payload)
                _mask(key, body)
                self.transport.write(bytes((0x8A, 0x80 | len(payload))) + key + body)
            elif op == 0x8:  # close: the server ends the WebSocket
                self.buf += b"<ws-close/>"

    def _check(self) -> None:
        fut, marker = self._fut, self._marker
        if fut is None or marker is None or fut.done():
            return
        if isinstance(marker, tuple):
            hits = [(i, m) for m in marker if (i := self.buf.find(m)) >= 0]
            i, marker = min(hits) if hits else (-1, b"")
        else:
            i = self.buf.find(marker)
        if i >= 0:
            end = i + len(marker)
            out = bytes(self.buf[:end])
            del self.buf[:end]
            self._fut = self._marker = None
            fut.set_result(out)
            return
        for bad in FAILURE_MARKERS:
            if bad in self.buf:
                self._fut = self._marker = None
                fut.set_exception(XMPPError(bytes(self.buf[-400:]).decode(errors="replace")))
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.upgraded is not None and not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed during the WebSocket upgrade"))
        if self._fut is not None and not self._fut.done():
            self._fut.set_exception(ConnectionError(f"closed: {bytes(self.buf[-300:])!r}"))

    async def expect(self, marker: bytes | tuple[bytes, ...], timeout: float = 30.0) -> bytes:
        loop = asyncio.get_running_loop()
        fut = self._fut = loop.create_future()
        self._marker = marker
        self._check()
        return await asyncio.wait_for(fut, timeout)

    def send(self, data: bytes) -> None:
        self.transport.write(ws_frame(data) if self.ws else data)

    def pack(self, stanzas: list[bytes]) -> bytes:
        """Several stanzas as one write: one frame each over WebSocket."""
        if self.ws:
            return b"".join([ws_frame(x) for x in stanzas])
        return b"".join(stanzas)

    def stanza(self, data: bytes) -> bytes:
        """A stanza with 'jabber:client' declared over WebSocket (RFC 7395 §3.3.3): ``data``
        starts with '<iq', '<message' or '<presence'."""
        if not self.ws:
            return data
        end = min(i for i in (data.find(b" "), data.find(b"/"), data.find(b">")) if i > 0)
        return data[:end] + CLIENT_NS + data[end:]

    def close_stream(self) -> None:
        self.send(WS_CLOSE if self.ws else CLOSE)


_SALTED: dict[tuple[str, bytes, int], bytes] = {}


def _scram_final(first_bare: str, server_first: bytes, password: str) -> tuple[bytes, bytes]:
    """RFC 5802 §3: the client-final message and the expected server signature."""
    fields = dict(p.split("=", 1) for p in server_first.decode().split(","))
    salt = base64.b64decode(fields["s"])
    iterations = int(fields["i"])
    key = (password, salt, iterations)
    salted = _SALTED.get(key)
    if salted is None:
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
        _SALTED[key] = salted
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    without_proof = f"c=biws,r={fields['r']}"
    auth_message = f"{first_bare},{server_first.decode()},{without_proof}".encode()
    signature = hmac.digest(stored_key, auth_message, "sha256")
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    server_sig = hmac.digest(server_key, auth_message, "sha256")
    final = f"{without_proof},p={base64.b64encode(proof).decode()}".encode()
    return final, server_sig


def _between(data: bytes, start: bytes, end: bytes) -> bytes:
    i = data.rindex(start)
    j = data.index(b">", i) + 1
    return data[j:data.index(end, j)]


async def login(host: str, port: int, user: str, tls: bool, ctx: ssl.SSLContext,
                resource: str | None = "bench", presence: bool = True,
                marks: list[float] | None = None, ws: str | None = None) -> Client:
    """Connect, optionally STARTTLS, SCRAM-SHA-256, bind; return the logged-in client.
    ``ws``: the path of an XMPP-over-WebSocket endpoint (RFC 7395) to use instead of a TCP
    stream (``tls``: wss rather than STARTTLS).
    ``marks``: the time (perf_counter) each step ended is appended to it: the first
    features, then with TLS <proceed/>, the handshake and the features over TLS, then SCRAM
    (with the restart's features) and binding (bench/login_phases.py)."""
    def mark() -> None:
        if marks is not None:
            marks.append(time.perf_counter())

    loop = asyncio.get_running_loop()
    if ws is not None:
        c = await ws_connect(host, port, ws, ctx if tls else None)
        tls = False  # wss: TLS from the first byte, no STARTTLS
        transport = c.transport
    else:
        transport, c = await loop.create_connection(Client, host, port)
    start = ws_open() if ws is not None else header()
    c.send(start)
    await c.expect(b"</stream:features>")
    mark()
    if tls:
        c.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await c.expect(b"<proceed")
        mark()
        tls_transport = await loop.start_tls(transport, c, ctx, server_hostname=DOMAIN)
        mark()
        c.transport = tls_transport
        c.buf.clear()
        c.send(header())
        await c.expect(b"</stream:features>")
        mark()
    nonce = secrets.token_urlsafe(18)
    first_bare = f"n={user},r={nonce}"
    c.send(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>"
           + base64.b64encode(b"n,," + first_bare.encode()) + b"</auth>")
    data = await c.expect(b"</challenge>")
    server_first = base64.b64decode(_between(data, b"<challenge", b"</challenge>"))
    final, server_sig = _scram_final(first_bare, server_first, PASSWORD)
    c.send(b"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>" + base64.b64encode(final)
           + b"</response>")
    data = await c.expect(b"</success>")
    verifier = base64.b64decode(_between(data, b"<success", b"</success>"))
    if verifier != b"v=" + base64.b64encode(server_sig):
        raise XMPPError(f"bad server signature {verifier!r}")
    c.send(start)
    await c.expect(b"</stream:features>")
    mark()
    res = f"<resource>{resource}</resource>" if resource else ""
    c.send(c.stanza(f"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                    f"{res}</bind></iq>".encode()))
    await c.expect(b"</iq>")
    mark()
    if presence:
        c.send(c.stanza(b"<presence/>"))
    return c


async def ws_connect(host: str, port: int, path: str, ctx: ssl.SSLContext | None) -> Client:
    """An RFC 6455 opening handshake (§4.1) offering the ``xmpp`` subprotocol (RFC 7395
    §3.1); the 101 and its Sec-WebSocket-Accept are checked."""
    loop = asyncio.get_running_loop()
    transport, c = await loop.create_connection(
        Client, host, port, ssl=ctx, server_hostname=DOMAIN if ctx else None)
    c.ws = True
    key = base64.b64encode(secrets.token_bytes(16))
    c.accept = base64.b64encode(hashlib.sha1(key + WS_GUID).digest())
    c.upgraded = loop.create_future()
    transport.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + DOMAIN.encode()
                    + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n"
                    b"Sec-WebSocket-Protocol: xmpp\r\n\r\n")
    await asyncio.wait_for(c.upgraded, 30)
    return c


# -- XMPP over BOSH (XEP-0124, XEP-0206) ------------------------------------------------------

HTTPBIND = "http://jabber.org/protocol/httpbind"
XBOSH = "urn:xmpp:xbosh"
BOSH_HEADERS = {"Content-Type": "text/xml; charset=utf-8"}
BOSH_TERMINATE = (b"type='terminate'", b'type="terminate"')


class BoshClient:
    """One BOSH session as a browser client keeps it (Converse.js through Strophe): ``hold=1``,
    so at most ``requests`` = 2 requests out at a time (XEP-0124 §11), one always held by the
    server for what it has to say, the other carrying what the client sends; requests go in
    ``rid`` order over the shared keep-alive pool of one aiohttp ``ClientSession``.

    It offers what ``scenario_messages`` uses of ``Client``: ``transport.write`` (queue
    stanzas for the next request), ``pack``, ``stanza``, ``counting`` and ``on_messages``
    (called with the number of ``</message>`` in each response), ``lost``."""

    __slots__ = ("http", "url", "rid", "sid", "outstanding", "pending", "running", "lost",
                 "counting", "on_messages", "buf", "_prefix", "_loop")
    posts = 0  # every request of every session (HTTP requests per message, in the result)

    def __init__(self, http: Any, url: str) -> None:
        self.http = http
        self.url = url
        self.rid = secrets.randbelow(2**40) + 1000
        self.sid = ""
        self.outstanding = 0
        self.pending: list[bytes] = []
        self.running = False
        self.lost = False
        self.counting = False
        self.on_messages: Any = None
        self.buf = bytearray()  # unused: Client's interface
        self._prefix = b""
        self._loop = asyncio.get_running_loop()

    @property
    def transport(self) -> BoshClient:
        return self  # write() and abort(), as a transport has them

    async def post(self, children: bytes = b"", attrs: str = "") -> bytes:
        self.rid += 1
        BoshClient.posts += 1
        if self._prefix and not attrs:
            head = self._prefix + str(self.rid).encode() + b"'>"
        else:
            sid = f" sid='{self.sid}'" if self.sid else ""
            head = f"<body xmlns='{HTTPBIND}' rid='{self.rid}'{sid}{attrs}>".encode()
        async with self.http.post(self.url, data=head + children + b"</body>",
                                  headers=BOSH_HEADERS) as r:
            data = await r.read()
            if r.status != 200 or any(t in data for t in BOSH_TERMINATE):
                raise XMPPError(f"BOSH {r.status}: {data[:300]!r}")
            return bytes(data)

    async def until(self, marker: bytes, children: bytes = b"", attrs: str = "") -> bytes:
        """Send, then poll (one request at a time) until ``marker`` has come: the login."""
        got = await self.post(children, attrs)
        while marker not in got:
            if any(bad in got for bad in FAILURE_MARKERS):
                raise XMPPError(got[:300].decode(errors="replace"))
            got += await self.post()
        return got

    # -- the pump ------------------------------------------------------------------------------
    def start(self) -> None:
        self._prefix = f"<body xmlns='{HTTPBIND}' sid='{self.sid}' rid='".encode()
        self.running = True
        self._kick()

    def write(self, data: bytes) -> None:
        self.pending.append(data)
        self._kick()

    def abort(self) -> None:
        self.running = False

    def pack(self, stanzas: list[bytes]) -> bytes:
        return b"".join(stanzas)

    def stanza(self, data: bytes) -> bytes:
        """XEP-0206 §7: stanzas in a <body/> are qualified by 'jabber:client' themselves."""
        end = min(i for i in (data.find(b" "), data.find(b"/"), data.find(b">")) if i > 0)
        return data[:end] + CLIENT_NS + data[end:]

    def _kick(self) -> None:
        # One request held by the server at all times; a second one as soon as there is
        # something to send (never more: 'requests' is 2).
        while self.running and self.outstanding < 2 and (self.pending or not self.outstanding):
            children = b"".join(self.pending)
            self.pending.clear()
            self.outstanding += 1
            self._loop.create_task(self._request(children))

    async def _request(self, children: bytes) -> None:
        try:
            data = await self.post(children)
        except (TimeoutError, OSError, XMPPError, aiohttp.ClientError) as exc:
            if self.running:
                self.lost = True
                self.running = False
                print(f"bosh session {self.sid} lost: {exc!r}"[:300], file=sys.stderr)
            return
        finally:
            self.outstanding -= 1
        if self.counting:
            n = data.count(b"</message>")
            if n:
                self.on_messages(n)
        self._kick()


def bosh_http() -> Any:
    """One client session for all the BOSH clients: keep-alive connections, no pool limit,
    no total timeout (a held request lasts up to 'wait')."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=False),
                                 timeout=aiohttp.ClientTimeout(total=None, sock_read=120))


async def bosh_login(http: Any, url: str, user: str) -> BoshClient:
    """Session creation (hold 1, wait 60, as Converse.js asks), SCRAM-SHA-256, the restart
    (XEP-0206 §5), bind; then the pump starts, with the initial presence."""
    c = BoshClient(http, url)
    created = await c.post(attrs=f" to='{DOMAIN}' wait='60' hold='1' ver='1.11' "
                                 f"xml:lang='en' xmpp:version='1.0' xmlns:xmpp='{XBOSH}'")
    head = created[:created.index(b">")]
    m = re.search(rb"""\ssid=['"]([^'"]+)""", head)
    if m is None:
        raise XMPPError(f"no sid: {created[:300]!r}")
    c.sid = m.group(1).decode()
    if b"<mechanisms" not in created:
        await c.until(b"</mechanisms>")
    nonce = secrets.token_urlsafe(18)
    first_bare = f"n={user},r={nonce}"
    got = await c.until(b"</challenge>", b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' "
                        b"mechanism='SCRAM-SHA-256'>"
                        + base64.b64encode(b"n,," + first_bare.encode()) + b"</auth>")
    final, server_sig = _scram_final(first_bare, base64.b64decode(
        _between(got, b"<challenge", b"</challenge>")), PASSWORD)
    got = await c.until(b"</success>", b"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                        + base64.b64encode(final) + b"</response>")
    if base64.b64decode(_between(got, b"<success", b"</success>")) != \
            b"v=" + base64.b64encode(server_sig):
        raise XMPPError("bad server signature")
    await c.until(b"urn:ietf:params:xml:ns:xmpp-bind", attrs=f" to='{DOMAIN}' xml:lang='en' "
                  f"xmpp:restart='true' xmlns:xmpp='{XBOSH}'")
    await c.until(b"</jid>", c.stanza(b"<iq type='set' id='bind'><bind xmlns="
                                      b"'urn:ietf:params:xml:ns:xmpp-bind'><resource>bench"
                                      b"</resource></bind></iq>"))
    c.pending.append(c.stanza(b"<presence/>"))
    c.start()
    return c


async def gather_bounded(coros: list[Any], parallel: int) -> list[Any]:
    sem = asyncio.Semaphore(parallel)

    async def one(coro: Any) -> Any:
        async with sem:
            return await coro

    return list(await asyncio.gather(*(one(c) for c in coros)))


# -- the realistic login (hold --realistic) ---------------------------------------------------

# What Conversations announces (XEP-0115): the server asks for it once per 'ver' (disco#info)
# and then knows which PEP nodes each session wants (+notify).
CAPS_IDENTITY = ("client", "phone", "", "Conversations")
CAPS_FEATURES = sorted([
    "http://jabber.org/protocol/caps", "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/chatstates", "urn:xmpp:ping", "urn:xmpp:receipts",
    "urn:xmpp:chat-markers:0", "urn:xmpp:message-correct:0", "jabber:x:conference",
    "urn:xmpp:avatar:metadata+notify", "http://jabber.org/protocol/nick+notify",
    "urn:xmpp:bookmarks:1+notify", "eu.siacs.conversations.axolotl.devicelist+notify",
    "urn:xmpp:jingle:1", "urn:xmpp:jingle-message:0"])
CAPS_NODE = "http://conversations.im"


def caps_ver() -> str:
    """XEP-0115 §5.1: the verification string of CAPS_IDENTITY and CAPS_FEATURES."""
    s = "/".join(CAPS_IDENTITY) + "<" + "".join(f + "<" for f in CAPS_FEATURES)
    return base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()


def _attr_escape(v: str) -> str:
    return v.replace("&", "&amp;").replace("'", "&apos;").replace("<", "&lt;")


class Session:
    """After bind, a connection parsed with a pull parser: it answers what a client must
    (XEP-0198 <r/>, disco#info for its caps, pings) and awaits results by iq id."""

    def __init__(self, c: Client, leftover: bytes) -> None:
        import xml.etree.ElementTree as ET
        self.c = c
        self.h = 0
        self.sm = False
        self.waits: dict[str, asyncio.Future[Any]] = {}
        self.parser = ET.XMLPullParser(("start", "end"))
        self.parser.feed(b"<stream:stream xmlns='jabber:client' "
                         b"xmlns:stream='http://etherx.jabber.org/streams'>")
        self.depth = 0
        self.root: Any = None
        c.on_data = self.feed
        if leftover:
            self.feed(leftover)

    def wait(self, key: str) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waits[key] = fut
        return fut

    def _done(self, key: str, el: Any) -> None:
        fut = self.waits.pop(key, None)
        if fut is not None and not fut.done():
            fut.set_result(el)

    def feed(self, data: bytes) -> None:
        self.parser.feed(data)
        for ev, el in self.parser.read_events():
            if ev == "start":
                self.depth += 1
                if self.root is None:
                    self.root = el
                continue
            self.depth -= 1
            if self.depth == 1:
                self.root.remove(el)
                self.element(el)

    def element(self, el: Any) -> None:
        tag = el.tag
        if tag.startswith("{urn:xmpp:sm:3}"):
            name = tag[15:]
            if name == "r":
                self.c.send(f"<a xmlns='urn:xmpp:sm:3' h='{self.h}'/>".encode())
            elif name in ("enabled", "failed"):
                self.sm = name == "enabled"
                self._done("sm", el)
            return
        if tag not in ("{jabber:client}iq", "{jabber:client}message",
                       "{jabber:client}presence"):
            return
        if self.sm:
            self.h += 1
        if tag != "{jabber:client}iq":
            return
        kind, sid = el.get("type"), el.get("id", "")
        if kind in ("result", "error"):
            self._done(sid, el)
            return
        to = _attr_escape(el.get("from", DOMAIN))
        sid = _attr_escape(sid)
        if el.find("{http://jabber.org/protocol/disco#info}query") is not None:
            cat, typ, lang, name = CAPS_IDENTITY
            feats = "".join(f"<feature var='{f}'/>" for f in CAPS_FEATURES)
            node = el[0].get("node")
            node_attr = f" node='{_attr_escape(node)}'" if node else ""
            self.c.send(f"<iq type='result' to='{to}' id='{sid}'><query xmlns="
                        f"'http://jabber.org/protocol/disco#info'{node_attr}><identity "
                        f"category='{cat}' type='{typ}' name='{name}'/>{feats}</query>"
                        "</iq>".encode())
        elif el.find("{urn:xmpp:ping}ping") is not None:
            self.c.send(f"<iq type='result' to='{to}' id='{sid}'/>".encode())
        else:
            self.c.send(f"<iq type='error' to='{to}' id='{sid}'><error type='cancel'>"
                        "<service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
                        "</error></iq>".encode())

    async def iqs(self, *stanzas: tuple[str, str], timeout: float = 60.0) -> list[Any]:
        """Send iqs (id, the iq's inside) pipelined; wait for all of their answers."""
        futs = []
        for sid, (kind, inner) in enumerate(stanzas):
            key = f"q{sid}"
            futs.append(self.wait(key))
            self.c.send(f"<iq type='{kind}' id='{key}'>{inner}</iq>".encode())
        return list(await asyncio.wait_for(asyncio.gather(*futs), timeout))


async def realistic_login(host: str, port: int, user: str, tls: bool,
                          ctx: ssl.SSLContext) -> Client:
    """What Conversations does at login, after SCRAM and a classic bind: stream management
    with resumption (XEP-0198), carbons (XEP-0280), the roster, the blocklist (XEP-0191),
    bookmarks from PEP (XEP-0402), presence with caps (XEP-0115), a page of the archive
    (XEP-0313, the latest 50), and then CSI inactive (XEP-0352), as a phone in a pocket."""
    c = await login(host, port, user, tls, ctx, resource=f"Conv.{secrets.token_hex(4)}",
                    presence=False)
    s = Session(c, bytes(c.buf))
    c.buf.clear()
    fut = s.wait("sm")
    c.send(b"<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    await asyncio.wait_for(fut, 30)
    await s.iqs(
        ("set", "<enable xmlns='urn:xmpp:carbons:2'/>"),
        ("get", "<query xmlns='jabber:iq:roster'/>"),
        ("get", "<blocklist xmlns='urn:xmpp:blocking'/>"),
        ("get", "<pubsub xmlns='http://jabber.org/protocol/pubsub'>"
                "<items node='urn:xmpp:bookmarks:1'/></pubsub>"))
    c.send(f"<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
           f"node='{CAPS_NODE}' ver='{caps_ver()}'/></presence>".encode())
    await s.iqs(("set", "<query xmlns='urn:xmpp:mam:2'><set xmlns="
                        "'http://jabber.org/protocol/rsm'><max>50</max><before/></set>"
                        "</query>"))
    c.send(b"<inactive xmlns='urn:xmpp:csi:0'/>")
    return c


# -- scenarios ----------------------------------------------------------------------------------

async def scenario_hold(a: argparse.Namespace) -> dict[str, Any]:
    """Log in ``count`` connections, report, then keep them until stdin says 'close'."""
    ctx = client_context()
    t0 = time.monotonic()
    http = bosh_http() if a.bosh else None
    if a.bosh:
        url = f"http://{a.host}:{a.port}{a.bosh}"
        clients = await gather_bounded([bosh_login(http, url, f"u{a.first + i}")
                                        for i in range(a.count)], a.parallel)
    elif a.realistic:
        clients = await gather_bounded(
            [realistic_login(a.host, a.port, f"u{a.first + i}", a.tls, ctx)
             for i in range(a.count)], a.parallel)
    else:
        clients = await gather_bounded(
            [login(a.host, a.port, f"u{a.first + i}", a.tls, ctx, ws=a.ws)
             for i in range(a.count)], a.parallel)
    await asyncio.sleep(a.settle)
    print(json.dumps({"held": len(clients), "seconds": time.monotonic() - t0}), flush=True)
    loop = asyncio.get_running_loop()
    line = await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.readline), a.max_hold)
    for c in clients:
        c.transport.abort()
    if http is not None:
        await http.close()
    await asyncio.sleep(0.2)
    return {"closed": line.strip()}


async def scenario_logins(a: argparse.Namespace) -> dict[str, Any]:
    """SCRAM-SHA-256 (+ STARTTLS when --tls) logins to bind, with ``parallel`` in flight."""
    ctx = client_context()
    done = 0
    errors: list[str] = []
    stop_at = 0.0
    window: list[float] = []

    total = 0  # every login, warm-up included (to divide whole-run counters by)

    async def worker(k: int) -> None:
        nonlocal done, total
        i = 0
        while time.monotonic() < stop_at:
            user = f"u{a.first + (k + i * a.parallel) % a.users}"
            i += 1
            try:
                c = await login(a.host, a.port, user, a.tls, ctx, resource=None, presence=False,
                                ws=a.ws)
            except (OSError, XMPPError, TimeoutError) as exc:
                errors.append(repr(exc)[:200])
                if len(errors) > 50:
                    return
                continue
            total += 1
            if window and time.monotonic() >= window[0]:
                done += 1
            c.close_stream()
            c.transport.close()

    # warm the salted-password cache and the server (one login per user, untimed)
    warm = await gather_bounded([login(a.host, a.port, f"u{a.first + i}", a.tls, ctx,
                                       resource=None, presence=False, ws=a.ws)
                                 for i in range(min(a.users, 200))], a.parallel)
    total += len(warm)
    start = time.monotonic()
    stop_at = start + a.warmup + a.seconds
    window.append(start + a.warmup)
    workers = [asyncio.create_task(worker(k)) for k in range(a.parallel)]
    await asyncio.sleep(a.warmup)
    cpu0 = cpu_seconds()
    server_cpu0 = pid_cpu_seconds(a.server_pid)
    t0 = time.monotonic()
    done = 0
    await asyncio.sleep(a.seconds)
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds() - cpu0
    server_cpu = pid_cpu_seconds(a.server_pid) - server_cpu0
    count = done
    await asyncio.wait(workers, timeout=30)
    result = {"logins_per_s": count / elapsed, "logins": count, "errors": len(errors),
              "first_errors": errors[:3], "gen_cpu": cpu / elapsed, "total_logins": total}
    if a.server_pid and count:
        # the figure that matters on a shared machine: the server's CPU per login
        result["server_cpu_ms_per_login"] = 1000 * server_cpu / count
        result["server_cpu"] = server_cpu / elapsed
    return result


async def scenario_messages(a: argparse.Namespace) -> dict[str, Any]:
    """``pairs`` sender->receiver pairs, each with ``inflight`` messages outstanding.

    With ``--port2`` (two cluster nodes): pair i's sender logs in on node ``i % 2`` and has
    two receivers, ``u<first+2i+1>`` on node 0 and ``u<first+2n+i>`` on node 1 (so 3n
    accounts), to which it sends in turn: exactly half of the messages cross nodes whatever
    the latency (a closed loop over pairs that either cross or not lets the faster local pairs
    send more: only 29% of the messages crossed that way). Two accounts rather than two
    resources of one: an account with resources on two nodes makes every chat message a
    carbons cast (a Redis lookup), which is not what is measured here. With ``--same-node``
    too, one receiver on its sender's node: no message crosses (the scale-out bound). With
    ``--port2`` equal to ``--port``: the same clients on one node (nothing crosses).

    With ``--rate``: an open loop at a fixed rate instead (``messages_at_rate``)."""
    if a.rate:
        return await messages_at_rate(a)
    ctx = client_context()
    n = a.pairs
    ports = (a.port, a.port2 or a.port)
    http = bosh_http() if a.bosh else None

    def connect(port: int, user: str) -> Any:
        if a.bosh:  # XMPP over BOSH at http://host:port/PATH (no TLS)
            return bosh_login(http, f"http://{a.host}:{port}{a.bosh}", user)
        return login(a.host, port, user, a.tls, ctx, ws=a.ws)

    senders = await gather_bounded(
        [connect(ports[i % 2], f"u{a.first + 2 * i}") for i in range(n)], a.parallel)
    # pair -> its receivers: (node index, account)
    if not a.port2:
        routes = [[(0, f"u{a.first + 2 * i + 1}")] for i in range(n)]
    elif a.same_node:
        routes = [[(i % 2, f"u{a.first + 2 * i + 1}")] for i in range(n)]
    else:
        routes = [[(0, f"u{a.first + 2 * i + 1}"), (1, f"u{a.first + 2 * n + i}")]
                  for i in range(n)]
    receivers = await gather_bounded(
        [connect(ports[node], user) for i in range(n) for node, user in routes[i]], a.parallel)
    await asyncio.sleep(min(0.5, a.settle))  # presence and other post-login traffic settles
    perf = time.perf_counter
    state = {"measuring": False, "running": True, "count": 0, "crossed": 0}
    latencies: list[float] = []
    first_receiver = 0

    def make_pair(i: int, conns: list[Any]) -> None:
        s = senders[i]
        stanzas = [s.stanza(f"<message to='{user}@{DOMAIN}/bench' type='chat' id='b{i}'>"
                            .encode() + BODY + b"</message>") for _, user in routes[i]]
        # --port2 equal to --port: the same layout (two receivers per pair) on one node, the
        # baseline bench/cluster.py compares the two nodes with.
        crossing = [a.port2 not in (0, a.port) and node != i % 2 for node, _ in routes[i]]
        sents: list[collections.deque[float]] = [collections.deque() for _ in conns]
        write = s.transport.write
        pack = s.pack  # one write; over WebSocket one frame per stanza
        turn = [0]

        def send(k: int, now: float) -> None:
            out = []
            for _ in range(k):
                c = turn[0]
                turn[0] = (c + 1) % len(conns)
                sents[c].append(now)
                out.append(stanzas[c])
            write(pack(out))

        def on_messages_of(c: int) -> Any:
            sent = sents[c]

            def on_messages(k: int) -> None:
                now = perf()
                measuring = state["measuring"]
                for _ in range(k):
                    if not sent:
                        break
                    t = sent.popleft()
                    if measuring:
                        latencies.append(now - t)
                if measuring:
                    state["count"] += k
                    if crossing[c]:
                        state["crossed"] += k
                if state["running"]:
                    send(k, now)
            return on_messages

        for c, r in enumerate(conns):
            r.buf.clear()
            r.counting = True
            r.on_messages = on_messages_of(c)
        send(a.inflight, perf())

    for i in range(n):
        make_pair(i, receivers[first_receiver:first_receiver + len(routes[i])])
        first_receiver += len(routes[i])
    await asyncio.sleep(a.warmup)
    state["measuring"] = True
    posts0 = BoshClient.posts
    cpu0 = cpu_seconds()
    each0 = [pid_cpu_seconds([pid]) for pid in a.server_pid]
    t0 = time.monotonic()
    await asyncio.sleep(a.seconds)
    state["measuring"] = False
    posts = BoshClient.posts - posts0
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds() - cpu0
    each = [pid_cpu_seconds([pid]) - c0 for pid, c0 in zip(a.server_pid, each0, strict=True)]
    server_cpu = sum(each)
    count = state["count"]
    crossed = state["crossed"]
    state["running"] = False
    await asyncio.sleep(0.3)
    lost = sum(c.lost for c in senders + receivers)
    for c in senders + receivers:
        c.transport.abort()
    if http is not None:
        await http.close()  # the held requests end with their connections
    lat = sorted(latencies)
    q = (lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000) if lat else (lambda p: 0.0)
    result = {"msgs_per_s": count / elapsed, "messages": count, "p50_ms": q(0.50),
              "p99_ms": q(0.99), "gen_cpu": cpu / elapsed, "lost_connections": lost,
              "crossed_fraction": crossed / count if count else 0.0}
    if a.bosh and count:
        # requests answered in the window per message delivered: how well they batch
        result["bosh_requests_per_msg"] = posts / count
    if a.server_pid and count:
        # The steadier figure on a shared machine: the server's CPU (all its threads and
        # child processes) over the measured window, per message delivered in it.
        result["server_cpu_us_per_msg"] = 1e6 * server_cpu / count
        # each node's share (the nodes of a cluster, in --server-pid order)
        result["server_cpu_us_per_msg_each"] = [1e6 * c / count for c in each]
    return result


async def messages_at_rate(a: argparse.Namespace) -> dict[str, Any]:
    """``messages --rate N``: an open loop, N messages/s in total whatever the server does.

    The same accounts as the closed loop, but every pair has two receivers (``u<first+2i+1>``
    and ``u<first+2n+i>``), to which its sender writes in turn: with ``--port2``, the first on
    node 0 and the second on node 1 (half of the messages cross nodes), or both on the
    sender's node with ``--same-node`` (nothing crosses, the same clients and connections per
    node); without, both on the one node. A ticker (``--tick`` ms) writes what is due since
    the start, round-robin over the pairs (one write per sender and tick); a message's
    latency is from the tick that wrote it to its receiver reading it.

    Reported besides the closed loop's figures: ``target_rate``, ``sent_per_s``, the
    backlog (sent and not yet received) at the start and end of the window, the ticker's p99
    interval (the generator falling behind shows there and in ``gen_cpu``), ``kept`` (the
    rate was delivered: within 3% and no growing backlog) and the nodes' user and system
    CPU per message separately."""
    ctx = client_context()
    n = a.pairs
    ports = (a.port, a.port2 or a.port)
    senders = await gather_bounded(
        [login(a.host, ports[i % 2], f"u{a.first + 2 * i}", a.tls, ctx, ws=a.ws)
         for i in range(n)], a.parallel)
    second = 1 if a.port2 and not a.same_node else 0
    routes = [[(i % 2 if a.same_node else 0, f"u{a.first + 2 * i + 1}"),
               (i % 2 if a.same_node else second, f"u{a.first + 2 * n + i}")]
              for i in range(n)]
    receivers = await gather_bounded(
        [login(a.host, ports[node], user, a.tls, ctx, ws=a.ws)
         for i in range(n) for node, user in routes[i]], a.parallel)
    await asyncio.sleep(min(0.5, a.settle))
    perf = time.perf_counter
    state = {"measuring": False, "count": 0, "crossed": 0, "received": 0}
    latencies: list[float] = []
    # lane j = (receiver c, pair i), j = c * n + i: every sender in turn, alternating receivers
    lanes: list[tuple[Any, bytes, collections.deque[float]]] = []
    for c in range(2):
        for i in range(n):
            node, user = routes[i][c]
            s, r = senders[i], receivers[2 * i + c]
            crossing = bool(a.port2) and a.port2 != a.port and node != i % 2
            sent: collections.deque[float] = collections.deque()
            lanes.append((s, s.stanza(f"<message to='{user}@{DOMAIN}/bench' type='chat' "
                                      f"id='b{i}'>".encode() + BODY + b"</message>"), sent))

            def on_messages(k: int, sent: collections.deque[float] = sent,
                            crossing: bool = crossing) -> None:
                now = perf()
                state["received"] += k
                if state["measuring"]:
                    for _ in range(min(k, len(sent))):
                        latencies.append(now - sent.popleft())
                    state["count"] += k
                    if crossing:
                        state["crossed"] += k
                else:
                    for _ in range(min(k, len(sent))):
                        sent.popleft()

            r.buf.clear()
            r.counting = True
            r.on_messages = on_messages
    rate, tick = float(a.rate), a.tick / 1000
    ticks: list[float] = []
    sent_total = [0]

    async def ticker() -> None:
        start = last = perf()
        lane = 0
        nlanes = len(lanes)
        while True:
            now = perf()
            if state["measuring"]:
                ticks.append(now - last)
            last = now
            due = int((now - start) * rate) - sent_total[0]
            if due > 0:
                out: dict[Any, list[bytes]] = {}
                for _ in range(due):
                    s, stanza, sent = lanes[lane]
                    lane = lane + 1 if lane + 1 < nlanes else 0
                    sent.append(now)
                    out.setdefault(s, []).append(stanza)
                for s, stanzas in out.items():
                    s.transport.write(s.pack(stanzas))
                sent_total[0] += due
            await asyncio.sleep(tick)

    task = asyncio.ensure_future(ticker())
    await asyncio.sleep(a.warmup)
    state["measuring"] = True
    print("measuring", file=sys.stderr, flush=True)  # bench/cluster.py --py-spy starts here
    backlog0 = sent_total[0] - state["received"]
    sent0 = sent_total[0]
    cpu0 = cpu_seconds()
    split0 = [cpu_user_system(pid) for pid in a.server_pid]
    waits0 = [_voluntary_switches(pid) for pid in a.server_pid]
    t0 = time.monotonic()
    await asyncio.sleep(a.seconds)
    state["measuring"] = False
    elapsed = time.monotonic() - t0
    split = [tuple(x - y for x, y in zip(cpu_user_system(pid), s0, strict=True))
             for pid, s0 in zip(a.server_pid, split0, strict=True)]
    waits = [_voluntary_switches(pid) - w0 for pid, w0 in zip(a.server_pid, waits0, strict=True)]
    cpu = cpu_seconds() - cpu0
    sent_n = sent_total[0] - sent0
    backlog1 = sent_total[0] - state["received"]
    task.cancel()
    count, crossed = state["count"], state["crossed"]
    await asyncio.sleep(0.3)
    lost = sum(c.lost for c in senders + receivers)
    for c in senders + receivers:
        c.transport.abort()
    lat = sorted(latencies)
    q = (lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000) if lat else (lambda p: 0.0)
    ticks.sort()
    result: dict[str, Any] = {
        "target_rate": rate, "sent_per_s": sent_n / elapsed, "msgs_per_s": count / elapsed,
        "messages": count, "p50_ms": q(0.50), "p99_ms": q(0.99), "gen_cpu": cpu / elapsed,
        "lost_connections": lost, "crossed_fraction": crossed / count if count else 0.0,
        "backlog_start": backlog0, "backlog_end": backlog1,
        "tick_p99_ms": ticks[int(0.99 * len(ticks))] * 1000 if ticks else 0.0,
        "kept": count >= 0.97 * rate * elapsed and backlog1 - backlog0 < 0.02 * rate}
    if a.server_pid and count:
        result["server_cpu_us_per_msg"] = 1e6 * sum(u + s for u, s in split) / count
        result["server_cpu_us_per_msg_each"] = [1e6 * (u + s) / count for u, s in split]
        result["server_user_us_per_msg_each"] = [1e6 * u / count for u, _ in split]
        result["server_sys_us_per_msg_each"] = [1e6 * s / count for _, s in split]
        result["server_cores_each"] = [(u + s) / elapsed for u, s in split]
        # how often each node's main thread slept (its event loop waiting for something to
        # do), per message: the fewer, the more each loop turn handles
        result["server_sleeps_per_msg_each"] = [w / count for w in waits]
    return result


def _voluntary_switches(pid: int) -> int:
    """How many times the process's main thread blocked (``voluntary_ctxt_switches``)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches"):
                return int(line.split()[1])
    return 0


async def scenario_roster(a: argparse.Namespace) -> dict[str, Any]:
    """Time a full login of an account with a big roster: STARTTLS (if --tls), SCRAM, bind,
    roster get (until its result), initial presence."""
    ctx = client_context()
    times = []
    items = []
    for _ in range(a.count):
        t0 = time.perf_counter()
        c = await login(a.host, a.port, a.user, a.tls, ctx, resource=None, presence=False)
        c.send(b"<iq type='get' id='roster1'><query xmlns='jabber:iq:roster'/></iq>")
        await c.expect((b"id='roster1'", b'id="roster1"'))
        data = await c.expect(b"</iq>")  # no 'ver' sent: the result always has a <query>
        c.send(b"<presence/>")
        times.append((time.perf_counter() - t0) * 1000)
        items.append(data.count(b"<item"))
        c.send(CLOSE)
        c.transport.close()
        await asyncio.sleep(0.05)
    return {"roster_login_ms": statistics.median(times), "min_ms": min(times),
            "items": items[-1]}


async def scenario_make_roster(a: argparse.Namespace) -> dict[str, Any]:
    """Give ``user`` a roster of ``count`` contacts with subscription 'both', through the
    protocol (the same steps on every server): roster set, subscribe, the contact accepts and
    subscribes back, the user accepts."""
    ctx = client_context()
    owner = await login(a.host, a.port, a.user, False, ctx, resource="owner")
    contacts = [f"c{i}" for i in range(a.count)]
    for name in contacts:
        owner.send(f"<iq type='set' id='r{name}'><query xmlns='jabber:iq:roster'><item "
                   f"jid='{name}@{DOMAIN}' name='{name}'><group>Bench</group></item></query>"
                   "</iq>".encode())
    # wait for the last roster result (results may be self-closed: match the id)
    last = contacts[-1]
    await owner.expect((f"id='r{last}'".encode(), f'id="r{last}"'.encode()))
    for name in contacts:
        owner.send(f"<presence to='{name}@{DOMAIN}' type='subscribe'/>".encode())
    await asyncio.sleep(min(1.0, a.settle))

    async def accept(name: str) -> None:
        c = await login(a.host, a.port, name, False, ctx, resource="c", presence=False)
        me = f"{a.user}@{DOMAIN}"
        c.send(f"<presence to='{me}' type='subscribed'/><presence to='{me}' type='subscribe'/>"
               "<presence/>".encode())
        await asyncio.sleep(min(0.5, a.settle))
        c.send(CLOSE)
        await asyncio.sleep(0.2)
        c.transport.close()

    owner.counting = True  # ignore what arrives; we only answer
    owner.on_messages = lambda k: None
    await gather_bounded([accept(n) for n in contacts], 20)
    for name in contacts:
        owner.send(f"<presence to='{name}@{DOMAIN}' type='subscribed'/>".encode())
    await asyncio.sleep(min(1.0, a.settle))
    owner.send(CLOSE)
    await asyncio.sleep(0.3)
    owner.transport.close()
    return {"contacts": len(contacts)}


SCENARIOS = {"hold": scenario_hold, "logins": scenario_logins, "messages": scenario_messages,
             "roster": scenario_roster, "make_roster": scenario_make_roster}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=sorted(SCENARIOS))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--port2", type=int, default=0,
                   help="'messages': a second node's port (half of the pairs cross nodes)")
    p.add_argument("--tls", action="store_true", help="STARTTLS before authenticating (with "
                   "--ws: wss, TLS from the start)")
    p.add_argument("--ws", metavar="PATH", help="XMPP over WebSocket (RFC 7395) at this path of "
                   "host:port instead of a TCP stream (not with 'hold --realistic')")
    p.add_argument("--bosh", metavar="PATH", help="'messages' and 'hold': XMPP over BOSH "
                   "(XEP-0124/0206) at http://host:port/PATH, each session holding one request "
                   "(hold 1, wait 60) and sending on a second one, as Converse.js does")
    p.add_argument("--first", type=int, default=0, help="first user index (u<first>)")
    p.add_argument("--users", type=int, default=200, help="accounts used by 'logins'")
    p.add_argument("--user", default="r0")
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--pairs", type=int, default=5)
    p.add_argument("--inflight", type=int, default=1)
    p.add_argument("--parallel", type=int, default=50)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--settle", type=float, default=2.0)
    p.add_argument("--max-hold", type=float, default=300.0)
    p.add_argument("--realistic", action="store_true",
                   help="'hold': log in as Conversations does (realistic_login), not bare")
    p.add_argument("--stdloop", action="store_true", help="do not use uvloop")
    p.add_argument("--same-node", action="store_true",
                   help="'messages' with --port2: each receiver on its sender's node (none "
                        "crosses)")
    p.add_argument("--rate", type=float, default=0.0,
                   help="'messages': an open loop at this many messages/s in total, spread "
                        "over the pairs (default: the closed loop, --inflight per pair)")
    p.add_argument("--tick", type=float, default=1.0,
                   help="'messages --rate': the ticker's period in ms")
    p.add_argument("--server-pid", type=int, action="append", default=[],
                   help="also report the CPU of this server process per login / message "
                        "(Linux; repeat it for the nodes of a cluster: their sum)")
    a = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if uvloop is not None and not a.stdloop:
        uvloop.install()
    result = asyncio.run(asyncio.wait_for(SCENARIOS[a.scenario](a), a.max_hold + 120))
    result["pid"] = os.getpid()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
