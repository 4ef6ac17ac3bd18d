"""Fixtures running the one storage suite against every backend.

`storage` is parametrized over sqlite (a file in tmp_path), pgsql (a database created for
this test session on 127.0.0.1:5432 and dropped afterwards; each test starts from an empty
schema) and mysql (the same on the MariaDB at 127.0.0.1:3306, user root). Without the
database server its half is skipped, except under CI=true, where a missing database must
fail the build rather than silently shrink the coverage.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import asyncpg
import pytest

from suricate.storage.mysql import MysqlStorage
from suricate.storage.pgsql import PgsqlStorage
from suricate.storage.sql import SqlStorage
from suricate.storage.sqlite import SqliteStorage

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_USER = "postgres"


@dataclass(frozen=True, slots=True)
class PgDatabase:
    host: str
    port: int
    user: str
    name: str


async def pg_admin(sql: str) -> None:
    """Run ``sql`` on the PostgreSQL server's own database, as its superuser."""
    conn = await asyncpg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres", timeout=5
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def postgresql_unreachable(exc: BaseException) -> NoReturn:
    """Skip the test when PostgreSQL is absent; fail it under CI=true, where an absent
    service is a failure."""
    message = f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT}: {exc}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


async def pg_admin_or_skip(sql: str) -> None:
    """``pg_admin``, skipping the test without PostgreSQL (``postgresql_unreachable``)."""
    try:
        await pg_admin(sql)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        postgresql_unreachable(exc)


@pytest.fixture(scope="session")
def pg_database() -> Iterator[PgDatabase]:
    # Synchronous with its own short-lived loop: the session outlives each test's loop
    # (asyncio_default_fixture_loop_scope = function).
    name = f"suricate_test_{secrets.token_hex(6)}"
    try:
        asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        postgresql_unreachable(exc)
    try:
        yield PgDatabase(PG_HOST, PG_PORT, PG_USER, name)
    finally:
        asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _reset_schema(db: PgDatabase) -> None:
    """Give each test an empty database without paying for CREATE DATABASE each time."""
    conn = await asyncpg.connect(host=db.host, port=db.port, user=db.user, database=db.name)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


# -- MariaDB / MySQL: the session database lives in tests/conftest.py, so that the `backend`
# fixture finds it from any test folder that imports `backend` (re-exported here for those that
# import it by name).
from tests.conftest import MY_HOST, MY_PORT, MY_USER, MyDatabase, _my_reset_schema, my_database  # noqa: E402, F401, I001


async def reset_database(db: PgDatabase | MyDatabase) -> None:
    if isinstance(db, MyDatabase):
        await _my_reset_schema(db)
    else:
        await _reset_schema(db)


def open_sql_storage(db: PgDatabase | MyDatabase, pool_size: int = 4) -> SqlStorage:
    """A (not yet opened) storage on the test database `db`."""
    if isinstance(db, MyDatabase):
        return MysqlStorage(host=db.host, port=db.port, database=db.name, username=db.user,
                            pool_size=pool_size)
    return PgsqlStorage(host=db.host, port=db.port, database=db.name, username=db.user,
                        pool_size=pool_size)


def rdbms_pool_toml(db: PgDatabase | MyDatabase, workers: int = 4) -> str:
    """`[outgoing_pools.rdbms.default]` of a server on `db`, as an operator writes it."""
    driver = "mysql" if isinstance(db, MyDatabase) else "pgsql"
    return f"""
[outgoing_pools.rdbms.default]
workers = {workers}

[outgoing_pools.rdbms.default.connection]
driver = "{driver}"
host = "{db.host}"
port = {db.port}
database = "{db.name}"
username = "{db.user}"
password = ""
"""


# A factory, not just an instance: several tests open a second storage on the same
# database, as the CLI does while the server runs.
StorageFactory = Callable[[], SqlStorage]


@pytest.fixture(params=["sqlite", pytest.param("pgsql", marks=pytest.mark.postgres),
                        pytest.param("mysql", marks=pytest.mark.mysql)])
def backend(request: pytest.FixtureRequest) -> PgDatabase | MyDatabase | None:
    """None for sqlite, the session database for pgsql and mysql.

    Synchronous on purpose: the session fixture must be set up outside the test's running
    loop, since it runs its own with asyncio.run().
    """
    if request.param == "sqlite":
        return None
    if request.param == "mysql":
        my: MyDatabase = request.getfixturevalue("my_database")
        return my
    db: PgDatabase = request.getfixturevalue("pg_database")
    return db


@pytest.fixture
async def make_storage(backend: PgDatabase | MyDatabase | None,
                       tmp_path: Path) -> AsyncIterator[StorageFactory]:
    made: list[SqlStorage] = []
    if backend is None:
        path = tmp_path / "db" / "suricate.db"

        def build() -> SqlStorage:
            made.append(SqliteStorage(path))
            return made[-1]

    else:
        db = backend
        await reset_database(db)

        def build() -> SqlStorage:
            made.append(open_sql_storage(db))
            return made[-1]

    yield build
    for storage in made:
        await storage.close()


@pytest.fixture
async def storage(make_storage: StorageFactory) -> SqlStorage:
    opened = make_storage()
    await opened.open()
    return opened
