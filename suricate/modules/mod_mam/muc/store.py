"""The MUC archive's storage (XEP-0313 on room JIDs): one row per groupchat message per room,
SQLite and PostgreSQL with the same SQL (``?`` placeholders).

Its own store (``mod_mam_muc``, numbered migrations next to this file) so that the room
archive and the one-to-one archive evolve apart, as MongooseIM's ``mam_muc_message`` and
``mam_message`` tables do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from suricate.modules.mod_mam.query import Query
from suricate.modules.mod_mam.store import Page, Row, add_common_filters, first_missing, page_of
from suricate.storage.module_store import ModuleStore

_COLUMNS = ("id", "server", "room", "sender_jid", "nick", "origin_id", "search_body",
            "message")
#: Where each column is in mod_mam's writer row (``store.Row``), which the room archive
#: fills as (id, service, room, sender bare JID, nick, "G", occupant JID, origin_id,
#: search_body, message): the writer stays one writer for both archives.
_FROM_ROW = (0, 1, 2, 3, 4, 7, 8, 9)
_ONE_ROW = "(" + ", ".join("?" * len(_COLUMNS)) + ")"
_CHUNK_SIZES = (256, 64, 16, 4, 1)
_INSERTS = {size: f"INSERT INTO mam_muc_message ({', '.join(_COLUMNS)}) VALUES "
            + ", ".join([_ONE_ROW] * size) + " ON CONFLICT DO NOTHING"
            for size in _CHUNK_SIZES}


class MucArchiveStore(ModuleStore):
    migrations = __package__
    user_tables = ()  # keyed by room, not by account

    async def insert_many(self, rows: Sequence[Row]) -> None:
        """All ``rows`` in one transaction, in multi-row INSERTs of a few fixed sizes (their
        statements are prepared once)."""
        async with self.session(transaction=True) as ex:
            start = 0
            for size in _CHUNK_SIZES:
                while len(rows) - start >= size:
                    chunk = rows[start:start + size]
                    start += size
                    await ex.execute(_INSERTS[size],
                                     *[row[i] for row in chunk for i in _FROM_ROW])

    async def sent_by(self, sender: str) -> list[tuple[int, str, str]]:
        """(id, room JID, message) of what ``sender`` (a bare JID) said in any room: GDPR
        retrieval."""
        rows = await self.fetch(
            "SELECT id, room, server, message FROM mam_muc_message WHERE sender_jid = ?"
            " ORDER BY id", sender)
        return [(int(r[0]), f"{r[1]}@{r[2]}", str(r[3])) for r in rows]

    async def find(self, server: str, room: str, mam_id: int) -> tuple[str, str] | None:
        """(sender bare JID, message) of one archived message."""
        row = await self.fetch_one(
            "SELECT sender_jid, message FROM mam_muc_message"
            " WHERE server = ? AND room = ? AND id = ?", server, room, mam_id)
        return None if row is None else (str(row[0]), str(row[1]))

    async def replace_message(self, server: str, room: str, mam_id: int, xml: str) -> None:
        await self.execute(
            "UPDATE mam_muc_message SET message = ?, search_body = NULL"
            " WHERE server = ? AND room = ? AND id = ?", xml, server, room, mam_id)

    async def remove_room(self, server: str, room: str) -> int:
        return await self.execute(
            "DELETE FROM mam_muc_message WHERE server = ? AND room = ?", server, room)

    async def missing(self, server: str, room: str, ids: Sequence[int]) -> int | None:
        """The first of ``ids`` that names no message of the room's archive, else None."""
        return await first_missing(self, "mam_muc_message", "room", server, room, ids)

    async def max_id(self) -> int:
        row = await self.fetch_one("SELECT MAX(id) FROM mam_muc_message")
        return int(row[0]) if row is not None and row[0] is not None else 0

    async def count(self, server: str, room: str) -> int:
        row = await self.fetch_one(
            "SELECT COUNT(*) FROM mam_muc_message WHERE server = ? AND room = ?", server, room)
        return int(row[0]) if row else 0

    async def bounds(self, server: str, room: str) -> tuple[int, int] | None:
        row = await self.fetch_one(
            "SELECT MIN(id), MAX(id) FROM mam_muc_message WHERE server = ? AND room = ?",
            server, room)
        if row is None or row[0] is None:
            return None
        return int(row[0]), int(row[1])

    async def lookup(self, server: str, room: str, q: Query, limit: int, simple: bool, *,
                     sender: str | None = None) -> Page:
        """A page of the room's archive (XEP-0313 §4 with XEP-0059), filtered by ``q`` and,
        when ``sender`` is given, by the sender's real bare JID."""
        where, args = _filters(server, room, q, sender)
        return await page_of(self, "mam_muc_message", "sender_jid", where, args, q, limit,
                             simple)


def _filters(server: str, room: str, q: Query,
             sender: str | None) -> tuple[list[str], list[Any]]:
    where = ["server = ?", "room = ?"]
    args: list[Any] = [server, room]
    if q.with_jid is not None and q.with_jid.resource is not None:
        where.append("nick = ?")
        args.append(q.with_jid.resource)
    if sender is not None:
        where.append("sender_jid = ?")
        args.append(sender)
    add_common_filters(q, where, args)
    return where, args
