"""Reads asked for in one event-loop turn, answered together: one statement per group.

A login probes every contact (RFC 6121 §4.2.2) and each probe of a local contact without a
session reads that contact's stored state (its roster item about the user, its blocklist):
200 contacts, 200 reads, all asked for in the same turn by the probe tasks. ``TurnBatch``
coalesces them into ``... WHERE <group> AND username IN (...)`` statements (mod_roster's
``get_roster_item_batched``, mod_blocking's ``get_blocklist_batched``).

Nothing is kept after a batch is answered: the reads run one turn later than they were asked
for, never earlier, so they see the state at the time of the call or a newer one. A store
calls ``answer_pending`` before it writes what these reads read, so that the reads asked for
before the write see the state before it, as reads sent at once would have. A failing query
reaches every caller of its batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["BATCH_CHUNK", "TurnBatch", "padded"]

G = TypeVar("G", bound=Hashable)
V = TypeVar("V")

#: Members (usernames) per batched statement: with a few other parameters well under
#: SQLite's oldest limit of 999 bound parameters (PostgreSQL and MySQL allow 32767 and 65535).
BATCH_CHUNK = 512


def padded(count: int) -> int:
    """The IN list's length for ``count`` members: the next power of two, the last one
    repeated to fill it, so the backends see a handful of distinct statements (prepared
    statement caches, the MySQL spelling memo) rather than one per batch size."""
    size = 2
    while size < count:
        size *= 2
    return min(size, BATCH_CHUNK)


class TurnBatch(Generic[G, V]):
    """The reads of one kind asked for in this turn, keyed by (group, member): ``read_many``
    answers a group's members (at most ``BATCH_CHUNK``) in one statement, a member it does
    not name gets ``missing``; a member alone in its group is read with ``read_one`` (the
    plain statement, as before batching). ``inline``: the database answers on the loop's
    thread (SQLite): the groups are read one after the other, which costs nothing more."""

    __slots__ = ("_read_one", "_read_many", "_missing", "_inline", "_pending", "_loop",
                 "_flushes")

    def __init__(self, read_one: Callable[[G, str], Awaitable[V]],
                 read_many: Callable[[G, list[str]], Awaitable[dict[str, V]]],
                 missing: V, inline: bool) -> None:
        self._read_one = read_one
        self._read_many = read_many
        self._missing = missing
        self._inline = inline
        # The reads asked for in this turn, not yet sent (None: no batch).
        self._pending: dict[tuple[G, str], list[asyncio.Future[V]]] | None = None
        # The loop of the batch in ``_pending``: set with it, so never read before it is set.
        self._loop: asyncio.AbstractEventLoop
        self._flushes: set[asyncio.Task[None]] = set()

    async def read(self, group: G, member: str) -> V:
        """``member``'s value in ``group``, read with the other reads of this turn."""
        pending = self._pending
        if pending is None:
            # Asked once per batch: on Python 3.11 each call of get_running_loop is a getpid
            # system call, 200 of them for the probes of a 200-contact login.
            self._loop = loop = asyncio.get_running_loop()
            pending = self._pending = {}
            # Its first step runs in the next turn, after every read asked for in this one.
            task = loop.create_task(self._answer())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        waiter: asyncio.Future[V] = self._loop.create_future()
        pending.setdefault((group, member), []).append(waiter)
        return await waiter

    async def answer_pending(self) -> None:
        """Before a write: the reads asked for earlier are answered from the state before it."""
        if self._pending:
            await self._answer()

    async def _answer(self) -> None:
        # Taken when the answer starts: for the flush task, its first step, one turn later.
        waiters, self._pending = self._pending or {}, None
        groups: dict[G, list[str]] = {}
        for group, member in waiters:
            groups.setdefault(group, []).append(member)
        batches = [(group, members[start:start + BATCH_CHUNK])
                   for group, members in groups.items()
                   for start in range(0, len(members), BATCH_CHUNK)]
        if self._inline or len(batches) == 1:
            for group, members in batches:
                await self._answer_batch(waiters, group, members)
        else:
            # A network database: the statements go out together, as separate reads would.
            await asyncio.gather(*(self._answer_batch(waiters, group, members)
                                   for group, members in batches))

    async def _answer_batch(self, waiters: dict[tuple[G, str], list[asyncio.Future[V]]],
                            group: G, members: list[str]) -> None:
        futures = [f for member in members for f in waiters[(group, member)]]
        try:
            if len(members) == 1:
                found = {members[0]: await self._read_one(group, members[0])}
            else:
                found = await self._read_many(group, members)
        except Exception as exc:
            # Every caller of the batch gets what its own read would have raised.
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:
            # Cancelled (the server stopping): nobody is left waiting forever.
            for future in futures:
                future.cancel()
            raise
        missing = self._missing
        for member in members:
            value = found.get(member, missing)
            for future in waiters[(group, member)]:
                if not future.done():  # a caller that gave up (cancelled) wants nothing
                    future.set_result(value)
