"""mod_blocking's storage: the account's blocklist (XEP-0191), one row per blocked JID, and
the XEP-0377 reports attached to blocks (``spam_report``, one row per reported JID)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from suricate.storage.module_store import ModuleStore
from suricate.storage.sql import SqlStorage

__all__ = ["BlockingStore", "StoredReport"]


# Usernames per batched read (``BlockingStore.get_blocklist_batched``), as mod_roster's.
BATCH_CHUNK = 512

_Waiters = dict[tuple[str, str], list["asyncio.Future[list[str]]"]]


def _padded(count: int) -> int:
    """The IN list's length for ``count`` usernames: the next power of two (the last one
    repeated), so the database sees a handful of distinct statements, not one per size."""
    size = 2
    while size < count:
        size *= 2
    return min(size, BATCH_CHUNK)


class BlockingStore(ModuleStore):
    migrations = __package__
    # spam_report: the reports the account filed (its own words and choices) go with it and
    # are in its export; reports about it, filed by others, stay (docs/operations.md).
    user_tables = ("blocklist", "spam_report")

    def __init__(self, db: SqlStorage) -> None:
        super().__init__(db)
        # Batched reads asked for in this event-loop turn, not yet sent (None: no batch).
        self._pending: _Waiters | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    async def get_blocklist_batched(self, server: str, user: str) -> list[str]:
        """``get_blocklist``, read together with the other calls of this event-loop turn:
        one statement per domain for all of them, where a read suspends (a network
        database); with SQLite, which answers inline, the plain read.

        A login sends its initial presence to every contact and probes them (RFC 6121
        §4.2.2); each presence to a local account without a session here is checked against
        that account's blocklist (XEP-0191 §3.3, ``ModBlocking.filter_presence_to_user``):
        with 25 contacts offline, 50 reads, which held the whole pool (10 connections) for
        five rounds at 2 ms. Nothing is kept: the reads run one turn later than asked, so
        they see the state at the time of the call or a newer one; a change of a list
        (``block``, ``unblock``) first answers the reads asked for before it."""
        if self.db.inline:
            return await self.get_blocklist(server, user)
        pending = self._pending
        if pending is None:
            pending = self._pending = {}
            task = asyncio.get_running_loop().create_task(self._flush())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)
        waiter: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        pending.setdefault((server, user), []).append(waiter)
        return await waiter

    async def _flush(self) -> None:
        await self._answer(self._take())

    def _take(self) -> _Waiters:
        pending, self._pending = self._pending, None
        return pending or {}

    async def _answer_pending(self) -> None:
        if self._pending:
            await self._answer(self._take())

    async def _answer(self, waiters: _Waiters) -> None:
        by_server: dict[str, list[str]] = {}
        for server, user in waiters:
            by_server.setdefault(server, []).append(user)
        await asyncio.gather(*(
            self._answer_batch(waiters, server, users[start:start + BATCH_CHUNK])
            for server, users in by_server.items()
            for start in range(0, len(users), BATCH_CHUNK)))

    async def _answer_batch(self, waiters: _Waiters, server: str, users: list[str]) -> None:
        futures = [f for user in users for f in waiters[(server, user)]]
        try:
            if len(users) == 1:
                found = {users[0]: await self.get_blocklist(server, users[0])}
            else:
                size = _padded(len(users))
                args = users + [users[-1]] * (size - len(users))
                rows = await self.fetch(
                    "SELECT username, jid FROM blocklist WHERE server = ? AND username IN"
                    f" ({', '.join('?' * size)}) ORDER BY username, jid", server, *args)
                found = {}
                for username, jid in rows:
                    found.setdefault(username, []).append(jid)
        except Exception as exc:
            # Every caller gets what its own read would have raised (StorageError...).
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        for user in users:
            jids = found.get(user, [])
            for future in waiters[(server, user)]:
                if not future.done():
                    future.set_result(list(jids))

    async def get_blocklist(self, server: str, user: str) -> list[str]:
        """Blocked JIDs, sorted."""
        rows = await self.fetch(
            "SELECT jid FROM blocklist WHERE server = ? AND username = ? ORDER BY jid",
            server,
            user,
        )
        return [row[0] for row in rows]

    async def block(self, server: str, user: str, jids: Sequence[str]) -> list[str]:
        """Add `jids`; return those that were not blocked before, in request order."""
        # XEP-0191 §3.3: the server pushes only the JIDs that changed, so report those.
        added: list[str] = []
        await self._answer_pending()
        async with self.session(transaction=True) as ex:
            for jid in dict.fromkeys(jids):  # a client may list a JID twice
                if await ex.execute(
                    "INSERT INTO blocklist (server, username, jid) VALUES (?, ?, ?)"
                    " ON CONFLICT (server, username, jid) DO NOTHING",
                    server,
                    user,
                    jid,
                ):
                    added.append(jid)
        return added

    async def unblock(self, server: str, user: str, jids: Sequence[str]) -> list[str]:
        """Remove `jids`; return those that were blocked, in request order."""
        removed: list[str] = []
        await self._answer_pending()
        async with self.session(transaction=True) as ex:
            for jid in dict.fromkeys(jids):
                if await ex.execute(
                    "DELETE FROM blocklist WHERE server = ? AND username = ? AND jid = ?",
                    server,
                    user,
                    jid,
                ):
                    removed.append(jid)
        return removed

    async def unblock_all(self, server: str, user: str) -> list[str]:
        """Empty the blocklist; return what it held, sorted."""
        await self._answer_pending()
        rows = await self.fetch(
            "DELETE FROM blocklist WHERE server = ? AND username = ? RETURNING jid",
            server,
            user,
        )
        return sorted(row[0] for row in rows)

    # -- XEP-0377 reports (migration 0002) ------------------------------------------------------
    async def add_report(self, server: str, user: str, reported: str, reason: str,
                         text: str | None, stanza_ids: Sequence[str], messages: Sequence[str],
                         processing: Sequence[str], created_at: float) -> None:
        await self.execute(
            "INSERT INTO spam_report (server, username, reported, reason, report_text,"
            " stanza_ids, messages, processing, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            server, user, reported, reason, text, json.dumps(list(stanza_ids)),
            json.dumps(list(messages)), " ".join(processing), created_at)

    async def list_reports(self, *, domain: str | None = None, reported: str | None = None,
                           limit: int = 50) -> list[StoredReport]:
        """The newest reports first: of reporters of ``domain``, about ``reported`` (a bare
        JID: its reports as a bare JID and as any full JID of it), or all."""
        where: list[str] = []
        args: list[Any] = []
        if domain is not None:
            where.append("server = ?")
            args.append(domain)
        if reported is not None:
            # A full JID reported counts for its account; substr, not LIKE: '_' and '%' are
            # common in JIDs and would need escaping.
            where.append("(reported = ? OR substr(reported, 1, ?) = ?)")
            args += [reported, len(reported) + 1, reported + "/"]
        sql = ("SELECT id, server, username, reported, reason, report_text, stanza_ids,"
               " messages, processing, created_at FROM spam_report"
               + (f" WHERE {' AND '.join(where)}" if where else "")
               + " ORDER BY id DESC LIMIT ?")
        rows = await self.fetch(sql, *args, limit)
        return [StoredReport(int(r[0]), f"{r[2]}@{r[1]}", str(r[3]), str(r[4]),
                             None if r[5] is None else str(r[5]), json.loads(r[6]),
                             json.loads(r[7]), str(r[8]).split(), float(r[9]))
                for r in rows]


@dataclass(slots=True)
class StoredReport:
    id: int
    reporter: str
    reported: str
    reason: str
    text: str | None
    stanza_ids: list[str]
    messages: list[str]
    processing: list[str]
    created_at: float
