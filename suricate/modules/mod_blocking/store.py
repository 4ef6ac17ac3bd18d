"""mod_blocking's storage: the account's blocklist (XEP-0191), one row per blocked JID, and
the XEP-0377 reports attached to blocks (``spam_report``, one row per reported JID)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from suricate.storage.module_store import ModuleStore
from suricate.storage.sql import SqlStorage
from suricate.storage.turn_batch import TurnBatch, padded

__all__ = ["BlockingStore", "StoredReport"]


class BlockingStore(ModuleStore):
    migrations = __package__
    # spam_report: the reports the account filed (its own words and choices) go with it and
    # are in its export; reports about it, filed by others, stay (docs/operations.md).
    user_tables = ("blocklist", "spam_report")

    def __init__(self, db: SqlStorage) -> None:
        super().__init__(db)
        # The blocklists asked for in this event-loop turn, by server and username.
        self._batch: TurnBatch[str, list[str]] = TurnBatch(
            self.get_blocklist, self._blocklists_of, [], db.inline)

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
        # A copy each: callers of one batch share its lists.
        return list(await self._batch.read(server, user))

    async def _blocklists_of(self, server: str, users: list[str]) -> dict[str, list[str]]:
        """The blocklist of each of ``users`` (at most BATCH_CHUNK), one query; an account
        with an empty list is not named."""
        size = padded(len(users))
        args = users + [users[-1]] * (size - len(users))
        rows = await self.fetch(
            "SELECT username, jid FROM blocklist WHERE server = ? AND username IN"
            f" ({', '.join('?' * size)}) ORDER BY username, jid", server, *args)
        found: dict[str, list[str]] = {}
        for username, jid in rows:
            found.setdefault(username, []).append(jid)
        return found

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
        await self._batch.answer_pending()
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
        await self._batch.answer_pending()
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
        await self._batch.answer_pending()
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
