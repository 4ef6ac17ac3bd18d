"""mod_mam's storage: the one-to-one archive and the XEP-0441 preferences, SQLite and
PostgreSQL with the same SQL (``?`` placeholders)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from suricate.modules.mod_mam.query import Query, search_words
from suricate.modules.mod_mam.sqlite_writer import SqliteWriterThread
from suricate.storage.base import StorageError, StorageUnavailable
from suricate.storage.module_store import ModuleStore

if TYPE_CHECKING:
    from suricate.storage.sql import SqlStorage

#: One archived message, in the column order of ``INSERT_COLUMNS``.
Row = tuple[int, str, str, str, str, str, str, str | None, str | None, str]

INSERT_COLUMNS = ("id", "server", "username", "remote_bare_jid", "remote_resource",
                  "direction", "from_jid", "origin_id", "search_body", "message")
_ONE_ROW = "(" + ", ".join("?" * len(INSERT_COLUMNS)) + ")"
_INSERT = f"INSERT INTO mam_message ({', '.join(INSERT_COLUMNS)}) VALUES "
#: Rows per INSERT statement, largest first (256 x 10 parameters stays far under SQLite's
#: 32766 and asyncpg's 32767 bind parameters).
CHUNK_SIZES = (256, 64, 16, 4, 1)
_INSERTS = {size: _INSERT + ", ".join([_ONE_ROW] * size) + " ON CONFLICT DO NOTHING"
            for size in CHUNK_SIZES}
#: The SQLite writer thread's statements: INSERT OR IGNORE keeps a row already there as
#: ON CONFLICT DO NOTHING does, and since no constraint can then abort the statement midway,
#: SQLite writes no statement journal for it (about three quarters of the bytes a flush
#: wrote, see docs/mam.md). OR IGNORE would also skip a row with a NULL in a NOT NULL
#: column: ``NOT_NULL`` says which, and the writer thread refuses such a batch instead.
WRITER_INSERTS = {size: _INSERT.replace("INSERT", "INSERT OR IGNORE", 1)
                  + ", ".join([_ONE_ROW] * size) for size in CHUNK_SIZES}
#: Positions in a ``Row`` of the columns declared NOT NULL (all but origin_id, search_body).
NOT_NULL = tuple(i for i, c in enumerate(INSERT_COLUMNS) if c not in ("origin_id",
                                                                        "search_body"))

#: PostgreSQL: the largest id written (``MamStore.max_id``), raised before a batch is written;
#: ``WHERE`` leaves the row alone when another node's batch already raised it higher.
_RAISE_CEILING = "UPDATE mam_id_ceiling SET id = ? WHERE id < ?"


@dataclass(slots=True)
class Archived:
    id: int
    from_jid: str
    message: str


@dataclass(slots=True)
class ArchivedRow:
    """A row found for a retraction by stanza-id: enough to tombstone it and to find the
    peer's copy of the same message."""
    id: int
    message: str
    origin_id: str | None
    from_jid: str


@dataclass(slots=True)
class Page:
    messages: list[Archived]
    complete: bool
    count: int | None  # None for a simple query
    first_index: int | None


@dataclass(slots=True)
class Prefs:
    default: str  # always | never | roster
    always: list[str]
    never: list[str]


class MamStore(ModuleStore):
    migrations = __package__
    user_tables = ("mam_message", "mam_prefs")
    # (server, username, id): PostgreSQL's key (its migration 0002), an index elsewhere.
    key_columns = {"mam_message": ("server", "username", "id"),
                   "mam_prefs": ("server", "username")}

    def __init__(self, db: SqlStorage) -> None:
        super().__init__(db)
        self._thread: SqliteWriterThread | None = None

    # -- writing ------------------------------------------------------------------------
    async def insert_many(self, rows: Sequence[Row]) -> None:
        """All ``rows`` in one transaction, by the cheapest path of the backend:

        - SQLite (a file): in the archive's own writer thread and connection
          (``sqlite_writer.py``), off the event loop;
        - PostgreSQL: COPY (binary); should a row already be there (the same batch retried
          after its commit's reply was lost) the batch is written again with INSERT ... ON
          CONFLICT DO NOTHING, which keeps the row there as it is;
        - SQLite in memory (tests): multi-row INSERTs on the shared connection.
        """
        if self.dialect == "sqlite":
            thread = self._writer_thread()
            if thread is not None:
                await thread.write(rows)
                return
        elif self.dialect == "pgsql":
            try:
                # One statement, atomic by itself: no BEGIN and COMMIT round trips around it.
                # The ceiling is raised first: should the COPY fail or the server die
                # between the two, it is above the rows, never below (``max_id``).
                async with self.session() as ex:
                    top = max(row[0] for row in rows)
                    await ex.execute(_RAISE_CEILING, top, top)
                    await ex.copy_rows("mam_message", INSERT_COLUMNS, rows)
                return
            except StorageUnavailable:
                raise
            except StorageError:
                pass  # a duplicate id: below, the rows not there yet are added
        await self._insert_chunks(rows)

    def _writer_thread(self) -> SqliteWriterThread | None:
        if self._thread is None:
            path = getattr(self.db, "path", ":memory:")
            if path == ":memory:" or path.startswith("file:"):
                return None  # another connection would not see the same database
            self._thread = SqliteWriterThread(
                path, WRITER_INSERTS, not_null=NOT_NULL,
                busy_timeout_ms=getattr(self.db, "busy_timeout_ms", 5000))
        return self._thread

    async def close_writer(self) -> None:
        """Close the writer thread's connection (after the async writer drained)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            await thread.close()

    async def _insert_chunks(self, rows: Sequence[Row]) -> None:
        """All ``rows`` in one transaction, as multi-row INSERTs of the sizes of
        ``CHUNK_SIZES``: the same few statement texts every time, so SQLite's statement cache
        and asyncpg's prepared statements are reused instead of compiled per flush."""
        async with self.session(transaction=True) as ex:
            start = 0
            for size in CHUNK_SIZES:
                while len(rows) - start >= size:
                    chunk = rows[start:start + size]
                    start += size
                    # A row already there (the same batch retried after a lost reply) stays
                    # as it is instead of failing the whole batch.
                    await ex.execute(_INSERTS[size], *[v for row in chunk for v in row])

    async def find_retractable(self, server: str, user: str, peer: str, origin_id: str,
                               direction: str, before: int) -> tuple[int, str] | None:
        """XEP-0424 §5: the most recent message of this conversation with that origin id
        (MongooseIM's rule when ids repeat), older than the retraction itself."""
        row = await self.fetch_one(
            "SELECT id, message FROM mam_message WHERE server = ? AND username = ?"
            " AND remote_bare_jid = ? AND origin_id = ? AND direction = ? AND id < ?"
            " ORDER BY id DESC LIMIT 1",
            server, user, peer, origin_id, direction, before)
        return None if row is None else (int(row[0]), str(row[1]))

    async def find_by_stanza_id(self, server: str, user: str, peer: str, mam_id: int,
                                direction: str, before: int) -> ArchivedRow | None:
        """The message whose archive id (its XEP-0359 stanza-id in this archive) is
        ``mam_id``, if it is in this conversation, in that direction (XEP-0424 §4: 'O' the
        owner sent it, 'I' ``peer`` did) and older than the retraction ``before``."""
        row = await self.fetch_one(
            "SELECT id, message, origin_id, from_jid FROM mam_message WHERE id = ?"
            " AND server = ? AND username = ? AND remote_bare_jid = ? AND direction = ?"
            " AND id < ?",
            mam_id, server, user, peer, direction, before)
        if row is None:
            return None
        return ArchivedRow(int(row[0]), str(row[1]), None if row[2] is None else str(row[2]),
                           str(row[3]))

    async def count_sent_before(self, server: str, user: str, peer: str, from_jid: str,
                                origin_id: str, mam_id: int) -> int:
        """How many messages the owner sent to ``peer`` from the full JID ``from_jid`` with
        that origin-id before the one whose id is ``mam_id``: its rank among them (0 for the
        first), which its copy in the peer's archive has among the peer's too."""
        row = await self.fetch_one(
            "SELECT COUNT(*) FROM mam_message WHERE server = ? AND username = ?"
            " AND remote_bare_jid = ? AND direction = 'O' AND origin_id = ? AND from_jid = ?"
            " AND id < ?",
            server, user, peer, origin_id, from_jid, mam_id)
        return int(row[0]) if row else 0

    async def find_received_copy(self, server: str, user: str, peer: str, from_jid: str,
                                 origin_id: str, rank: int,
                                 before: int) -> tuple[int, str] | None:
        """The recipient's copy of a message of ``peer``'s: among the messages the owner
        received from ``peer``, sent from the full JID ``from_jid`` with that origin-id, the
        one of that ``rank`` (``count_sent_before`` in the sender's archive), if it is older
        than the retraction ``before``. By rank, not by id: the recipient's copy gets its id
        when it is archived, which on the offline path may come after the sender's next
        messages got theirs."""
        row = await self.fetch_one(
            "SELECT id, message FROM mam_message WHERE server = ? AND username = ?"
            " AND remote_bare_jid = ? AND direction = 'I' AND origin_id = ? AND from_jid = ?"
            " ORDER BY id LIMIT 1 OFFSET ?",
            server, user, peer, origin_id, from_jid, rank)
        if row is None or int(row[0]) >= before:
            return None
        return int(row[0]), str(row[1])

    async def replace_message(self, server: str, user: str, mam_id: int, xml: str) -> None:
        await self.execute(
            "UPDATE mam_message SET message = ?, search_body = NULL"
            " WHERE server = ? AND username = ? AND id = ?", xml, server, user, mam_id)

    async def remove_archive(self, server: str, user: str) -> None:
        async with self.session(transaction=True) as ex:
            await ex.execute("DELETE FROM mam_message WHERE server = ? AND username = ?",
                             server, user)
            await ex.execute("DELETE FROM mam_prefs WHERE server = ? AND username = ?",
                             server, user)

    # -- reading --------------------------------------------------------------------------
    async def missing(self, server: str, user: str, ids: Sequence[int]) -> int | None:
        """The first of ``ids`` that names no message of the archive, else None."""
        return await first_missing(self, "mam_message", "username", server, user, ids)

    async def max_id(self) -> int:
        """The largest id ever written. PostgreSQL keys the table by archive (its migration
        0002), so it keeps that id in ``mam_id_ceiling`` rather than scan the table; the
        other dialects find it at the end of their index on id."""
        if self.dialect == "pgsql":
            row = await self.fetch_one("SELECT MAX(id) FROM mam_id_ceiling")
        else:
            row = await self.fetch_one("SELECT MAX(id) FROM mam_message")
        return int(row[0]) if row is not None and row[0] is not None else 0

    async def bounds(self, server: str, user: str) -> tuple[int, int] | None:
        """The first and last ids of the archive (XEP-0313 §5 metadata)."""
        row = await self.fetch_one(
            "SELECT MIN(id), MAX(id) FROM mam_message WHERE server = ? AND username = ?",
            server, user)
        if row is None or row[0] is None:
            return None
        return int(row[0]), int(row[1])

    async def lookup(self, server: str, user: str, q: Query, limit: int,
                     simple: bool) -> Page:
        where, args = _filters(server, user, q)
        return await page_of(self, "mam_message", "from_jid", where, args, q, limit, simple)

    # -- preferences (XEP-0441) -------------------------------------------------------------
    async def get_prefs(self, server: str, user: str) -> Prefs | None:
        row = await self.fetch_one(
            "SELECT default_mode, always_jids, never_jids FROM mam_prefs"
            " WHERE server = ? AND username = ?", server, user)
        if row is None:
            return None
        return Prefs(str(row[0]), _lines(row[1]), _lines(row[2]))

    async def set_prefs(self, server: str, user: str, prefs: Prefs) -> None:
        await self.execute(
            "INSERT INTO mam_prefs (server, username, default_mode, always_jids, never_jids)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (server, username) DO UPDATE SET"
            " default_mode = excluded.default_mode, always_jids = excluded.always_jids,"
            " never_jids = excluded.never_jids",
            server, user, prefs.default, "\n".join(prefs.always), "\n".join(prefs.never))



async def page_of(store: ModuleStore, table: str, sender_column: str, where: list[str],
                  args: list[Any], q: Query, limit: int, simple: bool) -> Page:
    """A page of an archive table (``mam_message`` of accounts, ``mam_muc_message`` of rooms)
    whose rows match ``where``: XEP-0313 §4 with XEP-0059 paging (after, before, index,
    backward), the count and the first index unless ``simple``."""
    page_where, page_args = list(where), list(args)
    offset = 0
    if q.after is not None:
        page_where.append("id > ?")
        page_args.append(q.after)
    elif q.before is not None:
        page_where.append("id < ?")
        page_args.append(q.before)
    elif q.index is not None:
        offset = q.index
    order = "DESC" if q.backward else "ASC"
    limit = max(limit, 0)
    # One row more than asked: whether it exists says if the page is the last one in the
    # paging direction (XEP-0313 §4.3 complete). With <max>0</max> that row alone is read:
    # an empty page is complete only if nothing matches (a simple query has no count to
    # tell the client that more is there).
    sql = (f"SELECT id, {sender_column}, message FROM {table}"
           f" WHERE {' AND '.join(page_where)} ORDER BY id {order} LIMIT ?")
    params: list[Any] = [*page_args, limit + 1]
    if offset:
        sql += " OFFSET ?"
        params.append(offset)
    rows = await store.fetch(sql, *params)
    more = len(rows) > limit
    messages = [Archived(int(r[0]), str(r[1]), str(r[2])) for r in rows[:limit]]
    if q.backward:
        messages.reverse()
    if simple:
        return Page(messages, not more, None, None)
    count_sql = f"SELECT COUNT(*) FROM {table} WHERE {' AND '.join(where)}"
    count_row = await store.fetch_one(count_sql, *args)
    count = int(count_row[0]) if count_row else 0
    first_index: int | None = None
    if messages:
        # The index is known without counting at either end of the archive.
        if q.index is not None:
            first_index = q.index
        elif q.after is None and not q.backward:
            first_index = 0
        elif q.last_page or (q.after is not None and not more):
            first_index = count - len(messages)
        else:
            row = await store.fetch_one(count_sql + " AND id < ?", *args, messages[0].id)
            first_index = int(row[0]) if row else 0
    return Page(messages, not more, count, first_index)


#: Ids per existence query: far under every backend's limit on bind parameters.
_IDS_PER_QUERY = 500


async def first_missing(store: ModuleStore, table: str, owner_column: str, server: str,
                        owner: str, ids: Sequence[int]) -> int | None:
    """The first of ``ids`` not in the archive of ``owner`` (an account's or a room's), or
    None: XEP-0313 §4.1.3 and §4.3.2, item-not-found for an id the archive does not hold.
    One query per 500 ids: a client may name many in the 'ids' field."""
    for start in range(0, len(ids), _IDS_PER_QUERY):
        chunk = ids[start:start + _IDS_PER_QUERY]
        rows = await store.fetch(
            f"SELECT id FROM {table} WHERE server = ? AND {owner_column} = ?"
            f" AND id IN ({', '.join('?' * len(chunk))})", server, owner, *chunk)
        found = {int(row[0]) for row in rows}
        for mam_id in chunk:
            if mam_id not in found:
                return mam_id
    return None


def _id_bound(value: int) -> int:
    """An id bound within the ids' 64-bit signed column: a DateTime far in the past or the
    future (year 1 or 9999, a client's "everything" bound) filters as the oldest or newest id
    would, instead of overflowing the database's integer."""
    return max(-(1 << 63), min(value, (1 << 63) - 1))


def add_common_filters(q: Query, where: list[str], args: list[Any]) -> None:
    """The form fields every archive answers the same way (XEP-0313 §4.1.1 start/end on the
    time-ordered ids, XEP-0313 #extended before-id/after-id/ids, full-text search), appended
    to ``where``/``args``; used by the accounts' and the rooms' archives."""
    if q.start is not None:
        where.append("id >= ?")
        args.append(_id_bound(q.start << 8))
    if q.end is not None:
        where.append("id <= ?")
        args.append(_id_bound((q.end << 8) | 0xFF))
    if q.after_id is not None:
        where.append("id > ?")
        args.append(q.after_id)
    if q.before_id is not None:
        where.append("id < ?")
        args.append(q.before_id)
    if q.ids is not None:
        if q.ids:
            where.append("id IN (" + ", ".join("?" * len(q.ids)) + ")")
            args.extend(q.ids)
        else:
            where.append("1 = 0")
    if q.full_text:
        for word in search_words(q.full_text):
            # LIKE wildcards typed by the user are searched for literally.
            escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            where.append("search_body LIKE ? ESCAPE '\\'")
            args.append(f"%{escaped}%")

def _lines(text: Any) -> list[str]:
    return [line for line in str(text or "").split("\n") if line]


def _filters(server: str, user: str, q: Query) -> tuple[list[str], list[Any]]:
    where = ["server = ?", "username = ?"]
    args: list[Any] = [server, user]
    if q.with_jid is not None:
        where.append("remote_bare_jid = ?")
        args.append(str(q.with_jid.bare))
        if q.with_jid.resource is not None:
            where.append("remote_resource = ?")
            args.append(q.with_jid.resource)
    add_common_filters(q, where, args)
    return where, args
