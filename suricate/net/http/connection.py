"""One HTTP/1.1 connection: parse requests, hand each to the router, write responses in
order (keep-alive; pipelined requests wait their turn). Bodies need a Content-Length:
the APIs served here are small JSON documents, so chunked uploads are refused (411)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from suricate.net.http.message import Request, Response

log = logging.getLogger("suricate.http")

MAX_HEAD = 16 * 1024
MAX_BODY = 1024 * 1024
IDLE_TIMEOUT = 60.0

Dispatch = Callable[[Request], Awaitable[Response]]


class HttpConnection(asyncio.Protocol):
    def __init__(self, dispatch: Dispatch, on_close: Callable[[HttpConnection], None],
                 spawn: Callable[[Any], Any]) -> None:
        self.dispatch = dispatch
        self.on_close = on_close
        self.spawn = spawn
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self.buffer = b""
        self.busy = False
        self.closed = False
        self._idle: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._idle is not None:
            self._idle.cancel()
        self.on_close(self)

    # -- requests -----------------------------------------------------------------------------
    def _arm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
        loop = asyncio.get_running_loop()
        self._idle = loop.call_later(IDLE_TIMEOUT, self.close)

    def _next(self) -> None:
        try:
            request = self._parse()
        except _BadRequest as bad:
            self._write(Response.text(bad.status, bad.message + "\n"), keep_alive=False)
            return
        if request is None:
            return
        self.busy = True
        self.spawn(self._serve(request))

    async def _serve(self, request: Request) -> None:
        try:
            response = await self.dispatch(request)
        except Exception:
            log.exception("http_handler_failed path=%s", request.path)
            response = Response.text(500, "internal server error\n")
        if self.closed:
            return
        keep_alive = request.keep_alive and response.upgrade is None
        self._write(response, keep_alive)
        if response.upgrade is not None and self.transport is not None:
            protocol = response.upgrade(self.transport)
            self.transport.set_protocol(protocol)
            protocol.connection_made(self.transport)
            return
        self.busy = False
        if keep_alive and self.buffer:
            self._next()

    def _write(self, response: Response, keep_alive: bool) -> None:
        if self.transport is None or self.closed:
            return
        self.transport.write(response.head(keep_alive) + response.body)
        if keep_alive:
            self._arm_idle()
        else:
            self.close()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()

    def _parse(self) -> Request | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEAD:
                raise _BadRequest(431, "request head too large")
            return None
        if end > MAX_HEAD:
            raise _BadRequest(431, "request head too large")
        head = self.buffer[:end].decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise _BadRequest(400, "malformed request line")
        method, target, version = parts
        if version not in ("HTTP/1.1", "HTTP/1.0"):
            raise _BadRequest(505, "only HTTP/1.1 and 1.0")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _BadRequest(400, "malformed header")
            key = name.lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise _BadRequest(411, "send a Content-Length")
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _BadRequest(400, "bad Content-Length") from None
        if length < 0:
            raise _BadRequest(400, "bad Content-Length")
        if length > MAX_BODY:
            raise _BadRequest(413, "body too large")
        start = end + 4
        if len(self.buffer) - start < length:
            return None
        body = self.buffer[start:start + length]
        self.buffer = self.buffer[start + length:]
        path, _, query = target.partition("?")
        return Request(method, path, query, version, headers, body, self.peer)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
