"""PostgreSQL backend: the production choice, through an asyncpg connection pool.

The queries are the shared ones of `sql.py`; this module only translates their `?`
placeholders to PostgreSQL's `$n`, runs them on pooled connections and maps driver
errors to StorageError / StorageUnavailable. With `connection.tls` the connections are
encrypted (PostgreSQL's SSLRequest, then TLS), as MongooseIM 6.4's pgsql pool does.
"""

from __future__ import annotations

import functools
import logging
import re
import ssl
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import asyncpg

from suricate.config.pool_tls import pool_client_context

from .acquire import acquire_in_task
from .base import StorageError, StorageUnavailable
from .sql import Executor, Row, SqlStorage

__all__ = ["PgsqlStorage", "client_tls_context"]

log = logging.getLogger("suricate.storage")


def client_tls_context(tls: Mapping[str, Any]) -> ssl.SSLContext:
    """``[outgoing_pools.rdbms.*.connection.tls]`` as the context of a client connection.

    As 6.4 (OTP ssl under epgsql): the server's name is checked only with
    ``server_name_indication.protocol = "https"`` (the rest: ``pool_client_context``)."""
    sni = tls.get("server_name_indication") or {}
    return pool_client_context(tls, check_hostname=sni.get("protocol") == "https")


# pg_advisory_xact_lock key held while migrating ("Suricate" in ASCII); it is released by
# the end of the transaction, so a crashed migrator cannot leave it behind.
_MIGRATION_LOCK_KEY = 0x5375726963617465

# Errors that mean the server is down, restarting, overloaded or unreachable, as opposed
# to a bad query or bad data.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,  # connect or pool acquire timed out
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.exceptions.OperatorInterventionError,  # 57xxx: shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # 53xxx: too many connections, disk full
)
_FAILED: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


def _translate(exc: BaseException, where: str) -> StorageError:
    if isinstance(exc, _UNAVAILABLE):
        return StorageUnavailable(f"pgsql {where}: {exc}")
    # Wrong password, unknown database, bad query: a configuration error or a bug.
    return StorageError(f"pgsql {where}: {exc}")


_PLACEHOLDER = re.compile(r"\?")


# A memo of a pure function, not server state: the shared SQL is a fixed, small set of
# strings, so each is rewritten once per process.
@functools.lru_cache(maxsize=1024)
def to_pg(sql: str) -> str:
    """`?, ?` -> `$1, $2`. The shared SQL holds no `?` inside string literals."""
    numbers = iter(range(1, sql.count("?") + 1))
    return _PLACEHOLDER.sub(lambda _: f"${next(numbers)}", sql)


def _rowcount(status: str) -> int:
    """asyncpg returns the command tag ("INSERT 0 1", "DELETE 3"); the count ends it."""
    tail = status.rpartition(" ")[2]
    return int(tail) if tail.isdigit() else 0


class _PgExecutor:
    __slots__ = ("_conn",)

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> int:
        return _rowcount(await self._conn.execute(to_pg(sql), *args))

    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        await self._conn.executemany(to_pg(sql), rows)

    async def copy_rows(self, table: str, columns: Sequence[str],
                        rows: Sequence[Sequence[Any]]) -> None:
        # COPY ... FROM STDIN in the binary format: asyncpg encodes the records in C, one
        # message stream, no statement per row and no bind-parameter limit.
        await self._conn.copy_records_to_table(table, records=rows, columns=list(columns))

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        # asyncpg Records index by position like tuples, which is all the shared code uses.
        rows: list[Row] = await self._conn.fetch(to_pg(sql), *args)
        return rows

    async def script(self, sql: str) -> None:
        # Without arguments asyncpg uses the simple query protocol, which accepts several
        # statements at once, inside the surrounding transaction.
        await self._conn.execute(sql)


async def _nothing_to_reset(conn: Any) -> None:
    """What asyncpg's pool does to a connection given back, after rolling back a transaction
    left open (which it still does): by default one more query, and so one more round trip
    per storage step (``pg_advisory_unlock_all()``, ``CLOSE ALL``, ``UNLISTEN *``, ``RESET
    ALL``). Suricate leaves none of that session state: its one advisory lock is
    transaction-scoped, it declares no cursors, listens to nothing and sets no session
    variables. With the database 2 ms away a step took 9.3 ms, now ~4.8
    (docs/storage.md)."""


class PgsqlStorage(SqlStorage):
    """Storage in a PostgreSQL database."""

    dialect: ClassVar[str] = "pgsql"
    _NO_LIMIT: ClassVar[int | None] = None

    def __init__(
        self,
        *,
        host: str = "localhost",
        port: int = 5432,
        database: str,
        username: str,
        password: str | None = None,
        pool_size: int = 10,
        connect_timeout: float = 10.0,
        acquire_timeout: float = 10.0,
        tls: Mapping[str, Any] | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        #: connection.tls (None: plain TCP); ``required`` decides whether a server that
        #: declines TLS is used without it.
        self.tls = tls
        self.host = host
        self.port = port
        self.database = database
        self.username = username
        self.password = password
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        # Bounded so that an exhausted pool turns into StorageUnavailable, not a hang.
        self.acquire_timeout = acquire_timeout
        self._pool: Any = None

    def _where(self) -> str:
        return f"{self.username}@{self.host}:{self.port}/{self.database}"

    async def _connect(self) -> None:
        if self._pool is not None:
            return
        context = None if self.tls is None else client_tls_context(self.tls)
        required = bool(self.tls and self.tls.get("required"))
        try:
            try:
                self._pool = await self._create_pool(context)
            except ConnectionError as exc:
                # The server answered the SSLRequest with 'N' (PostgreSQL protocol, "SSL
                # Session Encryption"). 6.4's tls.required = false is epgsql's ssl = true:
                # use TLS where the server offers it, plain TCP otherwise.
                if context is None or required or "rejected SSL upgrade" not in str(exc):
                    raise
                log.warning("pgsql_without_tls where=%s: the server does not offer TLS "
                            "(set connection.tls.required = true to refuse it)", self._where())
                self._pool = await self._create_pool(None)
        except (*_UNAVAILABLE, *_FAILED) as exc:
            raise _translate(exc, self._where()) from exc

    async def _create_pool(self, context: ssl.SSLContext | None) -> Any:
        return await asyncpg.create_pool(
            host=self.host,
            port=self.port,
            user=self.username,
            password=self.password,
            database=self.database,
            # One connection up front proves the settings at start-up; the rest are
            # opened on demand.
            min_size=1,
            max_size=self.pool_size,
            timeout=self.connect_timeout,
            # An SSLContext is asyncpg's sslmode "require": TLS or no connection.
            ssl=context,
            reset=_nothing_to_reset,
        )

    async def _disconnect(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _lock_migrations(self, ex: Executor) -> None:
        # Transaction-scoped: released by the COMMIT, so a pooled connection keeps no lock
        # (``_nothing_to_reset``).
        await ex.execute("SELECT pg_advisory_xact_lock(?)", _MIGRATION_LOCK_KEY)

    @asynccontextmanager
    async def _session(self, *, transaction: bool = False) -> AsyncIterator[Executor]:
        pool = self._pool
        if pool is None:
            raise StorageError("pgsql storage is not open")
        try:
            # In a task of its own: the step may be running outside any (storage/acquire.py).
            conn = await acquire_in_task(pool.acquire(timeout=self.acquire_timeout),
                                         pool.release)
            try:
                if transaction:
                    async with conn.transaction():
                        yield _PgExecutor(conn)
                else:
                    yield _PgExecutor(conn)
            finally:
                await pool.release(conn)
        except (*_UNAVAILABLE, *_FAILED) as exc:
            raise _translate(exc, self._where()) from exc
