"""A socket read takes at most READ_SIZE (net/connection.py): asyncio's own 256 KiB is above
glibc's mmap threshold, which made every read of a login an mmap, an mremap and a munmap."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from suricate.net.connection import READ_SIZE, Connection


class _Handler:
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        self.received.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        pass

    def eof_received(self) -> None:
        pass

    def write_overflow(self) -> None:
        pass


async def test_reads_stay_below_the_mmap_threshold() -> None:
    loop = asyncio.get_running_loop()
    handler = _Handler()
    a, b = socket.socketpair()
    with a, b:
        transport, conn = await loop.create_connection(
            lambda: Connection(lambda c: handler), sock=a)
        assert READ_SIZE < 128 * 1024
        assert getattr(transport, "max_size", READ_SIZE) <= READ_SIZE
        b.setblocking(False)
        await loop.sock_sendall(b, b"<presence/>" * 20000)  # 220 kB, more than one read
        for _ in range(200):
            if sum(map(len, handler.received)) == 220000:
                break
            await asyncio.sleep(0.01)
        assert sum(map(len, handler.received)) == 220000
        assert max(map(len, handler.received)) <= READ_SIZE
        transport.close()


class _Refusing(_Handler):
    """Ends the connection at the first bytes (as a stream error over max_stanza_size)."""

    def __init__(self) -> None:
        super().__init__()
        self.conn: Connection | None = None
        self.lost = asyncio.Event()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        assert self.conn is not None
        if not self.conn.closing:
            self.conn.write(b"<stream:error/></stream:stream>")
            self.conn.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()


async def test_a_close_while_the_peer_still_sends_does_not_reset_what_was_written() -> None:
    """Reads take READ_SIZE at a time, so the rest of a big stanza is often still unread
    when the stream ends for it: a socket closed with unread input answers with a reset,
    and the peer lost the stream error. The connection half-closes and drops the rest."""
    loop = asyncio.get_running_loop()
    handler = _Refusing()

    def make(conn: Connection) -> _Refusing:
        handler.conn = conn
        return handler

    a, b = socket.socketpair()
    with a, b:
        await loop.create_connection(lambda: Connection(make), sock=a)
        b.setblocking(False)
        await loop.sock_sendall(b, b"<message><body>" + b"x" * 1_000_000)
        received = b""
        while chunk := await asyncio.wait_for(loop.sock_recv(b, 65536), 5):
            received += chunk
        assert received == b"<stream:error/></stream:stream>"
        b.close()
        await asyncio.wait_for(handler.lost.wait(), 5)


def test_a_half_close_on_a_connection_the_peer_reset_aborts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """shutdown() fails with ENOTCONN when the peer is gone already (a hung s2s peer
    paused, tests/s2s/test_stream_management.py): the socket is aborted, nothing raised."""
    from suricate.net import connection as connection_module

    class Gone(asyncio.Transport):
        aborted = False

        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return None

        def write(self, data: Any) -> None:
            pass

        def can_write_eof(self) -> bool:
            return True

        def write_eof(self) -> None:
            raise OSError(107, "Transport endpoint is not connected")

        def abort(self) -> None:
            self.aborted = True

    monkeypatch.setattr(connection_module, "_unread_input", lambda transport: True)
    loop = asyncio.new_event_loop()
    try:
        conn = loop.run_until_complete(_made(Gone()))
        conn.close()
        assert conn.closing and conn.transport.aborted  # type: ignore[union-attr]
    finally:
        loop.close()


async def _made(transport: asyncio.Transport) -> Connection:
    conn = Connection(lambda c: _Handler())
    conn.connection_made(transport)
    return conn
