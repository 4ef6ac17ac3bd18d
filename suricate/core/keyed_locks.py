"""One lock per key (an account, say), kept only while someone holds or waits for it: work on
one key done one at a time, in the order it asked, without a lock per key living forever.

``async with locks.hold(key):`` takes its place in the first step of the coroutine that
enters it (the head of the queue goes in without suspending, the others wait in FIFO order),
so tasks made in some order hold the key in that order.

``locks.reserve(key)`` takes the place synchronously, outside any coroutine, and gives a
``Turn`` that some task waits for later (``async with turn:``): what the caller does next (a
stanza routed right after a presence) already finds the key taken. mod_offline reserves the
account's offline turn in the presence's own processing this way (suricate/core/router.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Hashable
from types import TracebackType
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Turn:
    """One place in a key's queue, from ``reserve`` (or ``hold``) to ``release``."""

    __slots__ = ("_queue", "_key", "_held", "_wake", "_done")

    def __init__(self, held: dict[Any, deque[Turn]], key: Hashable) -> None:
        queue = held.get(key)
        if queue is None:
            queue = held[key] = deque()
        queue.append(self)
        self._queue = queue
        self._key = key
        self._held = held
        self._wake: asyncio.Future[None] | None = None
        self._done = False

    async def wait(self) -> None:
        """Until the turns reserved before this one are released (at once if none is)."""
        if self._queue[0] is self:
            return
        self._wake = asyncio.get_running_loop().create_future()
        try:
            await self._wake
        except BaseException:
            self.release()  # cancelled while waiting: the next one must not wait for us
            raise

    def release(self, *_: Any) -> None:
        """Give the key to the next turn; again (or for a turn never waited for) nothing.
        Usable as a task's done callback."""
        if self._done:
            return
        self._done = True
        queue = self._queue
        head = queue[0] is self
        queue.remove(self)
        if not queue:
            if self._held.get(self._key) is queue:
                del self._held[self._key]
        elif head:
            wake = queue[0]._wake
            if wake is not None and not wake.done():
                wake.set_result(None)

    async def __aenter__(self) -> None:
        await self.wait()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


class KeyedLocks(Generic[K]):
    __slots__ = ("held",)

    def __init__(self) -> None:
        #: The keys someone holds or waits for, each with its queue of turns (the head holds
        #: it). Read-only for others: the router asks ``key in held`` on the message path.
        self.held: dict[K, deque[Turn]] = {}

    def reserve(self, key: K) -> Turn:
        """Take a place in ``key``'s queue now; wait for it with ``async with turn:``."""
        return Turn(self.held, key)

    @contextlib.asynccontextmanager
    async def hold(self, key: K) -> AsyncIterator[None]:
        async with Turn(self.held, key):
            yield

    def __contains__(self, key: K) -> bool:
        """Whether someone holds or waits for ``key``."""
        return key in self.held

    def __bool__(self) -> bool:
        return bool(self.held)
