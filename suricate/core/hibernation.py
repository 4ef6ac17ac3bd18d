"""Hibernation of idle client connections (MongooseIM's ``hibernate_after``, DESIGN §3).

An idle connection's XML parser is most of its memory. A periodic sweep per c2s listener asks
each connection to drop its parser when no byte arrived since the previous sweep and the
parser stands at a stanza boundary; the connection makes a new one, already inside the
stream, when bytes come again. One timer per listener, not one per connection.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping
    from typing import Any, Protocol

    class Swept(Protocol):
        """What a sweep reads of a c2s listener (or of a WebSocket endpoint's sessions)."""

        @property
        def opts(self) -> Mapping[str, Any]: ...
        @property
        def port(self) -> int | None: ...
        @property
        def connections(self) -> Collection[Any]: ...

log = logging.getLogger("suricate.hibernation")

MIN_SWEEP_SECONDS = 2.0  # hibernate_after = 0 ("whenever possible") still waits one sweep


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim: expat frees its buffers to malloc's free lists, which keep them
    from the OS; trimming after a sweep hands the pages back, so RSS follows.

    Looked up at the first trim, not at import: ctypes and ``find_library`` cost start-up
    time (several ms) for a sweep that runs seconds later."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


def _trim() -> None:
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


class HibernationSweep:
    __slots__ = ("listener", "period", "_handle", "_last_count")

    def __init__(self, listener: Swept) -> None:
        self.listener = listener
        after_ms = listener.opts.get("hibernate_after") or 0
        self.period = max(MIN_SWEEP_SECONDS, after_ms / 1000)
        self._handle: asyncio.TimerHandle | None = None
        self._last_count = 0

    def start(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(self.period, self._sweep)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _sweep(self) -> None:
        count = 0
        for conn in list(self.listener.connections):
            hibernate = getattr(conn.handler, "hibernate", None)
            if hibernate is not None and hibernate():
                count += 1
        if count:
            log.debug("c2s_hibernated port=%s count=%d", self.listener.port, count)
        connections = len(self.listener.connections)
        # After parsers were dropped, or after many connections went away (a wave of
        # logouts), give the freed pages back so RSS follows the load down.
        if count or connections + 100 < self._last_count:
            _trim()
        self._last_count = connections
        self.start()
