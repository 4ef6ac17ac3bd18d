"""The SQL both relational backends share: queries, row mapping, migrations.

SQLite and PostgreSQL agree on everything we need (`INSERT ... ON CONFLICT`, `RETURNING`,
`COUNT(*)`, `LEFT JOIN`), so the queries live here once, written with `?` placeholders.
A backend only supplies an `Executor` (how a statement runs and how `?` is spelt) and a
session (a connection, optionally inside a transaction). That keeps the two backends
from drifting apart and lets one test suite cover both.
"""

from __future__ import annotations

import importlib.util
import re
import time
from abc import abstractmethod
from collections.abc import Callable, Hashable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from .base import DomainRecord, Storage, StorageError, UserRecord

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = ["DIALECTS", "Executor", "Migration", "SqlStorage", "load_migrations",
           "pending_migrations"]

#: Every SQL dialect a migration folder must provide (`migrations/<dialect>/`), one per
#: backend: a module that stores something works on whichever database the operator runs.
DIALECTS: tuple[str, ...] = ("sqlite", "pgsql", "mysql")

Row = Sequence[Any]


class Executor(Protocol):
    """One connection, as seen by the shared queries."""

    async def execute(self, sql: str, *args: Any) -> int:
        """Run one statement; return the number of rows it changed."""
        ...

    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    async def copy_rows(self, table: str, columns: Sequence[str],
                        rows: Sequence[Sequence[Any]]) -> None:
        """Append ``rows`` to ``table`` by the cheapest bulk path of the driver (PostgreSQL's
        COPY, SQLite's prepared INSERT). No conflict handling: a duplicate key fails it."""
        ...

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def script(self, sql: str) -> None:
        """Run several `;`-separated statements without parameters (migrations)."""
        ...


# -- migrations --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def load_migrations(dialect: str, package: str = "suricate.storage") -> list[Migration]:
    """The numbered scripts of `<package>/migrations/<dialect>/`, in order: the core's by
    default, a module's with its package (`ModuleStore.migrations`).

    Numbers must be unique, so a duplicated file is caught here, at start-up. A gap is
    allowed: features are developed side by side and their migrations may land in either
    order (0003 before 0002); each is applied once, whenever it appears, because the runner
    looks at what is recorded, not at the highest number.
    """
    folder = _migrations_folder(package, dialect)
    if not folder.is_dir():
        raise StorageError(f"{package} has no migrations for storage dialect {dialect!r}")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions) or (versions and versions[0] < 1):
        raise StorageError(f"{package} {dialect} migrations must have distinct numbers >= 1, "
                           f"found {versions}")
    return found


def _migrations_folder(package: str, dialect: str) -> Traversable:
    """`<package>/migrations/<dialect>/`. A package installed as files (every install but a
    zip) is read from its folder: importlib.resources would import its readers (zipfile,
    tempfile...) first, a few milliseconds of every start-up for nothing."""
    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec else []:
        folder = Path(location, "migrations", dialect)
        if folder.is_dir():
            return folder
    from importlib import resources  # in a zip, or a folder that is missing (the error)

    return resources.files(package).joinpath("migrations", dialect)


def pending_migrations(applied: set[int], migrations: Sequence[Migration],
                       what: str = "database") -> list[Migration]:
    """Those of ``migrations`` (in order) that ``applied`` lacks. Raises StorageError when the
    database has one newer than the last of them: a newer Suricate upgraded it, and running
    older code against a schema it does not know risks silent data loss."""
    known = migrations[-1].version if migrations else 0
    if applied and max(applied) > known:
        raise StorageError(f"{what} schema version {max(applied)} is newer than this Suricate "
                           f"supports ({known})")
    return [m for m in migrations if m.version not in applied]


# Created outside the numbered migrations: it is what records them. Valid in every dialect
# (MySQL reads DOUBLE PRECISION as DOUBLE), followed by the backend's `table_options`.
_SCHEMA_VERSION_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
)

class SqlStorage(Storage):
    """`Storage` over any SQL database reachable through an `Executor`."""

    dialect: ClassVar[str]
    #: Appended to the CREATE TABLE of the bookkeeping tables (MySQL: engine and charset).
    table_options: ClassVar[str] = ""
    # What `LIMIT ?` takes to mean "no limit": SQLite rejects NULL, PostgreSQL rejects -1.
    _NO_LIMIT: ClassVar[int | None]

    # -- what a backend provides ------------------------------------------------------------

    @abstractmethod
    async def _connect(self) -> None: ...

    @abstractmethod
    async def _disconnect(self) -> None: ...

    @abstractmethod
    def _session(self, *, transaction: bool = False) -> AbstractAsyncContextManager[Executor]:
        """A connection; with `transaction`, everything done on it commits or none of it.

        Backend errors leave it translated to StorageError / StorageUnavailable.
        """

    async def _lock_migrations(self, ex: Executor) -> None:  # noqa: B027 - optional hook
        """Serialize concurrent migrators (server and CLI starting together).

        Called first thing inside the migration transaction. SQLite needs nothing: its
        transactions start with BEGIN IMMEDIATE and so already exclude other writers.
        """

    # -- life cycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        await self._connect()
        try:
            await self._migrate()
        except BaseException:
            await self._disconnect()
            raise

    async def close(self) -> None:
        await self._disconnect()

    async def _migrate(self) -> None:
        migrations = load_migrations(self.dialect)
        query = "SELECT version FROM schema_version"
        async with self._session(transaction=True) as ex:
            await self._lock_migrations(ex)
            await ex.script(_SCHEMA_VERSION_DDL + self.table_options)
            # Every start but the first finds them all applied: one query says so.
            pending = pending_migrations({row[0] for row in await ex.fetch(query)}, migrations)
        # One transaction per migration: a failure leaves the database at the last good
        # version, and the applied set is re-read under the lock so that two processes
        # opening at once do not apply the same script twice.
        for migration in pending:
            async with self._session(transaction=True) as ex:
                await self._lock_migrations(ex)
                applied = {row[0] for row in await ex.fetch(query)}
                if migration not in pending_migrations(applied, migrations):
                    continue  # applied meanwhile by another process
                await ex.script(migration.sql)
                await ex.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    migration.version,
                    migration.name,
                    time.time(),
                )

    async def schema_versions(self) -> list[int]:
        rows = await self._fetch("SELECT version FROM schema_version ORDER BY version")
        return [row[0] for row in rows]

    # -- what a cache of rows needs (mod_roster's rosters) ----------------------------------------

    def commit_stamp(self) -> Hashable | None:
        """None when a cache of this database's rows cannot be kept: other processes or nodes
        write it and nothing tells this one (PostgreSQL, MySQL). Otherwise a value that
        changes whenever a write other than this process's own is committed (SQLite); this
        process's own writes are told through ``watch_user_rows``."""
        return None

    def watch_user_rows(self, tables: Sequence[str],
                        changed: Callable[[str, str], None]) -> None:
        """Have ``changed(server, username)`` called for every row of ``tables`` (keyed by
        server and username) that this process inserts, updates or deletes, whatever the
        statement. Only where ``commit_stamp`` is not None."""
        raise NotImplementedError(f"{self.dialect} cannot watch its rows")

    # -- helpers ------------------------------------------------------------------------------

    async def _execute(self, sql: str, *args: Any) -> int:
        async with self._session() as ex:
            return await ex.execute(sql, *args)

    async def _fetch(self, sql: str, *args: Any) -> list[Row]:
        async with self._session() as ex:
            return await ex.fetch(sql, *args)

    async def _fetch_one(self, sql: str, *args: Any) -> Row | None:
        rows = await self._fetch(sql, *args)
        return rows[0] if rows else None

    # -- users --------------------------------------------------------------------------------

    async def create_user(
        self, server: str, username: str, password: str | None, pass_details: str | None
    ) -> bool:
        # ON CONFLICT DO NOTHING rather than check-then-insert: atomic against a concurrent
        # registration of the same name, and no integrity error to translate.
        changed = await self._execute(
            "INSERT INTO users (server, username, password, pass_details, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (server, username) DO NOTHING",
            server,
            username,
            password,
            pass_details,
            time.time(),
        )
        return changed == 1

    async def get_user(self, server: str, username: str) -> UserRecord | None:
        row = await self._fetch_one(
            "SELECT password, pass_details, created_at FROM users"
            " WHERE server = ? AND username = ?",
            server,
            username,
        )
        if row is None:
            return None
        return UserRecord(server, username, row[0], row[1], float(row[2]))

    async def set_password(
        self, server: str, username: str, password: str | None, pass_details: str | None
    ) -> bool:
        changed = await self._execute(
            "UPDATE users SET password = ?, pass_details = ? WHERE server = ? AND username = ?",
            password,
            pass_details,
            server,
            username,
        )
        return changed > 0

    async def remove_user(self, server: str, username: str,
                          module_tables: Sequence[str] = ()) -> bool:
        async with self._session(transaction=True) as ex:
            # The modules' tables (ModuleStore.user_tables, each feature owns its data) go in
            # the same transaction: an account is removed with all of its data or not at all.
            for table in module_tables:
                await ex.execute(
                    f"DELETE FROM {table} WHERE server = ? AND username = ?", server, username
                )
            changed = await ex.execute(
                "DELETE FROM users WHERE server = ? AND username = ?", server, username
            )
        return changed > 0

    async def list_users(self, server: str, limit: int | None = None, offset: int = 0) -> list[str]:
        if (limit is not None and limit < 0) or offset < 0:
            raise ValueError("limit and offset must not be negative")
        rows = await self._fetch(
            "SELECT username FROM users WHERE server = ? ORDER BY username LIMIT ? OFFSET ?",
            server,
            self._NO_LIMIT if limit is None else limit,
            offset,
        )
        return [row[0] for row in rows]

    async def count_users(self, server: str) -> int:
        row = await self._fetch_one("SELECT COUNT(*) FROM users WHERE server = ?", server)
        return int(row[0]) if row else 0

    async def user_exists(self, server: str, username: str) -> bool:
        row = await self._fetch_one(
            "SELECT 1 FROM users WHERE server = ? AND username = ?", server, username
        )
        return row is not None

    # -- dynamic domains and domain admins ---------------------------------------------------

    async def list_domains(self) -> list[DomainRecord]:
        rows = await self._fetch(
            "SELECT domain, host_type, enabled FROM domain_settings ORDER BY domain"
        )
        return [DomainRecord(row[0], row[1], bool(row[2])) for row in rows]

    async def insert_domain(self, domain: str, host_type: str) -> bool:
        changed = await self._execute(
            "INSERT INTO domain_settings (domain, host_type, enabled, created_at)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (domain) DO NOTHING",
            domain,
            host_type,
            True,
            time.time(),
        )
        return changed == 1

    async def delete_domain(self, domain: str, module_tables: Sequence[str] = ()) -> bool:
        async with self._session(transaction=True) as ex:
            for table in module_tables:
                await ex.execute(f"DELETE FROM {table} WHERE server = ?", domain)
            await ex.execute("DELETE FROM users WHERE server = ?", domain)
            await ex.execute("DELETE FROM domain_admins WHERE domain = ?", domain)
            changed = await ex.execute("DELETE FROM domain_settings WHERE domain = ?", domain)
        return changed > 0

    async def set_domain_enabled(self, domain: str, enabled: bool) -> bool:
        changed = await self._execute(
            "UPDATE domain_settings SET enabled = ? WHERE domain = ?", enabled, domain
        )
        return changed > 0

    async def set_domain_admin(self, domain: str, pass_details: str) -> None:
        await self._execute(
            "INSERT INTO domain_admins (domain, pass_details) VALUES (?, ?)"
            " ON CONFLICT (domain) DO UPDATE SET pass_details = excluded.pass_details",
            domain,
            pass_details,
        )

    async def get_domain_admin(self, domain: str) -> str | None:
        row = await self._fetch_one(
            "SELECT pass_details FROM domain_admins WHERE domain = ?", domain
        )
        return None if row is None else str(row[0])

    async def delete_domain_admin(self, domain: str) -> bool:
        return await self._execute("DELETE FROM domain_admins WHERE domain = ?", domain) > 0
