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

from .base import StorageError
from .sql import Executor, Migration, Row, load_migrations

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


def load_module_migrations(package: str, dialect: str) -> list[Migration]:
    """The numbered scripts of `<package>/migrations/<dialect>/`, in order."""
    return load_migrations(dialect, package)


async def migrate_module(db: SqlStorage, module: str, migrations: Sequence[Migration]) -> None:
    """Apply `module`'s migrations not yet recorded, one transaction each (a failure leaves the
    module at its last good version), under the backend's migration lock."""
    if not migrations:
        return
    async with db._session(transaction=True) as ex:
        await db._lock_migrations(ex)
        ddl = _MODULE_VERSION_DDL_MYSQL if db.dialect == "mysql" else _MODULE_VERSION_DDL
        await ex.script(ddl + db.table_options)
    known = migrations[-1].version
    for migration in migrations:
        async with db._session(transaction=True) as ex:
            await db._lock_migrations(ex)
            rows = await ex.fetch(
                "SELECT version FROM module_schema_version WHERE module = ?", module)
            applied = {row[0] for row in rows}
            if applied and max(applied) > known:
                raise StorageError(
                    f"{module}: database schema version {max(applied)} is newer than this "
                    f"Suricate supports ({known})")
            if migration.version in applied:
                continue
            await ex.script(migration.sql)
            await ex.execute(
                "INSERT INTO module_schema_version (module, version, name, applied_at)"
                " VALUES (?, ?, ?, ?)",
                module, migration.version, migration.name, time.time())


async def module_versions(db: SqlStorage, module: str) -> list[int]:
    rows = await db._fetch(
        "SELECT version FROM module_schema_version WHERE module = ? ORDER BY version", module)
    return [row[0] for row in rows]
