"""The archive's async writer (MongooseIM's ``async_writer``): archiving never waits for the
database on the message's path.

Rows are appended, in arrival order, to the writer's lane. It is flushed when it holds
``batch_size`` rows or ``flush_interval`` ms after its first pending row, whichever comes
first: the pending rows through ``MamStore.insert_many`` (SQLite: in the archive's writer
thread; PostgreSQL: COPY). Flushes never overlap, so each archive's rows land in order; rows
that arrive during a flush are written by the next one once they are a full batch themselves
(or at their timer), so many small flushes do not follow a full one under load.

What this costs: rows wait in memory up to one flush interval. ``stop`` drains every shard (a
clean shutdown loses nothing); a crash of the process loses at most the rows of one flush
interval (and of a write in progress). A query first flushes the shard of its archive, so it
sees every message archived before it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from suricate.instrument import Instrumentation
from suricate.instrument.events import ASYNC_POOL_FLUSH, SPIRAL, declare
from suricate.modules.mod_mam.store import MamStore, Row
from suricate.xml.element import Element

log = logging.getLogger("suricate.mod_mam")

#: Rows in a full batch at least, whatever ``batch_size x pool_size`` says (2 x 30 x 4 per
#: core: 240 on this 2-core machine). A transaction's cost is mostly per B-tree page it
#: dirties (one index leaf per archive), so rows per transaction is what makes a row cheap:
#: SQLite's writer thread spends 26 µs per row at 240 rows, 9-11 at 2048 (bench/mam_rows.py,
#: docs/mam.md); PostgreSQL's COPY 3.5 µs at 240, 1.7 at 2400. Rows still wait at most
#: ``flush_interval`` at low rates, and a query flushes its archive first.
BATCH_FLOOR = 2048

#: Rows a writer gave up on (``max_pending`` exceeded while the database failed), by pool.
DROPPED = {
    "pm_mam": declare("mod_mam_pm_dropped", ("host_type",), {"count": SPIRAL},
                      "Archived messages the async writer dropped: more than max_pending "
                      "waited while the database failed"),
    "muc_mam": declare("mod_mam_muc_dropped", ("host_type",), {"count": SPIRAL},
                       "Room archive messages the async writer dropped: more than "
                       "max_pending waited while the database failed"),
}

class Retraction(NamedTuple):
    """A retraction waiting for its turn in the lane: applied after the rows queued before
    it, so a message still waiting to be written is written first, then replaced."""

    server: str
    #: The archive: an account's username, or a room's name (the room archive's lane).
    user: str
    #: One-to-one: the other party's bare JID (the conversation). Rooms: the author's bare
    #: JID, or "" for a moderator (XEP-0425: no author check).
    peer: str
    #: The origin-id (XEP-0424 §5), or with ``by_stanza_id`` the archive id as text.
    target: str
    #: 'O' the owner sent the retraction, 'I' the owner received it, 'G' a room's.
    direction: str
    #: The retraction's own archive id: only older messages are retracted.
    before: int
    stamp: str
    #: ``target`` is a stanza-id of an archive (MongooseIM's
    #: urn:esl:message-retract-by-stanza-id:0), not an origin-id.
    by_stanza_id: bool = False
    #: Rooms: the <retracted/> element the tombstone carries (XEP-0424 §5, XEP-0425 §5).
    retracted: Element | None = None


@dataclass(slots=True)
class _Shard:
    rows: list[Row] = field(default_factory=list)
    retractions: list[Retraction] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    flushing: bool = False


class AsyncWriter:
    #: Where async_pool_flush and mod_mam_*_dropped go: set by the module that made the
    #: writer (``server.instrument``), with its 6.4 pool id (pm_mam or muc_mam). The no-op
    #: default measures nothing.
    instrument: Instrumentation = Instrumentation()
    pool_id = "pm_mam"

    def __init__(self, store: MamStore, *, batch_size: int,
                 flush_interval_ms: int, spawn: Callable[[Coroutine[Any, Any, None]], object],
                 retract: Callable[[Retraction], Awaitable[None]],
                 admit: Callable[[list[Row]], Awaitable[list[Row]]] | None = None,
                 on_flushed: Callable[[str, int], None] | None = None) -> None:
        self.store = store
        self.interval = flush_interval_ms / 1000
        # One lane: this process has one event loop, so writers in parallel would only share
        # its CPU, and the cost of a flush is mostly per flush (a transaction, statements),
        # not per row. The module gives it MongooseIM's batch_size x pool_size: what the
        # pool's writers would hold before flushing.
        self.batch_size = max(1, batch_size)
        self.shards = [_Shard()]
        self._spawn = spawn
        self._retract = retract
        self._admit = admit
        self._on_flushed = on_flushed
        self._loop = asyncio.get_running_loop()
        self._stopped = False
        #: Rows a failed flush put back; beyond this many per shard the oldest are dropped
        #: (and logged) rather than growing without bound while the database is down.
        self.max_pending = max(10_000, self.batch_size * 100)

    def _shard(self, server: str, user: str) -> _Shard:
        shards = self.shards
        return shards[0] if len(shards) == 1 else shards[hash((server, user)) % len(shards)]

    # -- hot path (sync) ---------------------------------------------------------------------
    def add(self, row: Row) -> None:
        shards = self.shards
        shard = shards[0] if len(shards) == 1 else self._shard(row[1], row[2])
        rows = shard.rows
        rows.append(row)
        # Most rows only join the lane: its timer (or a flush in progress) is already there.
        if len(rows) < self.batch_size and (shard.timer is not None or shard.flushing) \
                and not self._stopped:
            return
        self._schedule(shard)

    def add_retraction(self, retraction: Retraction) -> None:
        shard = self._shard(retraction[0], retraction[1])
        shard.retractions.append(retraction)
        self._schedule(shard)

    def _schedule(self, shard: _Shard) -> None:
        if self._stopped:
            # After stop (a message routed during shutdown): write it now rather than lose it.
            self._spawn(self._flush(shard, full=True))
            return
        if len(shard.rows) >= self.batch_size:
            if shard.timer is not None:
                shard.timer.cancel()
                shard.timer = None
            if not shard.flushing:
                shard.flushing = True
                self._flushing(shard, "batch")
                self._spawn(self._flush(shard, full=False))
        elif shard.timer is None and not shard.flushing:
            shard.timer = self._loop.call_later(self.interval, self._on_timer, shard)

    def _on_timer(self, shard: _Shard) -> None:
        shard.timer = None
        if not shard.flushing:
            shard.flushing = True
            self._flushing(shard, "timed")
            self._spawn(self._flush(shard, full=True))

    def _flushing(self, shard: _Shard, trigger: str) -> None:
        """6.4's async_pool_flush: ``timed`` or ``batch``, labelled with the host type of
        the first row waiting (the lane is shared by the domains of this process)."""
        instrument = self.instrument
        if instrument.enabled and shard.rows:
            instrument.emit(ASYNC_POOL_FLUSH, {"host_type": shard.rows[0][1],
                                               "pool_id": self.pool_id}, {trigger: 1})

    # -- flushing ------------------------------------------------------------------------------
    async def _flush(self, shard: _Shard, *, full: bool) -> None:
        try:
            async with shard.lock:
                await self._flush_locked(shard, full=full or self._stopped)
        finally:
            shard.flushing = False
            # Rows that arrived while we were writing get their own turn.
            if (shard.rows or shard.retractions) and shard.timer is None:
                if self._stopped or len(shard.rows) >= self.batch_size:
                    shard.flushing = True
                    if not self._stopped:
                        self._flushing(shard, "batch")
                    self._spawn(self._flush(shard, full=self._stopped))
                else:
                    shard.timer = self._loop.call_later(self.interval, self._on_timer, shard)

    async def _flush_locked(self, shard: _Shard, *, full: bool = True) -> None:
        """Write the pending rows, again while more arrive during the write. Not ``full`` (a
        batch filled up): what arrived meanwhile is written only once it is a full batch
        itself (or a retraction waits for it), else it waits for its timer: each flush costs
        round trips and a transaction, so many small ones cost more than a few full ones."""
        while shard.rows or shard.retractions:
            if not full and not shard.retractions and len(shard.rows) < self.batch_size:
                return
            rows, shard.rows = shard.rows, []
            retractions, shard.retractions = shard.retractions, []
            if rows:
                try:
                    if self._admit is not None:
                        rows = await self._admit(rows)
                    if rows:
                        await self.store.insert_many(rows)
                except Exception:
                    log.exception("mam_flush_failed rows=%d", len(rows))
                    # Put them back in front (order kept) for the next flush.
                    shard.rows[:0] = rows
                    over = len(shard.rows) - self.max_pending
                    if over > 0:
                        self._dropped(shard.rows[:over])
                        del shard.rows[:over]
                    shard.retractions[:0] = retractions
                    return
                if self._on_flushed is not None and rows:
                    self._on_flushed(rows[0][1], len(rows))
            for retraction in retractions:
                try:
                    await self._retract(retraction)
                except Exception:
                    log.exception("mam_retraction_failed user=%s@%s", retraction[1],
                                  retraction[0])

    def _dropped(self, rows: list[Row]) -> None:
        log.error("mam_rows_dropped rows=%d max_pending=%d", len(rows), self.max_pending)
        instrument = self.instrument
        if instrument.enabled:
            by_domain: dict[str, int] = {}
            for row in rows:
                by_domain[row[1]] = by_domain.get(row[1], 0) + 1
            for domain, count in by_domain.items():
                instrument.emit(DROPPED[self.pool_id], {"host_type": domain}, {"count": count})

    async def flush_archive(self, server: str, user: str) -> None:
        """Write the pending rows of the shard holding this archive (before a query)."""
        shard = self._shard(server, user)
        if shard.timer is not None:
            shard.timer.cancel()
            shard.timer = None
        self._flushing(shard, "timed")  # 6.4: a sync of a pool with rows waiting is timed
        async with shard.lock:
            await self._flush_locked(shard)

    async def flush_all(self) -> None:
        """Write the pending rows of every shard (GDPR retrieval reads rows of any archive)."""
        for shard in self.shards:
            if not shard.rows and not shard.retractions:
                continue
            if shard.timer is not None:
                shard.timer.cancel()
                shard.timer = None
            async with shard.lock:
                await self._flush_locked(shard)

    def discard_archive(self, server: str, user: str) -> None:
        """Forget pending rows of an archive being removed with its account."""
        shard = self._shard(server, user)
        shard.rows = [r for r in shard.rows if r[1] != server or r[2] != user]
        shard.retractions = [r for r in shard.retractions if r[0] != server or r[1] != user]

    async def discard_server(self, server: str) -> None:
        """Forget pending rows of every archive of ``server`` (its domain is being removed),
        and wait for a flush in flight, which may still hold some: deleted after this, none
        lands later."""
        for shard in self.shards:
            shard.rows = [r for r in shard.rows if r[1] != server]
            shard.retractions = [r for r in shard.retractions if r[0] != server]
            async with shard.lock:
                pass

    def pending(self) -> int:
        return sum(len(s.rows) for s in self.shards)

    async def stop(self) -> None:
        """Drain every shard: a clean shutdown loses no archived message."""
        self._stopped = True
        for shard in self.shards:
            if shard.timer is not None:
                shard.timer.cancel()
                shard.timer = None
        for shard in self.shards:
            async with shard.lock:
                await self._flush_locked(shard)
