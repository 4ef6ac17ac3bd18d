"""Fixtures running the one storage suite against every backend.

`storage` is parametrized over sqlite (a file in tmp_path) and pgsql (a database created
for this test session on 127.0.0.1:5432 and dropped afterwards; each test starts from an
empty schema). Without PostgreSQL the pgsql half is skipped, except under CI=true, where
a missing database must fail the build rather than silently halve the coverage.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

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


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, database="postgres", timeout=5
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[PgDatabase]:
    # Synchronous with its own short-lived loop: the session outlives each test's loop
    # (asyncio_default_fixture_loop_scope = function).
    name = f"suricate_test_{secrets.token_hex(6)}"
    try:
        asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL not reachable at {PG_HOST}:{PG_PORT}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield PgDatabase(PG_HOST, PG_PORT, PG_USER, name)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _reset_schema(db: PgDatabase) -> None:
    """Give each test an empty database without paying for CREATE DATABASE each time."""
    conn = await asyncpg.connect(host=db.host, port=db.port, user=db.user, database=db.name)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        await conn.close()


# A factory, not just an instance: several tests open a second storage on the same
# database, as the CLI does while the server runs.
StorageFactory = Callable[[], SqlStorage]


@pytest.fixture(params=["sqlite", pytest.param("pgsql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> PgDatabase | None:
    """None for sqlite, the session database for pgsql.

    Synchronous on purpose: the session fixture must be set up outside the test's running
    loop, since it runs its own with asyncio.run().
    """
    if request.param == "sqlite":
        return None
    db: PgDatabase = request.getfixturevalue("pg_database")
    return db


@pytest.fixture
async def make_storage(backend: PgDatabase | None, tmp_path: Path) -> AsyncIterator[StorageFactory]:
    made: list[SqlStorage] = []
    if backend is None:
        path = tmp_path / "db" / "suricate.db"

        def build() -> SqlStorage:
            made.append(SqliteStorage(path))
            return made[-1]

    else:
        db = backend
        await _reset_schema(db)

        def build() -> SqlStorage:
            made.append(
                PgsqlStorage(
                    host=db.host, port=db.port, database=db.name, username=db.user, pool_size=4
                )
            )
            return made[-1]

    yield build
    for storage in made:
        await storage.close()


@pytest.fixture
async def storage(make_storage: StorageFactory) -> SqlStorage:
    opened = make_storage()
    await opened.open()
    return opened
