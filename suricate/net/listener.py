"""Listeners: one asyncio server per ``[[listen.*]]`` entry, counting its connections.

Each connection gets the listener's limits: ``max_connections``, ``backlog``, the
``shaper`` (a token bucket per connection, ``[shaper.NAME] max_rate``) and, with
``proxy_protocol``, the real client address from the HAProxy header."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Mapping
from typing import Any

from suricate.instrument import Instrumentation
from suricate.net.connection import Connection, StreamHandler
from suricate.net.shaper import NO_SHAPER, TokenBucket, bucket_factory
from suricate.net.tls import TLSConfig

log = logging.getLogger("suricate.net")


class Listener:
    __slots__ = ("opts", "kind", "handler_factory", "tls", "direct_tls", "server",
                 "connections", "instrument", "new_bucket", "proxy_protocol")

    def __init__(self, kind: str, opts: Mapping[str, Any],
                 handler_factory: Callable[[Connection], StreamHandler],
                 tls: TLSConfig | None, instrument: Instrumentation | None = None,
                 shapers: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.kind = kind
        self.instrument = instrument
        self.opts = opts
        self.handler_factory = handler_factory
        self.tls = tls
        # Direct TLS (XEP-0368): the handshake comes before any XMPP byte.
        self.direct_tls = tls is not None and tls.mode == "tls"
        self.server: asyncio.Server | None = None
        self.connections: set[Connection] = set()
        self.proxy_protocol = bool(opts.get("proxy_protocol"))
        self.new_bucket: Callable[[], TokenBucket] | None = None
        shaper = opts.get("shaper")
        if shaper and shaper != NO_SHAPER and (shapers is None or shaper not in shapers):
            # The config loader refuses an undefined shaper; a caller that did not pass
            # [shaper] is our bug, and serving unshaped must not go unnoticed.
            log.error("listener_shaper_unknown kind=%s port=%s shaper=%s", kind,
                      opts.get("port"), shaper)
        else:
            self.new_bucket = bucket_factory(shaper, shapers or {})

    @property
    def port(self) -> int:
        if self.server is not None and self.server.sockets:
            return int(self.server.sockets[0].getsockname()[1])
        return int(self.opts["port"])

    def _make_connection(self) -> Connection:
        conn = Connection(self._admit, self.tls if self.direct_tls else None, self._closed,
                          self.kind, self.instrument,
                          shaper=self.new_bucket() if self.new_bucket is not None else None,
                          proxy_protocol=self.proxy_protocol)
        return conn

    def _admit(self, conn: Connection) -> StreamHandler:
        tune_socket(conn.transport, self.opts.get("tcp_keepalive", 0),
                    self.opts.get("tcp_user_timeout", 0))
        limit = self.opts.get("max_connections")
        self.connections.add(conn)
        if limit is not None and len(self.connections) > limit:
            # A soft limit like Ranch's: the newest connection is refused at once.
            log.warning("listener_max_connections port=%s limit=%s", self.port, limit)
            return _Refuse(conn)
        return self.handler_factory(conn)

    def _closed(self, conn: Connection) -> None:
        self.connections.discard(conn)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ip = self.opts.get("ip_address") or "0.0.0.0"
        family = socket.AF_INET6 if self.opts.get("ip_version") == 6 or ":" in ip else socket.AF_INET
        self.server = await loop.create_server(
            self._make_connection,
            host=ip,
            port=self.opts["port"],
            family=family,
            backlog=self.opts.get("backlog") or 1024,
            reuse_address=True,
            reuse_port=bool(self.opts.get("reuse_port")),
        )
        log.info("listener_started kind=%s ip=%s port=%s tls=%s", self.kind, ip, self.port,
                 self.tls.mode if self.tls else "none")

    def stop_accepting(self) -> None:
        if self.server is not None:
            self.server.close()

    async def wait_closed(self) -> None:
        if self.server is not None:
            await self.server.wait_closed()


# After tcp_keepalive idle seconds, a probe every 30 s; four unanswered end the connection
# (420 s with the default 300), unless a tcp_user_timeout already elapsed since the client's
# last packet: Linux then ends it at the first unanswered probe (one lost packet).
KEEPALIVE_INTERVAL = 30
KEEPALIVE_COUNT = 4


def tune_socket(transport: asyncio.BaseTransport | None, keepalive: int,
                user_timeout: int) -> None:
    """Make the kernel notice a peer that vanished without FIN or RST (a phone in a tunnel).

    Without this an idle connection to such a peer stays open for ever, and one we write to
    takes ``tcp_retries2`` (about 15 minutes) of retransmissions to fail. ``keepalive``: idle
    seconds before the first probe; ``user_timeout``: seconds sent data (a probe included) may
    stay unacknowledged before the connection fails (Linux TCP_USER_TIMEOUT, which then also
    decides when unanswered probes end it). 0 leaves either to the kernel."""
    if transport is None or (not keepalive and not user_timeout):
        return
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        if keepalive:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            if hasattr(socket, "TCP_KEEPIDLE"):  # Linux, recent macOS
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, keepalive)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)
        if user_timeout and hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux only
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, user_timeout * 1000)
    except OSError as exc:  # a socket already reset by the peer
        log.debug("tune_socket_failed reason=%s", exc)


class _Refuse:
    """The handler of a connection over the limit: it closes at once."""

    def __init__(self, conn: Connection) -> None:
        conn.loop.call_soon(conn.abort)

    def data_received(self, data: bytes) -> None:
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        pass

    def eof_received(self) -> None:
        pass

    def write_overflow(self) -> None:
        pass
