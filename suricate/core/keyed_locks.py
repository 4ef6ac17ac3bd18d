"""One asyncio lock per key (an account, say), kept only while someone holds or waits for it:
work on one key done one at a time, in the order it asked, without a lock per key living
forever.

``async with locks.hold(key):`` takes its place in the first step of the coroutine that
enters it (an uncontended lock is taken without suspending, a contended one queues FIFO), so
tasks made in some order hold the key in that order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0  # holding or waiting


class KeyedLocks(Generic[K]):
    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[K, _Entry] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: K) -> AsyncIterator[None]:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[key]

    def __contains__(self, key: K) -> bool:
        """Whether someone holds or waits for ``key``."""
        return key in self._entries

    def __bool__(self) -> bool:
        return bool(self._entries)
