"""The thin asyncio driver: bytes in, bytes out, TLS, coalesced writes (DESIGN §2.2).

It knows nothing about XMPP. A ``StreamHandler`` (the c2s state machine today; s2s and
component later) receives plaintext and asks for writes, a TLS upgrade, pauses and a close.
Writes are coalesced: everything written during one loop tick leaves in one transport write.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import sys
import termios
from typing import TYPE_CHECKING, Any, Protocol

from suricate.instrument import Instrumentation
from suricate.net.output_cap import OutputCap, after_write
from suricate.net.shaper import TokenBucket
from suricate.net.tls import TLSConfig, TLSError, TLSLayer

if TYPE_CHECKING:
    from collections.abc import Callable

log = logging.getLogger("suricate.net")

# A peer that does not read its socket must not grow our memory without bound: past this much
# unsent data the handler is told (it ends the stream with a policy-violation). One element
# larger than this is allowed on top while it drains (suricate/net/output_cap.py).
MAX_WRITE_BUFFER = 4 * 1024 * 1024
# After close(), how long a peer gets to read what is still buffered (the closing stream error
# included) and to close its side (RFC 6120 §4.4) before the socket is aborted: a peer that
# never reads, or never closes, must not pin the connection.
CLOSE_TIMEOUT = 5.0
# One read can carry up to 256 KiB (asyncio's read size): thousands of stanzas, handled in one
# go while every other connection waits (an IQ flood made a bystander's ping wait 47 ms at the
# median, 144 ms at p99). A larger read goes to the handler in slices of this size, one per
# loop iteration, reading paused meanwhile: the others get their turn between two slices.
READ_SLICE = 16 * 1024
# The most one socket read takes (asyncio's own is 256 KiB): below glibc's mmap threshold
# (128 KiB), so that the buffer comes from the heap, not from an mmap per read.
READ_SIZE = 64 * 1024

# Why reading is paused; the socket reads again only when no reason is left.
_PAUSED_BY_HANDLER = 1  # the stream is busy with a step (database, ...)
_PAUSED_BY_SHAPER = 2  # the peer is over its [shaper] max_rate
_PAUSED_BY_SLICING = 4  # the rest of a large read waits for its turn


def _unread_input(transport: asyncio.BaseTransport) -> bool:
    """Whether bytes the peer sent wait unread in the socket (FIONREAD: one ioctl)."""
    sock = transport.get_extra_info("socket")
    if sock is None or not hasattr(transport, "write_eof"):
        return False
    try:
        waiting = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (OSError, ValueError):
        return False
    return int.from_bytes(waiting, sys.byteorder) > 0


class StreamHandler(Protocol):
    def data_received(self, data: bytes) -> None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...

    def eof_received(self) -> None: ...

    def write_overflow(self) -> None: ...


class TLSSessionFactory(Protocol):
    """A server ``TLSConfig``, or a client config bound to the server name it expects."""

    def new_session(self) -> TLSLayer: ...


class Connection(asyncio.Protocol):
    __slots__ = (
        "loop", "transport", "tls", "handler", "_out", "_flush_handle", "closing", "peer",
        "_handler_factory", "_on_close", "_paused", "connection_type", "instrument",
        "tls_failure", "_shaper", "_shaper_timer", "_proxy_buffer", "_close_timer",
        "_tls_out", "_cap",
    )

    def __init__(self, handler_factory: Callable[[Connection], StreamHandler],
                 tls: TLSConfig | TLSSessionFactory | None = None,
                 on_close: Callable[[Connection], None] | None = None,
                 connection_type: str = "c2s",
                 instrument: Instrumentation | None = None, *,
                 shaper: TokenBucket | None = None, proxy_protocol: bool = False) -> None:
        self.loop = asyncio.get_event_loop()
        self.transport: asyncio.Transport | None = None
        self.tls: TLSLayer | None = tls.new_session() if tls is not None else None
        self._handler_factory = handler_factory
        self.handler: StreamHandler | None = None
        self._out: list[bytes] = []
        # TLS records OpenSSL produced while reading (session tickets after the handshake),
        # held to leave with the answer to the plaintext read with them: one write, not two.
        self._tls_out: list[bytes] = []
        self._cap: OutputCap | None = None  # made when the buffer first goes over the limit
        self._flush_handle: asyncio.Handle | None = None
        self.closing = False
        self.peer: Any = None
        self._on_close = on_close
        self._paused = 0  # a set of _PAUSED_BY_* bits
        self._shaper = shaper
        self._shaper_timer: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        # Until the PROXY header is complete, what arrived of it (None: no header expected).
        self._proxy_buffer: bytes | None = b"" if proxy_protocol else None
        self.connection_type = connection_type
        # Why TLS failed, for a handler that must tell its users (s2s bounces).
        self.tls_failure: str | None = None
        self.instrument = instrument if instrument is not None else Instrumentation()

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if getattr(transport, "max_size", 0) > READ_SIZE:
            # asyncio reads up to 256 KiB at a time into a new bytes object: above glibc's
            # mmap threshold (128 KiB), so every read was an mmap, an mremap to the size
            # read and a munmap, three system calls and fresh zeroed pages per read (about
            # ten reads per login). The handler takes READ_SLICE at a time anyway.
            transport.max_size = READ_SIZE  # type: ignore[attr-defined]
        self.peer = transport.get_extra_info("peername")
        self.handler = self._handler_factory(self)
        if self.tls is not None:
            self._tls_start()  # direct TLS as a client: the ClientHello goes first

    def data_received(self, data: bytes) -> None:
        if self.closing or self.handler is None:
            return
        if self._shaper is not None:
            self._shape(len(data))
        if self._proxy_buffer is not None:
            data = self._proxy_header(data)
            if not data:
                return
        self.instrument.data_in(self.connection_type, False, len(data))
        tls = self.tls
        if tls is not None:
            try:
                data, out = tls.receive(data)
            except TLSError as exc:
                log.info("tls_failed connection_type=%s peer=%s reason=%s",
                         self.connection_type, self.peer, exc)
                self.tls_failure = str(exc) or "handshake failed"
                self.abort()
                return
            if out and self.transport is not None:
                if data or self._tls_out:
                    # The handler is about to answer what came with these records; they go
                    # first, in the same write (ciphertext order is OpenSSL's order).
                    self._tls_out.append(out)
                    if self._flush_handle is None:
                        self._flush_handle = self.loop.call_soon(self.flush)
                else:
                    self.transport.write(out)
            if tls.closed and not data:
                self.handler.eof_received()
                return
            if not data:
                return
            self.instrument.data_in(self.connection_type, True, len(data))
        if len(data) > READ_SLICE:
            self._next_slice(data, 0)
            return
        self.handler.data_received(data)

    def _next_slice(self, data: bytes, offset: int) -> None:
        """Hand ``data[offset:]`` to the handler one ``READ_SLICE`` per loop iteration."""
        if self.closing or self.handler is None:
            return
        end = offset + READ_SLICE
        self.handler.data_received(data[offset:end])
        if end >= len(data):
            self._resume(_PAUSED_BY_SLICING)
        elif not self.closing and self.handler is not None:
            self._pause(_PAUSED_BY_SLICING)
            self.loop.call_soon(self._next_slice, data, end)

    def eof_received(self) -> bool:
        if self.closing:
            # The peer's end of our closing handshake (close()): asyncio closes the
            # transport once what we wrote has left.
            return False
        # Half-closed by the peer: the handler decides (usually: finish and close).
        if self.handler is not None:
            self.handler.eof_received()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for timer in (self._shaper_timer, self._close_timer):
            if timer is not None:
                timer.cancel()
        self._shaper_timer = self._close_timer = None
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

    def write_deferred(self, data: bytes) -> None:
        """``write`` without scheduling the flush: the caller calls ``flush_pending`` before
        its callback returns. A batch of writes to many connections (the items of one frame
        from another node, cluster/redis_sm.py) leaves in the loop turn that made them, one
        write per connection, without a callback each and a loop turn more to run them."""
        if not self.closing:
            self._out.append(data)

    def flush_pending(self) -> None:
        """Write what is pending now, whether or not a flush is scheduled (``write_deferred``
        schedules none)."""
        handle = self._flush_handle
        if handle is not None:
            handle.cancel()
        self.flush()

    def flush_now(self) -> None:
        """Write what is pending now rather than at the end of the loop tick: the handler
        has answered and has more work before the tick ends (a bound session's modules load
        their state), which the peer need not wait for."""
        handle = self._flush_handle
        if handle is not None:
            handle.cancel()
            self.flush()

    def flush(self) -> None:
        self._flush_handle = None
        if self.transport is None:
            return
        data = self._take_output()
        if not data:
            return
        self.transport.write(data)
        waiting = self.transport.get_write_buffer_size()
        if waiting > MAX_WRITE_BUFFER or self._cap is not None:
            self._cap, over = after_write(self._cap, len(data), waiting, MAX_WRITE_BUFFER)
            if over and self.handler:
                self.handler.write_overflow()

    def _take_output(self) -> bytes | None:
        """What is to be written now: held TLS records, then the pending writes (encrypted on
        a TLS connection). None when the connection was aborted meanwhile."""
        held = b"".join(self._tls_out) if self._tls_out else b""
        self._tls_out.clear()
        if not self._out:
            return held
        data = b"".join(self._out) if len(self._out) > 1 else self._out[0]
        self._out.clear()
        if self.tls is not None:
            self.instrument.data_out(self.connection_type, True, len(data))
            try:
                data = self.tls.send(data)
            except TLSError:
                self.abort()
                return None
        self.instrument.data_out(self.connection_type, False, len(data))
        return held + data if held else data

    def start_tls(self, config: TLSConfig | TLSSessionFactory) -> None:
        """STARTTLS (RFC 6120 §5.4.3.3): what was written so far leaves in clear, the rest
        (and every byte read from now on) goes through TLS."""
        self.flush()
        self.tls = config.new_session()
        self._tls_start()

    def _tls_start(self) -> None:
        assert self.tls is not None
        try:
            hello = self.tls.start()
        except TLSError as exc:
            self.tls_failure = str(exc) or "handshake failed"
            self.abort()
            return
        if hello and self.transport is not None:
            self.transport.write(hello)

    def pause_reading(self) -> None:
        """The handler is busy: stop reading until ``resume_reading``."""
        self._pause(_PAUSED_BY_HANDLER)

    def resume_reading(self) -> None:
        self._resume(_PAUSED_BY_HANDLER)

    def _pause(self, reason: int) -> None:
        if self.transport is None or self.closing:
            return
        if not self._paused:
            self.transport.pause_reading()
        self._paused |= reason

    def _resume(self, reason: int) -> None:
        if not self._paused & reason:
            return
        self._paused &= ~reason
        if not self._paused and self.transport is not None and not self.closing:
            self.transport.resume_reading()

    # -- [shaper] max_rate and the PROXY protocol -----------------------------------------------
    def _shape(self, size: int) -> None:
        assert self._shaper is not None
        delay = self._shaper.consume(size)
        if delay > 0.0 and self._shaper_timer is None:
            # Over the rate: what arrived is processed, the socket is not read again until the
            # bucket is out of debt; meanwhile TCP's window pushes back on the sender.
            self._pause(_PAUSED_BY_SHAPER)
            self._shaper_timer = self.loop.call_later(delay, self._shaper_done)

    def _shaper_done(self) -> None:
        self._shaper_timer = None
        self._resume(_PAUSED_BY_SHAPER)

    def _proxy_header(self, data: bytes) -> bytes:
        """Collect and parse the PROXY header; return the bytes after it (b"" until then).
        The real client address replaces ``peer`` for everything that follows (logs, per-IP
        limits such as mod_register's)."""
        assert self._proxy_buffer is not None
        # Only listeners with proxy_protocol = true get here: the others never load it.
        from suricate.net import proxy_protocol

        buffered = self._proxy_buffer + data
        try:
            parsed = proxy_protocol.parse(buffered)
        except proxy_protocol.ProxyProtocolError as exc:
            log.info("proxy_protocol_refused peer=%s reason=%s", self.peer, exc)
            self._proxy_buffer = None
            self.abort()
            return b""
        if parsed is None:
            self._proxy_buffer = buffered  # bounded: parse() refuses an overlong header
            return b""
        header, rest = parsed
        self._proxy_buffer = None
        if header.source is not None:
            self.peer = header.source
        return rest

    def close(self) -> None:
        """Flush what is pending, send close_notify, close the socket."""
        if self.closing:
            return
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self.transport is None:
            self.closing = True
            return
        data = self._take_output()
        if data is None:  # aborted
            return
        self.closing = True
        if self.tls is not None and self.tls.established:
            # the last records and close_notify in one write
            data += self.tls.shutdown()
        if data:
            self.transport.write(data)
        if self.transport.can_write_eof() and (
                self.connection_type == "c2s" or _unread_input(self.transport)):
            # RFC 6120 §4.4: our closing tag (or stream error) is followed by a FIN, and the
            # socket stays open for reading (what arrives is dropped) until the peer closes
            # its side. Closing at once would make the kernel answer whatever the peer still
            # sends with a reset, and a reset makes the peer's kernel throw away what it had
            # received and not yet read: our last stanzas and the stream error with them (a
            # client that kept writing lost its <conflict/> 10 times in 10 on loopback; on a
            # slow link, anything it sent within one round trip of our close does that).
            # Always for clients; for another peer only when it is still sending (bytes wait
            # unread: a stanza over max_stanza_size ...): a server peer's stanzas bounce when
            # its link is lost, which must not wait for CLOSE_TIMEOUT.
            try:
                self.transport.write_eof()
            except OSError:  # the peer reset the connection meanwhile (ENOTCONN)
                self.transport.abort()
                return
            if self._paused:
                self._paused = 0
                self.transport.resume_reading()
        else:
            self.transport.close()
            if not self.transport.get_write_buffer_size():
                return
        # A peer that neither reads nor closes, or a buffer that does not drain, is given
        # CLOSE_TIMEOUT; asyncio alone would wait without a deadline.
        self._close_timer = self.loop.call_later(CLOSE_TIMEOUT, self.transport.abort)

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()
