"""The messages to one offline account that the router handles together (group commit).

A burst to an account without a session (a phone offline while friends chat, a bot pushing
notifications) goes through the offline path one message after the other, in the account's
offline turn (suricate/core/router.py): with the database a few milliseconds away each
storage step of each message counted (the account's existence, its block list, the quota's
count, the INSERT: ~20 ms a message at 2 ms each way, docs/offline.md). The messages routed
while one is on that path now wait together and are handled as one batch:

* a read that is per account, made for the batch (``OfflineBatch.read``), serves every
  message of it. It is exact: the batch was closed (no message joins it) before its first
  read started, so that read saw everything committed before any of its messages was
  routed, as a read of each message's own would (none of the batch's own writes changes
  what these reads read: existence, block list, privacy lists, archive prefs);
* a write can be deferred to the end of the batch (``OfflineBatch.defer``): mod_offline
  stores the batch's messages in one INSERT.

The batch is the ContextVar of the router's task that handles it, and only that task sees
it (``current_batch``): tasks spawned meanwhile inherit the variable, not the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from contextvars import ContextVar
from typing import Any, TypeVar

from suricate.jid import JID

__all__ = ["OfflineBatch", "current_batch", "read_once"]

T = TypeVar("T")

_BATCH: ContextVar[OfflineBatch | None] = ContextVar("offline_batch", default=None)


class OfflineBatch:
    """One batch of messages to the bare JID ``user``, being handled by ``task``."""

    __slots__ = ("user", "size", "_task", "_reads", "_flushes", "state")

    def __init__(self, user: JID, size: int) -> None:
        self.user = user
        #: How many messages the batch has (1: nothing to share).
        self.size = size
        self._task = asyncio.current_task()
        self._reads: dict[Hashable, Any] = {}
        self._flushes: dict[Hashable, Callable[[], Awaitable[None]]] = {}
        #: Per module, what it keeps for the batch (mod_offline: the rows to write).
        self.state: dict[str, Any] = {}

    async def read(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        """``load()``'s answer, loaded once for the batch (a failure is not kept)."""
        reads = self._reads
        if key in reads:
            value: T = reads[key]
            return value
        value = await load()
        reads[key] = value
        return value

    def defer(self, key: Hashable, flush: Callable[[], Awaitable[None]]) -> None:
        """Run ``flush`` (once per ``key``) at the end of the batch, or before a message of
        it goes to a session that came online meanwhile (``flush``). It must answer the
        senders of what it could not write itself, and raise nothing."""
        self._flushes.setdefault(key, flush)

    @property
    def pending(self) -> bool:
        return bool(self._flushes)

    async def flush(self) -> None:
        """The deferred writes, in the order they were deferred."""
        while self._flushes:
            key = next(iter(self._flushes))
            await self._flushes.pop(key)()

    def enter(self) -> Any:
        return _BATCH.set(self)

    def leave(self, token: Any) -> None:
        _BATCH.reset(token)


def current_batch(user: JID) -> OfflineBatch | None:
    """The batch the running task handles for the bare JID ``user``; None outside one (a
    message handled alone, another account's, a task spawned meanwhile)."""
    batch = _BATCH.get()
    if batch is None or batch.user != user or batch._task is not asyncio.current_task():
        return None
    return batch


async def read_once(user: JID, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
    """``load()``'s answer: in the batch of messages to the bare JID ``user`` the running
    task handles, loaded once for the batch under ``key`` (a module's name with what it
    reads); elsewhere, read as asked."""
    batch = current_batch(user)
    return await (load() if batch is None else batch.read(key, load))
