"""A module's own storage: its queries and its versioned migrations, over the shared backend.

The core `Storage` keeps what is not a feature (accounts, domains, the schema bookkeeping). A
feature module that stores something declares a `ModuleStore` subclass (`Module.store`) in its
own room, next to its numbered SQL scripts:

    suricate/modules/mod_x/
        __init__.py          class ModX(Module): store = XStore
        store.py             class XStore(ModuleStore): migrations = __package__; queries
        migrations/sqlite/0001_x.sql
        migrations/pgsql/0001_x.sql
        migrations/mysql/0001_x.sql

The SQL is written once with `?` placeholders, as in `storage/sql.py`; the backend spells them
for its driver. Migrations are numbered per module and recorded in `module_schema_version`
(module, version), so two modules never compete for a number and a module can be developed,
enabled or upgraded on its own. They run when the server starts with the module enabled.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, ClassVar

from .sql import Executor, Migration, Row, load_migrations, pending_migrations

if TYPE_CHECKING:
    from .sql import SqlStorage

__all__ = ["ModuleStore", "load_module_migrations", "migrate_module"]

_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

# Created by the first module migration run. Valid in SQLite and PostgreSQL; MySQL cannot
# put a TEXT column in a key, hence its own spelling.
_MODULE_VERSION_DDL = (
    "CREATE TABLE IF NOT EXISTS module_schema_version ("
    "module TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, "
    "applied_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (module, version))"
)
_MODULE_VERSION_DDL_MYSQL = (
    "CREATE TABLE IF NOT EXISTS module_schema_version ("
    "module VARCHAR(191) NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL, "
    "applied_at DOUBLE NOT NULL, PRIMARY KEY (module, version))"
)


class ModuleStore:
    """Base of a module's store. Subclasses add the queries of their feature."""

    #: The package whose `migrations/<dialect>/` folder holds this store's scripts, usually
    #: the module package itself (`__package__`); None for a store without tables of its own.
    migrations: ClassVar[str | None] = None
    #: Tables keyed by (server, username): erased with the account, in the same transaction.
    user_tables: ClassVar[tuple[str, ...]] = ()
    #: The key columns of those of ``user_tables`` that can be erased in batches when a domain
    #: is removed (``delete_domain_batches``); a table not named here goes in the domain's
    #: one transaction.
    key_columns: ClassVar[dict[str, tuple[str, ...]]] = {}
    #: Rows per transaction when a domain is removed (MongooseIM's ``delete_domain_limit``),
    #: set by the module from its options; None: all of them in the domain's one transaction.
    domain_delete_limit: int | None = None

    def __init__(self, db: SqlStorage) -> None:
        self.db = db

    @property
    def dialect(self) -> str:
        return self.db.dialect

    @property
    def no_limit(self) -> int | None:
        """What `LIMIT ?` takes to mean "no limit" in this dialect."""
        return self.db._NO_LIMIT

    # -- running statements --------------------------------------------------------------
    def session(self, *, transaction: bool = False) -> AbstractAsyncContextManager[Executor]:
        """A connection (inside a transaction if asked): several statements, one round trip
        to the pool, all or nothing with `transaction`."""
        return self.db._session(transaction=transaction)

    async def execute(self, sql: str, *args: Any) -> int:
        return await self.db._execute(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self.db._fetch(sql, *args)

    async def fetch_one(self, sql: str, *args: Any) -> Row | None:
        return await self.db._fetch_one(sql, *args)

    async def remove_account(self, bare: str) -> None:
        """An account was removed while the module was not running (``suricate account
        unregister`` with the server stopped, which opens the stores only): erase what its
        ``REMOVE_USER`` handler erases beyond ``user_tables`` (rows naming the account by JID
        in rooms, nodes... of others), so that a new account of the same name inherits
        nothing. The running module's handler does it instead, with its notifications."""

    def limit_domain_deletes(self, limit: int | None) -> None:
        """A module instance's ``delete_domain_limit``. The store is shared by the instances
        of every host type (``[[host_config]]``), so the smallest limit asked wins."""
        if limit is not None:
            current = self.domain_delete_limit
            self.domain_delete_limit = limit if current is None else min(current, limit)

    async def delete_domain_batches(self, domain: str) -> int:
        """Erase the domain's rows of the batchable ``user_tables``, ``domain_delete_limit``
        rows per transaction, before the domain's own transaction removes the rest: a domain
        with millions of archived messages then never holds one huge transaction (locks, a
        statement timeout, a WAL that grows by the whole archive). Answers the rows erased.

        The domain is already out of service when this runs (no login, no new rows but what a
        writer had queued); if the server stops half way, the domain is still registered and
        removing it again finishes the work."""
        limit = self.domain_delete_limit
        if limit is None:
            return 0
        erased = 0
        for table in self.user_tables:
            keys = self.key_columns.get(table)
            if keys is None:
                continue
            sql = _batch_delete(self.dialect, table, keys)
            while True:
                async with self.session(transaction=True) as ex:
                    count = await ex.execute(sql, domain, limit)
                erased += count
                if count < limit:
                    break
        return erased

    async def user_rows(self, table: str, columns: Sequence[str], server: str, user: str,
                        order_by: str | None = None) -> list[tuple[Any, ...]]:
        """``columns`` of the account's rows of one of the store's own ``user_tables`` (GDPR
        retrieval, ``Module.personal_data``)."""
        if table not in self.user_tables:
            raise ValueError(f"{table} is not a user table of {type(self).__name__}")
        order = f" ORDER BY {order_by}" if order_by else ""
        rows = await self.fetch(f"SELECT {', '.join(columns)} FROM {table}"
                                f" WHERE server = ? AND username = ?{order}", server, user)
        return [tuple(row) for row in rows]


def _batch_delete(dialect: str, table: str, keys: Sequence[str]) -> str:
    """One batch of a domain's rows: at most ``?`` rows whose ``server`` is ``?``."""
    if dialect == "mysql":
        # MySQL and MariaDB refuse LIMIT in an IN subquery, and allow it on a DELETE.
        return f"DELETE FROM {table} WHERE server = ? LIMIT ?"
    cols = ", ".join(keys)
    return (f"DELETE FROM {table} WHERE ({cols}) IN "
            f"(SELECT {cols} FROM {table} WHERE server = ? LIMIT ?)")


def load_module_migrations(package: str, dialect: str) -> list[Migration]:
    """The numbered scripts of `<package>/migrations/<dialect>/`, in order."""
    return load_migrations(dialect, package)


async def migrate_module(db: SqlStorage, module: str, migrations: Sequence[Migration]) -> None:
    """Apply `module`'s migrations not yet recorded, one transaction each (a failure leaves the
    module at its last good version), under the backend's migration lock."""
    if not migrations:
        return
    query = "SELECT version FROM module_schema_version WHERE module = ?"
    what = f"{module}: database"
    async with db._session(transaction=True) as ex:
        await db._lock_migrations(ex)
        ddl = _MODULE_VERSION_DDL_MYSQL if db.dialect == "mysql" else _MODULE_VERSION_DDL
        await ex.script(ddl + db.table_options)
        # Every start but the first finds them all applied: one query says so.
        pending = pending_migrations({row[0] for row in await ex.fetch(query, module)},
                                     migrations, what)
    for migration in pending:
        async with db._session(transaction=True) as ex:
            await db._lock_migrations(ex)
            applied = {row[0] for row in await ex.fetch(query, module)}
            if migration not in pending_migrations(applied, migrations, what):
                continue  # applied meanwhile by another process
            await ex.script(migration.sql)
            await ex.execute(
                "INSERT INTO module_schema_version (module, version, name, applied_at)"
                " VALUES (?, ?, ?, ?)",
                module, migration.version, migration.name, time.time())


async def module_versions(db: SqlStorage, module: str) -> list[int]:
    rows = await db._fetch(
        "SELECT version FROM module_schema_version WHERE module = ? ORDER BY version", module)
    return [row[0] for row in rows]
