"""mod_inbox's storage: one row per conversation of an account, SQLite and PostgreSQL with the
same SQL (``?`` placeholders, ``ON CONFLICT ... DO UPDATE`` in both)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from suricate.storage.module_store import ModuleStore


@dataclass(slots=True)
class Change:
    """What the message path did to one inbox entry since the last write, merged (the writer
    keeps one per entry): the newest message, how many incoming messages to add to the unread
    count, and a reset of the count that comes before them."""

    server: str
    username: str
    remote: str
    #: The newest message (an element until the writer serializes it); None: only a reset.
    content: Any = None
    msg_id: str = ""
    timestamp: int = 0
    unread: int = 0  # incoming messages after the reset (if any)
    reset: bool = False  # the count went to 0 (the owner wrote, or read it all)
    #: A XEP-0333 marker: 0 if the stored last message has this id or this stanza-id.
    reset_if: str | None = None
    #: The stored entry is removed before the rest applies (a member removed from a MUC Light
    #: room with remove_on_kicked); what came after the removal makes a new entry.
    remove: bool = False
    #: The newest message's XEP-0359 stanza-id as the account got it (by the room for a
    #: room's message, by the account's archive for a chat message), "" without one: group
    #: chat clients name a message by it in their markers (XEP-0333 1.0, group chats).
    stanza_id: str = ""


@dataclass(slots=True)
class Entry:
    remote: str
    msg_id: str
    box: str
    content: str
    timestamp: int
    muted_until: int
    unread: int


@dataclass(slots=True)
class Filters:
    start: int | None = None  # microseconds, inclusive
    end: int | None = None
    box: str | None = None  # None: every box but the bin
    hidden_read: bool = False
    order_desc: bool = True
    # XEP-0059 cursors (entry times, microseconds): the page after / before it in the order.
    before: int | None = None
    after: int | None = None
    #: XEP-0059 §2.5, an empty <before/>: the last page in the order (the nearest the end).
    last_page: bool = False


@dataclass(slots=True)
class Totals:
    count: int
    unread_messages: int
    active_conversations: int


# The reset and the increments of one merged change, in one expression: the stored count is
# zeroed by an unconditional reset or by a marker naming the stored last message (by its id,
# as MongooseIM 6.4, or by its stanza-id), then the messages that came after are added.
_COUNT = ("CASE WHEN ? THEN 0 WHEN inbox.msg_id = ? OR inbox.stanza_id = ? THEN 0"
          " ELSE inbox.unread_count END + ?")

# A new message brings an archived or binned conversation back to the inbox (MongooseIM's
# inbox extension, "Box"); custom boxes keep their entries. The count comes first: MySQL
# assigns left to right and a later expression sees the new values, so the marker must be
# compared with the stored last message before msg_id and stanza_id become the new one's
# (SQLite and PostgreSQL read the old row whatever the order).
_UPSERT = (
    "INSERT INTO inbox (server, username, remote_bare_jid, msg_id, stanza_id, box, content,"
    " timestamp, muted_until, unread_count) VALUES (?, ?, ?, ?, ?, 'inbox', ?, ?, 0, ?)"
    " ON CONFLICT (server, username, remote_bare_jid) DO UPDATE SET"
    f" unread_count = {_COUNT},"
    " msg_id = excluded.msg_id, stanza_id = excluded.stanza_id, content = excluded.content,"
    " timestamp = excluded.timestamp,"
    " box = CASE WHEN inbox.box IN ('archive', 'bin') THEN 'inbox' ELSE inbox.box END"
)
_RESET = (f"UPDATE inbox SET unread_count = {_COUNT}"
          " WHERE server = ? AND username = ? AND remote_bare_jid = ?")

_COLUMNS = "remote_bare_jid, msg_id, box, content, timestamp, muted_until, unread_count"


def _entry(row: Sequence[object]) -> Entry:
    return Entry(str(row[0]), str(row[1]), str(row[2]), str(row[3]), int(row[4]),  # type: ignore[call-overload]
                 int(row[5]), int(row[6]))  # type: ignore[call-overload]


class InboxStore(ModuleStore):
    migrations = __package__
    user_tables = ("inbox",)
    key_columns = {"inbox": ("server", "username", "remote_bare_jid")}

    # -- the message path's changes, written in batches -----------------------------------------
    async def apply(self, changes: Sequence[Change]) -> None:
        """Every change in one transaction: one statement per conversation."""
        async with self.session(transaction=True) as ex:
            for c in changes:
                # msg_id = NULL: never; a marker without an id is never recorded.
                count_args = (c.reset, c.reset_if, c.reset_if, c.unread)
                if c.remove:
                    await ex.execute("DELETE FROM inbox WHERE server = ? AND username = ?"
                                     " AND remote_bare_jid = ?", c.server, c.username, c.remote)
                    if c.content is None:
                        continue
                if c.content is None:
                    await ex.execute(_RESET, *count_args, c.server, c.username, c.remote)
                else:
                    await ex.execute(_UPSERT, c.server, c.username, c.remote, c.msg_id,
                                     c.stanza_id, c.content, c.timestamp, c.unread,
                                     *count_args)

    # -- reading ------------------------------------------------------------------------------
    def _where(self, server: str, user: str, f: Filters) -> tuple[str, list[object]]:
        where = ["server = ?", "username = ?"]
        args: list[object] = [server, user]
        if f.box is None:
            where.append("box <> 'bin'")
        else:
            where.append("box = ?")
            args.append(f.box)
        if f.start is not None:
            where.append("timestamp >= ?")
            args.append(f.start)
        if f.end is not None:
            where.append("timestamp <= ?")
            args.append(f.end)
        if f.hidden_read:
            where.append("unread_count > 0")
        return " AND ".join(where), args

    async def query(self, server: str, user: str, f: Filters, limit: int | None) -> list[Entry]:
        """A page in the query's order. XEP-0059 §2: ``after`` is the page that follows the
        cursor in that order, ``before`` the page that precedes it (the nearest entries,
        still returned in the query's order)."""
        where, args = self._where(server, user, f)
        desc = f.order_desc
        backward = (f.before is not None or f.last_page) and f.after is None
        if f.after is not None:
            where += " AND timestamp < ?" if desc else " AND timestamp > ?"
            args.append(f.after)
        if f.before is not None:
            where += " AND timestamp > ?" if desc else " AND timestamp < ?"
            args.append(f.before)
        order = "DESC" if desc != backward else "ASC"
        rows = await self.fetch(
            f"SELECT {_COLUMNS} FROM inbox WHERE {where}"
            f" ORDER BY timestamp {order}, remote_bare_jid {order} LIMIT ?",
            *args, limit if limit is not None else self.no_limit)
        entries = [_entry(r) for r in rows]
        if backward:
            entries.reverse()
        return entries

    async def totals(self, server: str, user: str, f: Filters) -> Totals:
        where, args = self._where(server, user, f)
        row = await self.fetch_one(
            "SELECT COUNT(*), COALESCE(SUM(unread_count), 0),"
            " COALESCE(SUM(CASE WHEN unread_count > 0 THEN 1 ELSE 0 END), 0)"
            f" FROM inbox WHERE {where}", *args)
        assert row is not None
        return Totals(int(row[0]), int(row[1]), int(row[2]))

    async def get(self, server: str, user: str, remote: str) -> Entry | None:
        row = await self.fetch_one(
            f"SELECT {_COLUMNS} FROM inbox WHERE server = ? AND username = ?"
            " AND remote_bare_jid = ?", server, user, remote)
        return None if row is None else _entry(row)

    async def all_entries(self, server: str, user: str) -> list[Entry]:
        rows = await self.fetch(
            f"SELECT {_COLUMNS} FROM inbox WHERE server = ? AND username = ?"
            " ORDER BY timestamp", server, user)
        return [_entry(r) for r in rows]

    # -- conversation properties ----------------------------------------------------------------
    async def set_properties(self, server: str, user: str, remote: str, *, box: str | None,
                             muted_until: int | None, read: bool | None) -> bool:
        """Change what was given; False when the account has no such conversation."""
        sets: list[str] = []
        args: list[object] = []
        if box is not None:
            sets.append("box = ?")
            args.append(box)
        if muted_until is not None:
            sets.append("muted_until = ?")
            args.append(muted_until)
        if read is True:
            sets.append("unread_count = 0")
        elif read is False:  # "unread": at least one message to read
            sets.append("unread_count = CASE WHEN unread_count = 0 THEN 1 ELSE unread_count END")
        if not sets:
            return await self.get(server, user, remote) is not None
        changed = await self.execute(
            f"UPDATE inbox SET {', '.join(sets)} WHERE server = ? AND username = ?"
            " AND remote_bare_jid = ?", *args, server, user, remote)
        return changed > 0

    # -- the bin ------------------------------------------------------------------------------
    async def empty_user_bin(self, server: str, user: str, older_than: int | None) -> int:
        return await self.execute(
            "DELETE FROM inbox WHERE server = ? AND username = ? AND box = 'bin'"
            " AND timestamp < ?", server, user, _bound(older_than))

    async def empty_domain_bin(self, server: str, older_than: int | None) -> int:
        return await self.execute(
            "DELETE FROM inbox WHERE server = ? AND box = 'bin' AND timestamp < ?",
            server, _bound(older_than))

    async def empty_global_bin(self, older_than: int | None) -> int:
        return await self.execute(
            "DELETE FROM inbox WHERE box = 'bin' AND timestamp < ?", _bound(older_than))

    async def remove_inbox(self, server: str, user: str) -> None:
        await self.execute("DELETE FROM inbox WHERE server = ? AND username = ?", server, user)


def _bound(older_than: int | None) -> int:
    # "No age limit" is every entry: a bound after any stored timestamp.
    return older_than if older_than is not None else 2**62
