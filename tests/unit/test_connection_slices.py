"""A large read reaches its handler in slices, one per loop iteration, so that the other
connections are served in between (net/connection.py, READ_SLICE)."""

from __future__ import annotations

import asyncio
from typing import Any

from suricate.net import connection as connection_module
from suricate.net.connection import Connection


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self.pauses = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def pause_reading(self) -> None:
        self.paused = True
        self.pauses += 1

    def resume_reading(self) -> None:
        self.paused = False

    def write(self, data: Any) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def is_closing(self) -> bool:
        return False

    def abort(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Recorder:
    def __init__(self, name: str, log: list[tuple[str, int]]) -> None:
        self.name = name
        self.log = log

    def data_received(self, data: bytes) -> None:
        self.log.append((self.name, len(data)))

    def connection_lost(self, exc: Exception | None) -> None:
        pass

    def eof_received(self) -> None:
        pass

    def write_overflow(self) -> None:
        pass


def _connection(name: str, log: list[tuple[str, int]]) -> tuple[Connection, _Transport]:
    conn = Connection(lambda c: _Recorder(name, log))
    transport = _Transport()
    conn.connection_made(transport)
    return conn, transport


async def test_a_large_read_is_handled_in_slices_and_others_go_in_between() -> None:
    size = connection_module.READ_SLICE
    log: list[tuple[str, int]] = []
    flooder, flooder_transport = _connection("flooder", log)
    bystander, _ = _connection("bystander", log)
    loop = asyncio.get_running_loop()
    flooder.data_received(b" " * (4 * size + 10))
    # Only the first slice so far, and the socket is not read meanwhile.
    assert log == [("flooder", size)] and flooder_transport.paused
    # The bystander's read comes during the next loop iteration, as from its socket.
    loop.call_soon(bystander.data_received, b"<iq/>")
    while flooder_transport.paused:
        await asyncio.sleep(0)
    assert log == [
        ("flooder", size),
        ("flooder", size),
        ("bystander", 5),
        ("flooder", size),
        ("flooder", size),
        ("flooder", 10),
    ]
    # A small read goes straight through, without a pause.
    pauses = flooder_transport.pauses
    flooder.data_received(b" " * size)
    assert log[-1] == ("flooder", size) and flooder_transport.pauses == pauses


async def test_the_slices_stop_when_the_connection_closes() -> None:
    log: list[tuple[str, int]] = []
    conn, _ = _connection("c", log)
    conn.data_received(b" " * (3 * connection_module.READ_SLICE))
    conn.abort()
    for _ in range(5):
        await asyncio.sleep(0)
    assert log == [("c", connection_module.READ_SLICE)]
