"""SQLite backend: the embedded default, zero set-up (DESIGN.md §2.8).

Calls run synchronously inside the coroutines, on the event loop thread. A query on a
local file with a warm page cache takes microseconds, less than handing it to a thread
pool and back (tens of µs plus a loop wake-up), and one connection used from one thread
needs no locking inside sqlite3. The cost is that a query waiting on another process's
write lock (the CLI writing while the server runs) stalls the loop for up to
`busy_timeout`; CLI transactions are short, so the wait is milliseconds in practice.

Because nothing inside a session awaits anything that really suspends, a transaction
runs to completion without another task interleaving on the shared connection. The
asyncio lock in `_session` keeps that true should a real suspension point ever be added.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

from .base import StorageError, StorageUnavailable
from .sql import Executor, Row, SqlStorage

__all__ = ["SqliteStorage"]

# DELETE ... RETURNING and INSERT ... ON CONFLICT DO UPDATE need SQLite 3.35 (2021).
_MIN_SQLITE = (3, 35, 0)

# Result codes meaning "the database is there but cannot be used right now"; anything else
# (constraint, syntax, misuse) is a bug or bad data, not an outage.
_UNAVAILABLE = frozenset(
    {
        "SQLITE_BUSY",
        "SQLITE_LOCKED",
        "SQLITE_CANTOPEN",
        "SQLITE_FULL",
        "SQLITE_READONLY",
        "SQLITE_PROTOCOL",
        "SQLITE_NOLFS",
        "SQLITE_AUTH",
    }
)


def _translate(exc: sqlite3.Error, path: str | None = None) -> StorageError:
    """``path``: the database file, named when opening it failed ("unable to open database
    file" alone does not say which, nor that its folder may be read-only)."""
    name = getattr(exc, "sqlite_errorname", None) or ""
    where = f"sqlite {path}" if path else "sqlite"
    if name in _UNAVAILABLE or name.startswith(("SQLITE_IOERR", "SQLITE_BUSY", "SQLITE_CANTOPEN")):
        return StorageUnavailable(f"{where}: {exc}")
    return StorageError(f"{where}: {exc}")


def _statements(script: str) -> Iterator[str]:
    """Split a migration script into statements for `execute`.

    `executescript` would be simpler but commits any open transaction first, and a
    migration must apply together with its schema_version row or not at all. Lines are
    gathered until sqlite3 says the text is a complete statement, so quotes, comments and
    trigger bodies are understood; a statement must end at the end of a line.
    """
    buffer: list[str] = []
    for line in script.splitlines(keepends=True):
        buffer.append(line)
        text = "".join(buffer)
        if sqlite3.complete_statement(text):
            yield text
            buffer.clear()
    rest = "".join(buffer)
    if rest.strip():
        # Trailing comments are harmless; a trailing statement without `;` still runs.
        yield rest


class _SqliteExecutor:
    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        return self._conn.execute(sql, args).rowcount

    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    async def copy_rows(self, table: str, columns: Sequence[str],
                        rows: Sequence[Sequence[Any]]) -> None:
        marks = ", ".join("?" * len(columns))
        self._conn.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return self._conn.execute(sql, args).fetchall()

    async def script(self, sql: str) -> None:
        for statement in _statements(sql):
            self._conn.execute(statement)


class SqliteStorage(SqlStorage):
    """Storage in one SQLite file (or `:memory:`)."""

    dialect: ClassVar[str] = "sqlite"
    inline: ClassVar[bool] = True  # see Storage.inline: queries run on the loop thread
    _NO_LIMIT: ClassVar[int | None] = -1

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_ms: int = 5000) -> None:
        self.path = str(path)
        self.busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._executor: _SqliteExecutor | None = None
        self._lock = asyncio.Lock()
        # watch_user_rows: what to tell of each watched table's writes, set up again on each
        # connection (temporary triggers live with their connection); the connection's number
        # is part of the commit stamp, so a cache made over an earlier one is dropped.
        self._watches: list[tuple[tuple[str, ...], Callable[[str, str], None]]] = []
        self._connections = 0

    async def _connect(self) -> None:
        if self._conn is not None:
            return
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise StorageError(
                f"SQLite {sqlite3.sqlite_version} is too old, "
                f"{'.'.join(map(str, _MIN_SQLITE))} or newer is needed"
            )
        in_memory = self.path == ":memory:" or self.path.startswith("file:")
        try:
            if not in_memory:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit BEGIN from the sqlite3 module; transactions
            # are opened explicitly in _session, so single statements autocommit.
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                timeout=self.busy_timeout_ms / 1000,
                uri=self.path.startswith("file:"),
            )
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc
        except OSError as exc:
            raise StorageUnavailable(f"sqlite: cannot create {self.path}: {exc}") from exc
        try:
            # WAL: readers do not block the writer nor it them, so the CLI can write while
            # the server reads. synchronous=NORMAL is safe in WAL mode (no corruption; a
            # power cut may lose the last commits) and saves an fsync per commit.
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            # Another process (the CLI) may hold the write lock; wait rather than fail.
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            # Off by default in SQLite; roster_groups relies on ON DELETE CASCADE.
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            conn.close()
            raise _translate(exc, self.path) from exc
        self._conn = conn
        self._executor = _SqliteExecutor(conn)
        self._connections += 1
        for number, (tables, changed) in enumerate(self._watches):
            self._install_watch(conn, number, tables, changed)

    def commit_stamp(self) -> Hashable | None:
        """(connection number, ``PRAGMA data_version``): the version changes when another
        connection (the CLI, another worker or process) commits to the database file, never
        for this connection's own commits (which ``watch_user_rows`` reports)."""
        conn = self._conn
        if conn is None:
            return None
        try:
            row = conn.execute("PRAGMA data_version").fetchone()
        except sqlite3.Error:
            return None  # the database cannot be read now: cache nothing
        return (self._connections, row[0])

    def watch_user_rows(self, tables: Sequence[str],
                        changed: Callable[[str, str], None]) -> None:
        """Temporary triggers on ``tables`` call ``changed`` (a SQL function) for each row this
        connection writes: the store's own statements, an account's or a domain's removal, an
        import, a rolled-back transaction too (a cache dropped for nothing, never kept
        wrong)."""
        watch = (tuple(tables), changed)
        self._watches.append(watch)
        if self._conn is not None:
            self._install_watch(self._conn, len(self._watches) - 1, *watch)

    @staticmethod
    def _install_watch(conn: sqlite3.Connection, number: int, tables: tuple[str, ...],
                       changed: Callable[[str, str], None]) -> None:
        function = f"suricate_rows_changed_{number}"

        def call(server: str, username: str) -> None:
            changed(server, username)

        try:
            conn.create_function(function, 2, call)
            for table in tables:
                for event, rows in (("INSERT", ("NEW",)), ("UPDATE", ("OLD", "NEW")),
                                    ("DELETE", ("OLD",))):
                    calls = ", ".join(f"{function}({r}.server, {r}.username)" for r in rows)
                    conn.execute(
                        f"CREATE TEMP TRIGGER IF NOT EXISTS {function}_{table}_{event.lower()}"
                        f" AFTER {event} ON main.{table} BEGIN SELECT {calls}; END")
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    async def _disconnect(self) -> None:
        conn, self._conn, self._executor = self._conn, None, None
        if conn is not None:
            conn.close()

    async def _fetch(self, sql: str, *args: Any) -> list[Row]:
        # A read runs inline on the loop thread (``inline``): when no transaction holds the
        # connection (the lock is free) it needs neither the lock nor the context manager
        # around it, ~4 µs of a 10 µs read by primary key (one per login).
        conn = self._conn
        if conn is not None and not self._lock.locked():
            try:
                return conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise _translate(exc) from exc
        return await super()._fetch(sql, *args)

    @asynccontextmanager
    async def _session(self, *, transaction: bool = False) -> AsyncIterator[Executor]:
        conn, executor = self._conn, self._executor
        if conn is None or executor is None:
            raise StorageError("sqlite storage is not open")
        async with self._lock:
            try:
                if not transaction:
                    yield executor
                    return
                # IMMEDIATE takes the write lock up front: a deferred transaction that
                # reads then writes can fail with SQLITE_BUSY without waiting when another
                # connection committed in between (WAL snapshot upgrade).
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield executor
                except BaseException:
                    # SQLite rolls back by itself on some errors (SQLITE_FULL, IOERR ...).
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise _translate(exc) from exc
