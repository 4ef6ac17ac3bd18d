"""``[[listen.http]]``: one HTTP(S) server on aiohttp's low-level server, its requests routed to
handlers by host and path.

A handler answers its ``path`` and everything under it (``/api/graphql`` also serves
``/api/graphql/sse``); ``host = "_"`` matches any Host header. The most specific path wins.

The listener knows no handler itself: whoever makes it (the server) passes one factory per
handler kind it serves, so this package stays below the server core and the GraphQL API
(DESIGN §1).

Start-up time: aiohttp costs a few hundred milliseconds to import (it builds TLS contexts for
its client at import), so the socket is bound at start-up with our own protocol factory and
aiohttp is imported in a thread when the first connection arrives; connections accepted
meanwhile wait with reading paused and are handed to aiohttp's protocol once it is loaded.
A server whose HTTP listener is never used never imports aiohttp.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from suricate.net.http.message import HttpHandler

#: Makes the handler of one ``[[listen.http.handlers.<kind>]]`` entry from its options.
HandlerFactory = Callable[[Mapping[str, Any]], HttpHandler]

log = logging.getLogger("suricate.http")

#: How long stop() lets requests in flight (and WebSocket/BOSH sessions) finish.
SHUTDOWN_TIMEOUT = 2.0


@dataclass
class Route:
    kind: str
    host: str
    path: str
    handler: HttpHandler

    def matches(self, host: str, path: str) -> bool:
        if self.host != "_" and self.host != host:
            return False
        prefix = self.path.rstrip("/")
        return path == self.path or path == prefix or path.startswith(prefix + "/")


class HttpListener:
    kind = "http"

    def __init__(self, opts: Mapping[str, Any], factories: Mapping[str, HandlerFactory],
                 spawn: Callable[[Any], Any], is_local_domain: Callable[[str], bool],
                 server_name: str | None = None) -> None:
        self.opts = opts
        #: general.http_server_name: the Server header of every response (None: aiohttp's).
        self.server_name = server_name
        self.spawn = spawn
        self.routes: list[Route] = []
        for kind, entries in opts.get("handlers", {}).items():
            factory = factories.get(kind)
            for entry in entries:
                if factory is None:
                    # a kind whose maker was not handed to this server (see Server)
                    log.warning("http_handler_not_available kind=%s path=%s: accepted by the "
                                "configuration, not served by this server", kind,
                                entry["path"])
                    continue
                self.routes.append(Route(kind, entry["host"], entry["path"], factory(entry)))
        # Longest path first: /api/graphql/user before /api/graphql.
        self.routes.sort(key=lambda r: -len(r.path))
        for route in self.routes:
            if route.kind in ("mod_conversejs", "mod_websockets", "mod_bosh"):
                # the web client names its endpoints; WebSocket and BOSH sessions hibernate
                # after the listener's hibernate_after
                route.handler.listener = self  # type: ignore[attr-defined]
        from suricate.net.http.hostmeta import HostMeta

        # XEP-0156 §3: /.well-known/host-meta(.json) lists the WebSocket and BOSH endpoints.
        self.host_meta = HostMeta(is_local_domain, self) if any(
            r.kind in ("mod_websockets", "mod_bosh") for r in self.routes) else None
        self.compress = bool(opts.get("protocol", {}).get("compress"))
        limit = opts.get("transport", {}).get("max_connections")
        self.max_connections: int | None = limit if isinstance(limit, int) else None
        self._server: asyncio.Server | None = None
        self._tls: Any = None  # ReloadableStdlibContext, when secure
        # aiohttp's web.Server (a protocol factory), once aiohttp is loaded.
        self._web: Any = None
        self._loading: asyncio.Task[None] | None = None
        self._waiting: set[_Waiting] = set()

    @property
    def port(self) -> int:
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return int(self.opts["port"])

    @property
    def connections(self) -> list[Any]:
        """Open connections (probes count them as ``system_tcp_ports``)."""
        served = list(self._web.connections) if self._web is not None else []
        return served + list(self._waiting)

    @property
    def secure(self) -> bool:
        tls = self.opts.get("tls")
        return bool(tls and tls.get("certfile"))

    def find(self, host: str, path: str) -> Route | None:
        for route in self.routes:
            if route.matches(host, path):
                return route
        return None

    # -- connections ----------------------------------------------------------------------------
    def _protocol(self) -> asyncio.BaseProtocol:
        if self.max_connections is not None \
                and len(self._waiting) + len(self._web.connections if self._web else ()) \
                >= self.max_connections:
            # transport.max_connections: like Ranch, the connection over the limit is closed.
            log.warning("listener_max_connections kind=http port=%s limit=%s", self.port,
                        self.max_connections)
            return _Refused()
        if self._web is not None:
            return self._web()  # type: ignore[no-any-return]
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load())
        return _Waiting(self)

    async def _load(self) -> None:
        try:
            web = await asyncio.to_thread(importlib.import_module, "suricate.net.http.web")
            self._web = web.make_server(self)
        except Exception:
            log.exception("http_server_load_failed port=%s", self.port)
            for waiting in list(self._waiting):
                waiting.abort()
            self._loading = None
            return
        for waiting in list(self._waiting):
            waiting.hand_over(self._web())

    # -- life -----------------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ip = self.opts.get("ip_address") or "0.0.0.0"
        family = socket.AF_INET6 if self.opts.get("ip_version") == 6 or ":" in ip \
            else socket.AF_INET
        ssl_context = None
        if self.secure:
            from suricate.net.tls import ReloadableStdlibContext

            self._tls = ReloadableStdlibContext(self.opts["tls"])
            ssl_context = self._tls.first
        self._server = await loop.create_server(
            self._protocol, host=ip, port=self.opts["port"], family=family,
            ssl=ssl_context, reuse_address=True, backlog=self.opts.get("backlog") or 1024,
            reuse_port=bool(self.opts.get("reuse_port")))  # set for several workers
        log.info("listener_started kind=http ip=%s port=%s tls=%s handlers=%s", ip, self.port,
                 "https" if ssl_context else "none",
                 ",".join(f"{r.kind}:{r.path}" for r in self.routes))

    def reload_tls(self) -> bool:
        """Read the certificate files again (``Server.reload_certificates``); False when the
        listener has no TLS. Raises TLSError, the old certificate staying in use."""
        if self._tls is None:
            return False
        self._tls.reload()
        return True

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for waiting in list(self._waiting):
            waiting.abort()
        for route in self.routes:
            shutdown = getattr(route.handler, "shutdown", None)
            if shutdown is not None:
                shutdown()  # WebSocket/BOSH sessions end with system-shutdown
        if self._web is not None:
            await self._web.shutdown(SHUTDOWN_TIMEOUT)
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()


class _Waiting(asyncio.Protocol):
    """A connection accepted before aiohttp was loaded: it reads nothing until then."""

    def __init__(self, listener: HttpListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.listener._web is not None:
            # HTTPS: the protocol is made at accept, connection_made comes after the TLS
            # handshake, by which time aiohttp may have been loaded.
            self.hand_over(self.listener._web())
            return
        transport.pause_reading()
        self.listener._waiting.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.listener._waiting.discard(self)
        self.transport = None

    def hand_over(self, protocol: asyncio.Protocol) -> None:
        paused = self in self.listener._waiting
        self.listener._waiting.discard(self)
        transport, self.transport = self.transport, None
        if transport is None or transport.is_closing():
            return
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if paused:
            transport.resume_reading()

    def abort(self) -> None:
        self.listener._waiting.discard(self)
        if self.transport is not None:
            self.transport.abort()


class _Refused(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()
