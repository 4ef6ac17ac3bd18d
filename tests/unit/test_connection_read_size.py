"""A socket read takes at most READ_SIZE (net/connection.py): asyncio's own 256 KiB is above
glibc's mmap threshold, which made every read of a login an mmap, an mremap and a munmap."""

from __future__ import annotations

import asyncio
import socket

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
