"""The SOCKS5 side of mod_proxy65: RFC 1928 as XEP-0065 §6 profiles it, and the relay.

Each connection says hello (no-authentication method), then asks to CONNECT to a domain name
that is SHA1(SID + requester JID + target JID) in hex (XEP-0065 §6.3.2). The first connection
with a hash is the target's, the second the requester's; a third is refused. Nothing is read
from a connection between its request and the activation (reading is paused: what a client
sends too early waits in the kernel's buffer). The requester's `<activate/>` (the module's
IQ) pairs the two and bytes flow both ways, each direction with back-pressure: when one
side's transport holds more than ``WRITE_BUFFER`` bytes not yet sent, the other side is not
read until it drains, so a slow receiver holds the sender back over TCP and the server's
memory per relayed stream stays bounded. A shaper (a token bucket per connection) pauses
reading the same way.

An EOF from one side is passed on as an EOF to the other (TCP half-close); the relay ends
when both sides have sent theirs, when either connection is lost (the other is closed once
what it has buffered is written), or after ``idle_timeout`` without a byte either way.
A connection that is not relaying within ``activation_timeout`` of its arrival is closed.

Bad input closes the connection, after the RFC 1928 reply where one is defined: no
acceptable method (X'FF', §3), a command other than CONNECT (X'07', §6), an address type
other than a domain name (X'08'), a domain name that is not a hash (X'04', host unreachable),
a hash already taken by two connections or relaying (X'02', not allowed by ruleset). A
greeting or request that is not SOCKS version 5 has no reply in RFC 1928: closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass

from suricate.net.shaper import TokenBucket

log = logging.getLogger("suricate.mod_proxy65")

VERSION = 5
NO_AUTH = 0x00
NO_ACCEPTABLE_METHOD = 0xFF
CMD_CONNECT = 0x01
ATYP_DOMAIN = 0x03
# RFC 1928 §6 reply codes.
SUCCEEDED = 0x00
GENERAL_FAILURE = 0x01
NOT_ALLOWED = 0x02
HOST_UNREACHABLE = 0x04
COMMAND_NOT_SUPPORTED = 0x07
ADDRESS_TYPE_NOT_SUPPORTED = 0x08

WRITE_BUFFER = 65536  # bytes a transport may hold before the other side stops being read
MAX_HANDSHAKE = 600  # bytes: a greeting (2 + 255) and a request (7 + 255) fit
CLOSE_GRACE = 30.0  # seconds a closing side may take to take what it was sent
_HASH = re.compile(rb"[0-9a-f]{40}")

# Reasons a connection is not being read (bits).
_WAITING = 1  # requested, not activated yet
_PEER_FULL = 2  # the other side's transport is full
_SHAPED = 4  # the shaper's bucket is in debt


@dataclass(frozen=True, slots=True)
class Limits:
    activation_timeout: float
    idle_timeout: float | None
    max_pending: int
    recbuf: int | None = None
    sndbuf: int | None = None
    new_bucket: Callable[[], TokenBucket] | None = None


class Streamhost:
    """The SOCKS5 listener and the connections waiting for their activation."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.server: asyncio.Server | None = None
        self.pending: dict[str, list[Socks5Connection]] = {}  # hash -> [target, requester]
        self.waiting: set[Socks5Connection] = set()  # not relaying yet (handshake or paired)
        self.relays: set[Relay] = set()
        self.relaying: set[str] = set()  # hashes of the relays

    async def start(self, ip: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        self.server = await loop.create_server(lambda: Socks5Connection(self), host=ip,
                                               port=port, family=family, reuse_address=True)
        bound = int(self.server.sockets[0].getsockname()[1])
        log.info("proxy65_listening ip=%s port=%d", ip, bound)
        return bound

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for conn in list(self.waiting):
            conn.abort()
        for relay in list(self.relays):
            relay.a.abort()
            relay.b.abort()
        if self.server is not None:
            await self.server.wait_closed()

    # -- pairing ----------------------------------------------------------------------------
    def attach(self, key: str, conn: Socks5Connection) -> bool:
        """A connection asked for ``key``: the first two are kept, a third is refused."""
        if key in self.relaying:
            return False
        conns = self.pending.setdefault(key, [])
        if len(conns) >= 2:
            return False
        conns.append(conn)
        return True

    def detach(self, conn: Socks5Connection) -> None:
        self.waiting.discard(conn)
        if conn.key is None:
            return
        conns = self.pending.get(conn.key)
        if conns is not None and conn in conns:
            conns.remove(conn)
            if not conns:
                del self.pending[conn.key]

    def connected(self, key: str) -> int:
        """How many connections wait with ``key`` (0, 1 or 2)."""
        return len(self.pending.get(key, ()))

    def activate(self, key: str, on_end: Callable[[Relay], None]) -> Relay:
        """Relay the two connections waiting with ``key`` (``connected(key) == 2``)."""
        target, requester = self.pending.pop(key)
        relay = Relay(self, key, target, requester, on_end)
        self.relays.add(relay)
        self.relaying.add(key)
        return relay


class Socks5Connection(asyncio.Protocol):
    """One TCP connection to the proxy: the SOCKS5 handshake, then one side of a relay."""

    def __init__(self, host: Streamhost) -> None:
        self.host = host
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.state = "greeting"  # greeting, request, waiting, relaying, closed
        self.key: str | None = None
        self.early = b""  # bytes that came with the request, before the activation
        self.relay: Relay | None = None
        self.peer: Socks5Connection | None = None
        self.bucket: TokenBucket | None = None
        self.held = 0
        self.eof = False
        self.timer: asyncio.TimerHandle | None = None

    # -- asyncio ----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        limits = self.host.limits
        if len(self.host.waiting) >= limits.max_pending:
            log.warning("proxy65_max_pending limit=%d", limits.max_pending)
            transport.abort()
            self.state = "closed"
            return
        self.host.waiting.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                if limits.recbuf is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, limits.recbuf)
                if limits.sndbuf is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, limits.sndbuf)
        transport.set_write_buffer_limits(high=WRITE_BUFFER)
        self.timer = asyncio.get_running_loop().call_later(limits.activation_timeout,
                                                           self._not_activated)

    def data_received(self, data: bytes) -> None:
        if self.state == "relaying":
            assert self.relay is not None
            self.relay.forward(self, data)
            return
        if self.state not in ("greeting", "request"):
            self.early += data  # a read already under way when reading was paused
            return
        self.buffer += data
        try:
            self._handshake()
        except Exception:  # one connection's trouble stays its own
            log.exception("proxy65_handshake_failed")
            self.abort()

    def eof_received(self) -> bool | None:
        if self.state == "relaying" and self.relay is not None:
            return self.relay.eof(self)
        return None  # before relaying: the connection ends

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = "closed"
        if self.timer is not None:
            self.timer.cancel()
        self.host.detach(self)
        if self.relay is not None:
            self.relay.lost(self)

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.hold(_PEER_FULL)

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.release(_PEER_FULL)

    # -- reading on and off -----------------------------------------------------------------
    def hold(self, reason: int) -> None:
        if not self.held and self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()
        self.held |= reason

    def release(self, reason: int) -> None:
        if not self.held & reason:
            return
        self.held &= ~reason
        if not self.held and self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- the handshake ------------------------------------------------------------------------
    def _handshake(self) -> None:
        if len(self.buffer) > MAX_HANDSHAKE:
            self.abort()
            return
        if self.state == "greeting":
            self._greeting()
        if self.state == "request":
            self._request()

    def _greeting(self) -> None:
        buf = self.buffer
        if not buf:
            return
        if buf[0] != VERSION:
            self.abort()  # not SOCKS5 (a SOCKS4 client, a browser): RFC 1928 has no reply
            return
        if len(buf) < 2 or len(buf) < 2 + buf[1]:
            return
        methods = buf[2:2 + buf[1]]
        self.buffer = buf[2 + buf[1]:]
        assert self.transport is not None
        if NO_AUTH not in methods:
            # RFC 1928 §3: X'FF', then the client closes; we do not wait for it to.
            self.transport.write(bytes((VERSION, NO_ACCEPTABLE_METHOD)))
            self._close()
            return
        self.transport.write(bytes((VERSION, NO_AUTH)))
        self.state = "request"

    def _request(self) -> None:
        buf = self.buffer
        if len(buf) < 4:
            return
        version, command, _reserved, atyp = buf[:4]
        if version != VERSION:
            self._fail(GENERAL_FAILURE)
        elif command != CMD_CONNECT:
            self._fail(COMMAND_NOT_SUPPORTED)  # BIND, UDP ASSOCIATE: XEP-0065 relays TCP
        elif atyp != ATYP_DOMAIN:
            self._fail(ADDRESS_TYPE_NOT_SUPPORTED)  # the hash is sent as a domain name
        elif len(buf) >= 5 and len(buf) >= 7 + buf[4]:
            end = 5 + buf[4]
            address, port = buf[5:end], buf[end:end + 2]
            self.early = buf[end + 2:]
            self.buffer = b""
            self._connect(address.lower(), port)

    def _connect(self, address: bytes, port: bytes) -> None:
        assert self.transport is not None
        if not _HASH.fullmatch(address):
            self._fail(HOST_UNREACHABLE)
            return
        key = address.decode("ascii")
        if not self.host.attach(key, self):
            self._fail(NOT_ALLOWED)
            return
        self.key = key
        self.state = "waiting"
        self.hold(_WAITING)
        # XEP-0065 §5.3.2: BND.ADDR and BND.PORT are what the client asked for.
        self.transport.write(bytes((VERSION, SUCCEEDED, 0, ATYP_DOMAIN, len(address)))
                             + address + port)

    def _fail(self, code: int) -> None:
        assert self.transport is not None
        # RFC 1928 §6: the reply, with an IPv4 BND.ADDR of zeros, then the server closes.
        self.transport.write(bytes((VERSION, code, 0, 1, 0, 0, 0, 0, 0, 0)))
        self._close()

    def _close(self) -> None:
        self.state = "closed"
        self.hold(_WAITING)
        assert self.transport is not None
        self.transport.close()

    def _not_activated(self) -> None:
        self.timer = None
        if self.state != "relaying":
            log.info("proxy65_activation_timeout state=%s", self.state)
            self.abort()


class Relay:
    """Two activated connections: what one sends is written to the other."""

    def __init__(self, host: Streamhost, key: str, a: Socks5Connection, b: Socks5Connection,
                 on_end: Callable[[Relay], None]) -> None:
        self.host = host
        self.key = key
        self.a, self.b = a, b
        self.on_end = on_end
        self.relayed = 0
        self.ended = False
        self.loop = asyncio.get_running_loop()
        self.last = self.loop.time()
        self.idle: asyncio.TimerHandle | None = None
        limits = host.limits
        for conn, peer in ((a, b), (b, a)):
            host.waiting.discard(conn)
            if conn.timer is not None:
                conn.timer.cancel()
                conn.timer = None
            conn.relay, conn.peer, conn.state = self, peer, "relaying"
            if limits.new_bucket is not None:
                conn.bucket = limits.new_bucket()
        for conn in (a, b):
            if conn.early:
                early, conn.early = conn.early, b""
                self.forward(conn, early)
            conn.release(_WAITING)
        if limits.idle_timeout is not None:
            self.idle = self.loop.call_later(limits.idle_timeout, self._check_idle)

    def forward(self, conn: Socks5Connection, data: bytes) -> None:
        peer = conn.peer
        assert peer is not None and peer.transport is not None
        if peer.transport.is_closing():
            return
        peer.transport.write(data)  # over WRITE_BUFFER, pause_writing holds `conn`
        self.relayed += len(data)
        self.last = self.loop.time()
        if conn.bucket is not None:
            delay = conn.bucket.consume(len(data))
            if delay > 0:
                conn.hold(_SHAPED)
                self.loop.call_later(delay, conn.release, _SHAPED)

    def eof(self, conn: Socks5Connection) -> bool:
        """``conn`` will send nothing more: tell the other side, and end when both said so."""
        conn.eof = True
        peer = conn.peer
        assert peer is not None and peer.transport is not None
        if peer.eof or not peer.transport.can_write_eof():
            self.end()
            return False
        if not peer.transport.is_closing():
            peer.transport.write_eof()
        return True  # keep `conn` open: the other direction may still carry data

    def lost(self, conn: Socks5Connection) -> None:
        self.end()

    def end(self) -> None:
        if self.ended:
            return
        self.ended = True
        self.host.relays.discard(self)
        self.host.relaying.discard(self.key)
        if self.idle is not None:
            self.idle.cancel()
        for conn in (self.a, self.b):
            if conn.transport is not None and not conn.transport.is_closing():
                # What it was sent is written first; a side that takes nothing more is cut.
                if conn.transport.get_write_buffer_size():
                    self.loop.call_later(CLOSE_GRACE, conn.transport.abort)
                conn.transport.close()
        self.on_end(self)

    def _check_idle(self) -> None:
        timeout = self.host.limits.idle_timeout
        assert timeout is not None
        quiet = self.loop.time() - self.last
        if quiet >= timeout:
            log.info("proxy65_idle_timeout relayed=%d", self.relayed)
            self.a.abort()
            self.b.abort()
            self.end()
        else:
            self.idle = self.loop.call_later(timeout - quiet, self._check_idle)
