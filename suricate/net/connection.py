"""The thin asyncio driver: bytes in, bytes out, TLS, coalesced writes (DESIGN §2.2).

It knows nothing about XMPP. A ``StreamHandler`` (the c2s state machine today; s2s and
component later) receives plaintext and asks for writes, a TLS upgrade, pauses and a close.
Writes are coalesced: everything written during one loop tick leaves in one transport write.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol

from suricate.instrument import Instrumentation
from suricate.net.tls import TLSConfig, TLSError, TLSLayer

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger("suricate.net")

# A peer that does not read its socket must not grow our memory without bound: past this much
# unsent data the handler is told (it ends the stream with a policy-violation).
MAX_WRITE_BUFFER = 4 * 1024 * 1024


class StreamHandler(Protocol):
    def data_received(self, data: bytes) -> None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...

    def eof_received(self) -> None: ...

    def write_overflow(self) -> None: ...


class Connection(asyncio.Protocol):
    __slots__ = (
        "loop", "transport", "tls", "handler", "_out", "_flush_handle", "closing", "peer",
        "_handler_factory", "_on_close", "_paused", "connection_type", "instrument",
    )

    def __init__(self, handler_factory: Callable[[Connection], StreamHandler],
                 tls: TLSConfig | None = None,
                 on_close: Callable[[Connection], None] | None = None,
                 connection_type: str = "c2s",
                 instrument: Instrumentation | None = None) -> None:
        self.loop = asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self.tls: TLSLayer | None = tls.new_session() if tls is not None else None
        self._handler_factory = handler_factory
        self.handler: StreamHandler | None = None
        self._out: list[bytes] = []
        self._flush_handle: asyncio.Handle | None = None
        self.closing = False
        self.peer: Any = None
        self._on_close = on_close
        self._paused = False
        self.connection_type = connection_type
        self.instrument = instrument if instrument is not None else Instrumentation()

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        self.handler = self._handler_factory(self)

    def data_received(self, data: bytes) -> None:
        if self.closing or self.handler is None:
            return
        self.instrument.data_in(self.connection_type, False, len(data))
        tls = self.tls
        if tls is not None:
            try:
                data, out = tls.receive(data)
            except TLSError as exc:
                log.info("tls_failed peer=%s reason=%s", self.peer, exc)
                self.abort()
                return
            if out and self.transport is not None:
                self.transport.write(out)
            if tls.closed and not data:
                self.handler.eof_received()
                return
            if not data:
                return
            self.instrument.data_in(self.connection_type, True, len(data))
        self.handler.data_received(data)

    def eof_received(self) -> bool:
        # Half-closed by the peer: the handler decides (usually: finish and close).
        if self.handler is not None:
            self.handler.eof_received()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        handler, self.handler = self.handler, None
        if handler is not None:
            handler.connection_lost(exc)
        if self._on_close is not None:
            self._on_close(self)

    # -- what handlers use --------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self.closing:
            return
        self._out.append(data)
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_handle = None
        if not self._out or self.transport is None:
            return
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        if self.tls is not None:
            self.instrument.data_out(self.connection_type, True, len(data))
            try:
                data = self.tls.send(data)
            except TLSError:
                self.abort()
                return
        self.instrument.data_out(self.connection_type, False, len(data))
        self.transport.write(data)
        if self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER and self.handler:
            self.handler.write_overflow()

    def start_tls(self, config: TLSConfig) -> None:
        """STARTTLS (RFC 6120 §5.4.3.3): what was written so far leaves in clear, the rest
        (and every byte read from now on) goes through TLS."""
        self.flush()
        self.tls = config.new_session()

    def pause_reading(self) -> None:
        if not self._paused and self.transport is not None and not self.closing:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and self.transport is not None and not self.closing:
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        """Flush what is pending, send close_notify, close the socket."""
        if self.closing:
            return
        self.flush()
        self.closing = True
        if self.transport is None:
            return
        if self.tls is not None and self.tls.established:
            out = self.tls.shutdown()
            if out:
                self.transport.write(out)
        self.transport.close()

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()
