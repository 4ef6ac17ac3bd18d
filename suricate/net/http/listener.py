"""``[[listen.http]]``: one HTTP(S) server, its requests routed to handlers by host and path.

A handler answers its ``path`` and everything under it (``/api/graphql`` also serves
``/api/graphql/sse``); ``host = "_"`` matches any Host header. The most specific path wins.

The listener knows no handler itself: whoever makes it (the server) passes one factory per
handler kind it serves, so this package stays below the server core and the GraphQL API
(DESIGN §1).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from suricate.net.http.connection import HttpConnection
from suricate.net.http.message import HttpHandler, Request, Response

#: Makes the handler of one ``[[listen.http.handlers.<kind>]]`` entry from its options.
HandlerFactory = Callable[[Mapping[str, Any]], HttpHandler]

log = logging.getLogger("suricate.http")


@dataclass
class Route:
    kind: str
    host: str
    path: str
    handler: HttpHandler

    def matches(self, request: Request) -> bool:
        if self.host != "_" and self.host != request.host:
            return False
        path = self.path.rstrip("/")
        return request.path == self.path or request.path == path \
            or request.path.startswith(path + "/")


class HttpListener:
    kind = "http"

    def __init__(self, opts: Mapping[str, Any], factories: Mapping[str, HandlerFactory],
                 spawn: Callable[[Any], Any]) -> None:
        self.opts = opts
        self.spawn = spawn
        self.routes: list[Route] = []
        for kind, entries in opts.get("handlers", {}).items():
            factory = factories.get(kind)
            for entry in entries:
                if factory is None:
                    # mod_websockets, mod_bosh: accepted by the configuration, not served yet
                    log.warning("http_handler_not_available kind=%s path=%s: accepted by the "
                                "configuration, not served by this server", kind,
                                entry["path"])
                    continue
                self.routes.append(Route(kind, entry["host"], entry["path"], factory(entry)))
        # Longest path first: /api/graphql/user before /api/graphql.
        self.routes.sort(key=lambda r: -len(r.path))
        self.connections: set[HttpConnection] = set()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return int(self.opts["port"])

    def _ssl_context(self) -> ssl.SSLContext | None:
        tls = self.opts.get("tls")
        if not tls or not tls.get("certfile"):
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(tls["certfile"], tls.get("keyfile") or tls["certfile"],
                            password=tls.get("password"))
        if tls.get("ciphers"):
            ctx.set_ciphers(tls["ciphers"])
        return ctx

    async def dispatch(self, request: Request) -> Response:
        for route in self.routes:
            if route.matches(request):
                return await route.handler.handle(request)
        return Response.text(404, "not found\n")

    def _make(self) -> HttpConnection:
        conn = HttpConnection(self.dispatch, self.connections.discard, self.spawn)
        self.connections.add(conn)
        max_conns = self.opts.get("transport", {}).get("max_connections")
        if max_conns is not None and len(self.connections) > max_conns:
            asyncio.get_running_loop().call_soon(conn.close)
        return conn

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        ip = self.opts.get("ip_address") or "0.0.0.0"
        family = socket.AF_INET6 if self.opts.get("ip_version") == 6 or ":" in ip \
            else socket.AF_INET
        self._server = await loop.create_server(
            self._make, host=ip, port=self.opts["port"], family=family,
            ssl=self._ssl_context(), reuse_address=True, backlog=1024,
            reuse_port=bool(self.opts.get("reuse_port")))  # set for several workers
        log.info("listener_started kind=http ip=%s port=%s handlers=%s", ip, self.port,
                 ",".join(f"{r.kind}:{r.path}" for r in self.routes))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close()
