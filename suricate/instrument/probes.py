"""System probes, polled every ``probe_interval`` (6.4's ``system_*`` and ``sm_*_sessions``)
and handed to the handlers as ordinary events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import time
from collections.abc import Iterable
from typing import Any, Protocol

from suricate.instrument import Instrumentation
from suricate.instrument.events import (
    SM_NODE_SESSIONS,
    SM_TOTAL_SESSIONS,
    SM_UNIQUE_SESSIONS,
    SYSTEM_EVENT_LOOP_LAG,
    SYSTEM_MEMORY,
    SYSTEM_TCP_PORTS,
    SYSTEM_UP_TIME,
    EventSpec,
)

log = logging.getLogger("suricate.instrument")

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class ProbedServer(Protocol):
    started_at: float
    listeners: list[Any]
    sessions: Any


def resident_memory() -> int:
    """Resident set size in bytes (Linux /proc; the peak elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return peak_memory()


def peak_memory() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def probe_events(server: ProbedServer, lag: float
                 ) -> Iterable[tuple[EventSpec, dict[str, str], dict[str, float]]]:
    yield SYSTEM_UP_TIME, {}, {"seconds": round(time.time() - server.started_at, 3)}
    yield SYSTEM_MEMORY, {}, {"total": resident_memory(), "peak": peak_memory()}
    # 6.4: one unlabelled gauge of the node's open TCP connections (a leak shows as growth),
    # so a 6.4 panel or alert on system_tcp_ports_count reads one series.
    ports = sum(len(getattr(listener, "connections", ()))
                for listener in [*server.listeners, *getattr(server, "http_listeners", [])])
    s2s = getattr(server, "s2s", None)
    for link in getattr(s2s, "links", {}).values():
        ports += sum(1 for stream in (link.stream, link.attempt) if stream is not None)
    yield SYSTEM_TCP_PORTS, {}, {"count": ports}
    yield SYSTEM_EVENT_LOOP_LAG, {}, {"seconds": round(lag, 6)}
    total = 0
    users = set()
    for session in server.sessions:
        total += 1
        users.add(session.jid.bare)
    yield SM_NODE_SESSIONS, {}, {"count": total}
    yield SM_TOTAL_SESSIONS, {}, {"count": total}
    yield SM_UNIQUE_SESSIONS, {}, {"count": len(users)}


class Prober:
    """One task: wake every interval, measure how late it woke (event-loop lag), probe."""

    def __init__(self, server: ProbedServer, instrument: Instrumentation, interval: float) -> None:
        self.server = server
        self.instrument = instrument
        self.interval = interval
        self.lag = 0.0
        self._task: asyncio.Task[None] | None = None

    def run_once(self) -> None:
        for event, labels, measurements in probe_events(self.server, self.lag):
            self.instrument.emit(event, labels, measurements)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.run_once()
            expected = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            # A loop busy with other callbacks wakes us late; that delay is what every
            # connection waits too.
            self.lag = max(0.0, loop.time() - expected)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
