"""A stand-in for ``suricate.net.connection.Connection`` that records what a stream writes:
for driving a C2S in process (the fuzzer, the login-cost test, bench/login_cpu.py) without a
socket."""

from __future__ import annotations

import asyncio
from typing import Any


class RecordingConnection:
    """What the C2S needs from ``suricate.net.connection.Connection``, recording its output."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.peer = ("192.0.2.1", 40000)
        self.tls = None
        self.out: list[bytes] = []
        self.closed = False
        self.paused = False
        self.handler: Any = None

    def write(self, data: bytes) -> None:
        if not self.closed:
            self.out.append(data)

    def flush_now(self) -> None:
        pass  # written at once already

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def start_tls(self, config: Any) -> None:
        raise AssertionError("STARTTLS is not offered without TLS")
