"""MySQL / MariaDB backend (`driver = "mysql"`, as in MongooseIM 6.4), through an asyncmy pool.

The queries are the shared ones of `sql.py` and of the modules' stores, written once with `?`
placeholders in the SQL that SQLite and PostgreSQL share. This module spells them the MySQL
way (`to_mysql`), runs them on pooled InnoDB connections and maps driver errors to
StorageError / StorageUnavailable:

- `?` becomes the driver's `%s` (and a literal `%` is doubled for its `%`-formatting);
- `INSERT ... ON CONFLICT (k) DO NOTHING` becomes `... ON DUPLICATE KEY UPDATE k = k`: a
  duplicate is left alone and counted as 0 changed rows, as PostgreSQL does. Not INSERT
  IGNORE, which also turns errors (a value too long for its column) into warnings and
  stores the truncated row;
- `ON CONFLICT (k) DO UPDATE SET c = excluded.c` becomes `ON DUPLICATE KEY UPDATE
  c = VALUES(c)` on MariaDB; on MySQL 8.0.19+, which deprecates VALUES() (a warning, and so
  a SHOW WARNINGS round trip, per statement), `VALUES (...) AS excluded ON DUPLICATE KEY
  UPDATE c = excluded.c`, its row alias;
- `RETURNING` is MariaDB's own (DELETE since 10.0, INSERT since 10.5); on MySQL, which has
  none, `DELETE ... RETURNING` is a `SELECT ... FOR UPDATE` then the `DELETE` in one
  transaction, and `INSERT ... RETURNING id` reads LAST_INSERT_ID() (the cursor's lastrowid);
- `'\\'` (an ESCAPE clause) is spelt `'\\\\'`, backslash being MySQL's string escape;
- `CAST(? AS BIGINT)` is `CAST(? AS SIGNED)` (and TEXT is CHAR).

An UPDATE reports the rows it matched ("Rows matched" of the server's reply), not only those
whose value changed, which is what SQLite and PostgreSQL count and what `set_password` and
friends rely on; an upsert counts 1 per row, inserted or updated, as PostgreSQL does.
Connections run in utf8mb4, strict SQL mode (too long is an error, never a truncation) and
READ COMMITTED (PostgreSQL's default isolation, fewer gap locks than REPEATABLE READ).

Driver: asyncmy rather than aiomysql. Both install on Python 3.11 here; asyncmy ships a
compiled (Cython) protocol as a manylinux wheel, so row decoding does not cost the event
loop pure-Python time, is released more recently, and keeps aiomysql's pool API.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import asyncmy
from asyncmy import errors as my_errors

from .base import StorageError, StorageUnavailable
from .in_task import in_a_task
from .sql import Executor, Row, SqlStorage

__all__ = ["MysqlStorage", "MysqlStatement", "to_mysql"]

# Held (GET_LOCK, a named lock of the server) while migrating: server and CLI starting
# together must not both apply a script.
_MIGRATION_LOCK = "suricate_migrations"
_MIGRATION_LOCK_WAIT = 60

# Server error numbers meaning "down, restarting, overloaded or busy", as opposed to a bad
# query or bad data: 1040 too many connections, 1053 server shutdown, 1205 lock wait
# timeout, 1213 deadlock (the transaction was rolled back: retrying may work), 2002/2003
# cannot connect, 2006 server has gone away, 2013 lost connection during query.
_UNAVAILABLE_ERRNO = frozenset({1040, 1053, 1205, 1213, 2002, 2003, 2006, 2013})
_ER_LOCK_DEADLOCK = 1213
_DEADLOCK_RETRIES = 5


def _translate(exc: BaseException, where: str) -> StorageError:
    if isinstance(exc, OSError | TimeoutError):
        return StorageUnavailable(f"mysql {where}: {exc}")
    errno = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    if errno in _UNAVAILABLE_ERRNO:
        return StorageUnavailable(f"mysql {where}: {exc}")
    # Wrong password, unknown database, bad query, a value longer than its column.
    return StorageError(f"mysql {where}: {exc}")


_ERRORS: tuple[type[BaseException], ...] = (OSError, TimeoutError, my_errors.MySQLError)


# -- spelling the shared SQL --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MysqlStatement:
    """A shared statement spelt for MySQL."""

    sql: str
    # `RETURNING <cols>` cut from the statement (None: there was none), for a server
    # without it (MySQL) to emulate.
    returning: str | None = None
    # The table and WHERE clause of a `DELETE ... RETURNING`, to emulate it.
    delete_table: str | None = None
    delete_where: str | None = None
    # How the changed-row count is read: "rows" (affected rows), "matched" (an UPDATE:
    # matched rows, changed or not) or "upsert" (one per row of VALUES).
    count: str = "rows"
    # The number of rows an upsert's VALUES holds.
    upsert_rows: int = 0


_ON_CONFLICT_NOTHING = re.compile(r"\s+ON\s+CONFLICT\s*(\([^)]*\))?\s*DO\s+NOTHING", re.I)
_ON_CONFLICT_UPDATE = re.compile(r"\s+ON\s+CONFLICT\s*\([^)]*\)\s*DO\s+UPDATE\s+SET\s+", re.I)
_EXCLUDED = re.compile(r"\bexcluded\.(\w+)", re.I)
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+\w+\s*\(\s*(\w+)", re.I)
_UPDATE = re.compile(r"^\s*UPDATE\b", re.I)
_VALUES_ROW = re.compile(r"\(\s*%s")
_ROWS_MATCHED = re.compile(rb"Rows matched: (\d+)")
_RETURNING = re.compile(r"\s+RETURNING\s+(.+?)\s*;?\s*$", re.I | re.S)
_DELETE = re.compile(r"^\s*DELETE\s+FROM\s+(\w+)(?:\s+WHERE\s+(.+))?$", re.I | re.S)
_BACKSLASH_LITERAL = re.compile(r"'\\'")
# CAST target types: MySQL spells the integer and text ones its own way.
_CAST_TYPES = {"BIGINT": "SIGNED", "INTEGER": "SIGNED", "TEXT": "CHAR",
               "DOUBLE PRECISION": "DOUBLE"}
_CAST = re.compile(r"\bAS\s+(BIGINT|INTEGER|TEXT|DOUBLE PRECISION)\s*\)", re.I)


@functools.lru_cache(maxsize=2048)
def to_mysql(sql: str, row_alias: bool = False) -> MysqlStatement:
    """Spell one shared statement (SQLite/PostgreSQL syntax, `?` placeholders) for MySQL;
    `row_alias`: the server has MySQL 8.0.19's `INSERT ... AS alias` (MariaDB has not).

    A memo of a pure function: the shared SQL is a fixed set of strings. The shared SQL
    holds no `?` inside string literals (as for `pgsql.to_pg`).
    """
    text = sql.replace("%", "%%").replace("?", "%s")
    text = _BACKSLASH_LITERAL.sub(r"'\\\\'", text)
    text = _CAST.sub(lambda m: f"AS {_CAST_TYPES[m[1].upper()]})", text)
    count = "matched" if _UPDATE.match(text) else "rows"
    upsert_rows = 0
    if _ON_CONFLICT_NOTHING.search(text):
        insert = _INSERT.match(text)
        if insert is None:
            raise StorageError(f"mysql: ON CONFLICT DO NOTHING outside INSERT INTO t (...): {sql}")
        # A no-op update of the first column: MySQL counts 0 for a row left as it was.
        column = insert[1]
        text = _ON_CONFLICT_NOTHING.sub(
            lambda _: f" ON DUPLICATE KEY UPDATE {column} = {column}", text, count=1)
    elif _ON_CONFLICT_UPDATE.search(text):
        if row_alias:
            text = _ON_CONFLICT_UPDATE.sub(" AS excluded ON DUPLICATE KEY UPDATE ", text,
                                           count=1)
        else:
            text = _ON_CONFLICT_UPDATE.sub(" ON DUPLICATE KEY UPDATE ", text, count=1)
            text = _EXCLUDED.sub(r"VALUES(\1)", text)
        values = text.upper().find(" VALUES ")
        count, upsert_rows = "upsert", len(_VALUES_ROW.findall(text, values if values > 0 else 0))
    returning = None
    delete_table = delete_where = None
    match = _RETURNING.search(text)
    if match is not None:
        returning = match[1]
        text = text[: match.start()]
        delete = _DELETE.match(text)
        if delete is not None:
            delete_table, delete_where = delete[1], delete[2]
    return MysqlStatement(text, returning, delete_table, delete_where, count, upsert_rows)


def _version(server_version: str) -> tuple[int, ...]:
    """"8.0.36-0ubuntu0.22.04.1" -> (8, 0, 36)."""
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", server_version)
    return tuple(int(part) for part in match.groups()) if match else (0,)


def split_script(script: str) -> list[str]:
    """The statements of a migration: `--` comments dropped, split at `;` ending a line.

    Migrations hold no `;` inside literals; running statements one by one (rather than the
    protocol's multi-statement mode) makes an error name the statement that failed.
    """
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    statements = re.split(r";\s*(?:\n|$)", "\n".join(lines))
    return [s.strip() for s in statements if s.strip()]


class _MyExecutor:
    __slots__ = ("_conn", "_in_transaction", "_native_returning", "_row_alias", "locks")

    def __init__(self, conn: Any, *, native_returning: bool, in_transaction: bool,
                 row_alias: bool = False) -> None:
        self._conn = conn
        self._native_returning = native_returning
        self._row_alias = row_alias
        self._in_transaction = in_transaction
        # Named locks taken on this connection, released when the session ends.
        self.locks: list[str] = []

    async def _run(self, sql: str, args: Sequence[Any],
                   count: str = "rows") -> tuple[int, list[Row], int]:
        async with self._conn.cursor() as cur:
            await cur.execute(sql, tuple(args))
            rows = list(await cur.fetchall()) if cur.description else []
            changed = cur.rowcount
            if count == "matched":
                # "Rows matched: 1  Changed: 0  Warnings: 0" in the OK packet's message.
                info = getattr(cur._result, "message", None) or b""
                found = _ROWS_MATCHED.search(info if isinstance(info, bytes) else info.encode())
                if found is not None:
                    changed = int(found[1])
            return changed, rows, cur.lastrowid

    async def _statement(self, sql: str, args: Sequence[Any]) -> tuple[int, list[Row]]:
        if self._in_transaction:
            return await self._statement_once(sql, args)
        # On its own (autocommit, or the emulation's own transaction) a statement that InnoDB
        # picked as a deadlock victim was rolled back whole and can simply run again, which
        # is InnoDB's documented answer; inside a caller's transaction the caller's work was
        # rolled back too, so the error goes up (as StorageUnavailable).
        for attempt in range(_DEADLOCK_RETRIES):
            try:
                return await self._statement_once(sql, args)
            except my_errors.MySQLError as exc:
                if not exc.args or exc.args[0] != _ER_LOCK_DEADLOCK \
                        or attempt == _DEADLOCK_RETRIES - 1:
                    raise
                await asyncio.sleep(0.001 * (attempt + 1))
        raise AssertionError("unreachable")

    async def _statement_once(self, sql: str, args: Sequence[Any]) -> tuple[int, list[Row]]:
        st = to_mysql(sql, self._row_alias)
        if st.returning is None:
            count, rows, _ = await self._run(st.sql, args, st.count)
            if st.count == "upsert":
                # MySQL counts 1 per insert, 2 per update and 0 per row already equal;
                # PostgreSQL (and so the callers) 1 per row.
                count = st.upsert_rows
            return count, rows
        if self._native_returning:
            _, rows, _ = await self._run(f"{st.sql} RETURNING {st.returning}", args)
            return len(rows), rows
        if st.delete_table is not None:
            return await self._emulated_delete_returning(st, args)
        if _INSERT.match(st.sql):
            # MySQL's way to the id an insert generated: LAST_INSERT_ID(), which the protocol
            # hands back as the cursor's lastrowid. Only a single AUTO_INCREMENT column fits.
            if "," in st.returning:
                raise StorageError("mysql: INSERT ... RETURNING more than the generated id")
            count, _, last_id = await self._run(st.sql, args)
            return count, [(last_id,)] if count else []
        raise StorageError(f"mysql: RETURNING is not supported here: {sql}")

    async def _emulated_delete_returning(self, st: MysqlStatement,
                                         args: Sequence[Any]) -> tuple[int, list[Row]]:
        where = f" WHERE {st.delete_where}" if st.delete_where else ""
        select = f"SELECT {st.returning} FROM {st.delete_table}{where} FOR UPDATE"
        own = not self._in_transaction
        if own:
            # REPEATABLE READ for this one transaction: there a locking read takes next-key
            # locks, so no row matching the WHERE can be inserted between the SELECT and the
            # DELETE (under READ COMMITTED the DELETE would remove it unreturned: an offline
            # message stored at that moment would be lost).
            await self._run("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ", ())
            await self._conn.begin()
        try:
            # The rows are locked by the SELECT until the DELETE commits: a concurrent
            # caller waits, then finds them gone, so each row is returned once.
            _, rows, _ = await self._run(select, args)
            await self._run(st.sql, args)
            if own:
                await self._conn.commit()
        except BaseException:
            if own:
                await self._conn.rollback()
            raise
        return len(rows), rows

    async def execute(self, sql: str, *args: Any) -> int:
        return (await self._statement(sql, args))[0]

    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        st = to_mysql(sql, self._row_alias)
        if st.returning is not None:
            raise StorageError("mysql: execute_many with RETURNING")
        async with self._conn.cursor() as cur:
            await cur.executemany(st.sql, [tuple(row) for row in rows])

    async def copy_rows(self, table: str, columns: Sequence[str],
                        rows: Sequence[Sequence[Any]]) -> None:
        # MySQL's bulk path is the multi-row INSERT the driver's executemany builds for a
        # plain INSERT ... VALUES (LOAD DATA needs a file or local_infile, off by default).
        marks = ", ".join(["%s"] * len(columns))
        async with self._conn.cursor() as cur:
            await cur.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                [tuple(row) for row in rows])

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return (await self._statement(sql, args))[1]

    async def script(self, sql: str) -> None:
        async with self._conn.cursor() as cur:
            # Migrations are re-runnable (CREATE TABLE IF NOT EXISTS): the server's note
            # "table already exists" is expected, not worth a warning in the operator's log.
            await cur.execute("SET SESSION sql_notes = 0")
            try:
                for statement in split_script(sql):
                    # No arguments: the driver does no %-formatting, % stays as written.
                    await cur.execute(statement)
            finally:
                await cur.execute("SET SESSION sql_notes = 1")


class MysqlStorage(SqlStorage):
    """Storage in a MySQL (8.0+) or MariaDB (10.5+) database, InnoDB tables in utf8mb4."""

    dialect: ClassVar[str] = "mysql"
    table_options: ClassVar[str] = " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    # MySQL has no "LIMIT ALL"; its manual's answer is the largest BIGINT UNSIGNED.
    _NO_LIMIT: ClassVar[int | None] = 18446744073709551615

    def __init__(
        self,
        *,
        host: str = "localhost",
        port: int = 3306,
        database: str,
        username: str,
        password: str | None = None,
        pool_size: int = 10,
        connect_timeout: float = 10.0,
        acquire_timeout: float = 10.0,
        native_returning: bool | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        self.host = host
        self.port = port
        self.database = database
        self.username = username
        self.password = password
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        # Bounded so that an exhausted pool turns into StorageUnavailable, not a hang.
        self.acquire_timeout = acquire_timeout
        # None: decided from the server (MariaDB has RETURNING, MySQL has not); a test
        # forces False to run the MySQL emulation on MariaDB.
        self.native_returning = native_returning
        self.server_version = ""
        self.row_alias = False
        self._pool: Any = None

    def _where(self) -> str:
        return f"{self.username}@{self.host}:{self.port}/{self.database}"

    async def _connect(self) -> None:
        if self._pool is not None:
            return
        try:
            self._pool = await asyncmy.create_pool(
                host=self.host,
                port=self.port,
                user=self.username,
                password=self.password or "",
                db=self.database,
                charset="utf8mb4",
                autocommit=True,
                # Strict: a value too long for its column is an error, never truncated.
                # asyncmy pastes this after `SET sql_mode=` as is, hence the quotes.
                sql_mode="'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION,ERROR_FOR_DIVISION_BY_ZERO'",
                init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                connect_timeout=self.connect_timeout,
                # One connection up front proves the settings at start-up; the rest are
                # opened on demand.
                minsize=1,
                maxsize=self.pool_size,
            )
            async with self._acquire() as conn:
                self.server_version = str(conn.get_server_info())
        except _ERRORS as exc:
            await self._disconnect()
            raise _translate(exc, self._where()) from exc
        mariadb = "mariadb" in self.server_version.lower()
        if self.native_returning is None:
            self.native_returning = mariadb
        self.row_alias = not mariadb and _version(self.server_version) >= (8, 0, 19)

    async def _disconnect(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
            await pool.wait_closed()

    @asynccontextmanager
    async def _acquire(self) -> AsyncIterator[Any]:
        pool = self._pool
        if pool is None:
            raise StorageError("mysql storage is not open")
        conn = await in_a_task(self._acquire_bounded(pool))  # suricate/storage/in_task.py
        try:
            yield conn
        finally:
            pool.release(conn)

    async def _acquire_bounded(self, pool: Any) -> Any:
        async with asyncio.timeout(self.acquire_timeout):
            return await pool.acquire()

    async def _lock_migrations(self, ex: Executor) -> None:
        assert isinstance(ex, _MyExecutor)
        row = await ex.fetch("SELECT GET_LOCK(?, ?)", _MIGRATION_LOCK, _MIGRATION_LOCK_WAIT)
        if not row or row[0][0] != 1:
            raise StorageUnavailable(
                f"mysql {self._where()}: another process holds the migration lock")
        ex.locks.append(_MIGRATION_LOCK)

    @asynccontextmanager
    async def _session(self, *, transaction: bool = False) -> AsyncIterator[Executor]:
        try:
            async with self._acquire() as conn:
                ex = _MyExecutor(conn, native_returning=bool(self.native_returning),
                                 in_transaction=transaction, row_alias=self.row_alias)
                try:
                    if transaction:
                        # InnoDB: everything until COMMIT is one unit. DDL commits
                        # implicitly in MySQL, which is why migrations are idempotent
                        # (CREATE TABLE IF NOT EXISTS with its indexes inline).
                        await conn.begin()
                        try:
                            yield ex
                        except BaseException:
                            await conn.rollback()
                            raise
                        await conn.commit()
                    else:
                        yield ex
                finally:
                    # A broken connection has lost its locks with it; nothing to release.
                    with contextlib.suppress(*_ERRORS):
                        for name in ex.locks:
                            await ex.fetch("SELECT RELEASE_LOCK(?)", name)
        except _ERRORS as exc:
            raise _translate(exc, self._where()) from exc
