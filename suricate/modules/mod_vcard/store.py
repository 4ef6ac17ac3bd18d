"""mod_vcard's storage: one vCard (XEP-0054), serialized XML, per account; and its searchable
fields in ``vcard_search`` (the XEP-0055 directory of the rdbms backend, ``search.py``)."""

from __future__ import annotations

from collections.abc import Sequence

from suricate.modules.mod_vcard.search import COLUMNS, MAX_VALUE, Criterion, index_row
from suricate.storage.module_store import ModuleStore
from suricate.storage.sql import Executor

__all__ = ["VcardStore"]

_INDEX_COLUMNS = [c for column in COLUMNS for c in (column, "l" + column)]
_UPSERT_INDEX = (
    f"INSERT INTO vcard_search (server, username, {', '.join(_INDEX_COLUMNS)})"
    f" VALUES (?, ?, {', '.join('?' for _ in _INDEX_COLUMNS)})"
    " ON CONFLICT (server, username) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _INDEX_COLUMNS)
)


class VcardStore(ModuleStore):
    migrations = __package__
    user_tables = ("vcards", "vcard_search")

    async def set_vcard(self, server: str, user: str, xml: str) -> None:
        """Store the vCard and, in the same transaction, what of it the directory searches:
        every writer (a client, the admin API, an XEP-0227 import) keeps both in step."""
        async with self.session(transaction=True) as ex:
            await ex.execute(
                "INSERT INTO vcards (server, username, vcard) VALUES (?, ?, ?)"
                " ON CONFLICT (server, username) DO UPDATE SET vcard = excluded.vcard",
                server,
                user,
                xml,
            )
            await _index(ex, server, user, xml)

    async def get_vcard(self, server: str, user: str) -> str | None:
        row = await self.fetch_one(
            "SELECT vcard FROM vcards WHERE server = ? AND username = ?", server, user
        )
        return None if row is None else row[0]

    async def index_unindexed(self) -> int:
        """Index the vCards stored before the directory existed (mod_vcard's migration 2):
        an anti-join that finds nothing once done. Answers how many were indexed."""
        rows = await self.fetch(
            "SELECT v.server, v.username, v.vcard FROM vcards v"
            " LEFT JOIN vcard_search s ON s.server = v.server AND s.username = v.username"
            " WHERE s.username IS NULL"
        )
        for server, user, xml in rows:
            async with self.session(transaction=True) as ex:
                await _index(ex, server, user, xml)
        return len(rows)

    async def search(
        self, server: str, criteria: Sequence[Criterion], limit: int | None
    ) -> list[tuple[str, ...]]:
        """Username and the ``COLUMNS`` of the accounts of ``server`` matching every
        criterion, by username, at most ``limit`` (None: all)."""
        where = " AND ".join(
            f"{c.column} LIKE ? ESCAPE '!'" if c.pattern else f"{c.column} = ?" for c in criteria
        )
        rows = await self.fetch(
            f"SELECT username, {', '.join(COLUMNS)} FROM vcard_search"
            f" WHERE server = ? AND {where} ORDER BY username LIMIT ?",
            server,
            *(c.value for c in criteria),
            self.no_limit if limit is None else limit,
        )
        return [tuple(row) for row in rows]


async def _index(ex: Executor, server: str, user: str, xml: str) -> None:
    row = index_row(xml)
    # Lower-casing can lengthen a value ("İ"): the matched copy keeps to MAX_VALUE too.
    values = [v for column in COLUMNS for v in (row[column], row[column].lower()[:MAX_VALUE])]
    await ex.execute(_UPSERT_INDEX, server, user, *values)
