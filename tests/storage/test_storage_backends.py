"""What differs per backend: the factory, SQLite settings, error translation, migrations."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from suricate.core.module import open_module_store
from suricate.modules.mod_vcard.store import VcardStore
from suricate.storage import StorageError, StorageUnavailable, create_storage
from suricate.storage.module_store import load_module_migrations
from suricate.storage.pgsql import PgsqlStorage, to_pg
from suricate.storage.sql import load_migrations
from suricate.storage.sqlite import SqliteStorage, _statements

from .conftest import PgDatabase

# -- factory -----------------------------------------------------------------------------------


async def test_factory_sqlite_relative_path_and_parent_dirs(tmp_path: Path) -> None:
    storage = create_storage({"driver": "sqlite", "database": "var/lib/suricate.db"}, tmp_path)
    assert isinstance(storage, SqliteStorage)
    assert Path(storage.path) == tmp_path / "var" / "lib" / "suricate.db"
    await storage.open()
    try:
        assert await storage.create_user("example.com", "alice", None, "x")
    finally:
        await storage.close()
    assert (tmp_path / "var" / "lib" / "suricate.db").is_file()


def test_factory_sqlite_absolute_and_memory(tmp_path: Path) -> None:
    absolute = tmp_path / "abs.db"
    storage = create_storage({"driver": "sqlite", "database": str(absolute)}, Path("/elsewhere"))
    assert isinstance(storage, SqliteStorage) and Path(storage.path) == absolute
    memory = create_storage({"driver": "sqlite", "database": ":memory:"}, tmp_path)
    assert isinstance(memory, SqliteStorage) and memory.path == ":memory:"


async def test_sqlite_in_memory_works() -> None:
    storage = SqliteStorage(":memory:")
    await storage.open()
    try:
        # A module's migrations and queries on the one in-memory connection.
        vcards = await open_module_store(storage, "mod_vcard", VcardStore)
        assert isinstance(vcards, VcardStore)
        await vcards.set_vcard("example.com", "alice", "<vCard/>")
        assert await vcards.get_vcard("example.com", "alice") == "<vCard/>"
    finally:
        await storage.close()


def test_factory_pgsql() -> None:
    storage = create_storage(
        {
            "driver": "pgsql",
            "host": "db.internal",
            "database": "mongooseim",
            "username": "mongooseim",
            "password": "secret",
            "workers": 3,
        },
        Path("/"),
    )
    assert isinstance(storage, PgsqlStorage)
    assert (storage.host, storage.port, storage.database, storage.username) == (
        "db.internal",
        5432,
        "mongooseim",
        "mongooseim",
    )
    assert storage.password == "secret" and storage.pool_size == 3
    default = create_storage({"driver": "pgsql", "database": "d", "username": "u"}, Path("/"))
    assert isinstance(default, PgsqlStorage) and default.pool_size == 10


@pytest.mark.parametrize(
    "connection",
    [{"driver": "mysql", "database": "x"}, {}, {"driver": "pgsql", "username": "u"}],
)
def test_factory_rejects_bad_connection(connection: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        create_storage(connection, Path("/"))


# -- SQLite specifics ------------------------------------------------------------------------------


async def test_sqlite_connection_settings(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path / "s.db")
    await storage.open()
    try:
        assert (await storage._fetch("PRAGMA journal_mode"))[0][0] == "wal"
        assert (await storage._fetch("PRAGMA busy_timeout"))[0][0] == 5000
        assert (await storage._fetch("PRAGMA foreign_keys"))[0][0] == 1
    finally:
        await storage.close()


async def test_sqlite_cli_writes_while_server_runs(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    server, cli = SqliteStorage(path), SqliteStorage(path)
    await server.open()
    await cli.open()
    try:
        assert await cli.create_user("example.com", "bob", None, "x")
        assert await server.user_exists("example.com", "bob")
        assert await server.remove_user("example.com", "bob")
        assert await cli.user_exists("example.com", "bob") is False
    finally:
        await cli.close()
        await server.close()


async def test_sqlite_locked_database_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    storage = SqliteStorage(path, busy_timeout_ms=50)
    await storage.open()
    # Another process holding the write lock longer than busy_timeout.
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StorageUnavailable):
            await storage.create_user("example.com", "alice", None, "x")
        # Reads still work in WAL mode while someone writes.
        assert await storage.user_exists("example.com", "alice") is False
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await storage.create_user("example.com", "alice", None, "x")
    await storage.close()


async def test_sqlite_unopenable_path_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    storage = SqliteStorage(tmp_path / "file" / "s.db")
    with pytest.raises(StorageUnavailable):
        await storage.open()
    await storage.close()


def test_sqlite_statement_splitter() -> None:
    script = (
        "-- a comment; with a semicolon\n"
        "CREATE TABLE t (a TEXT DEFAULT 'x;y');\n"
        "CREATE INDEX i ON t (a);\n"
        "-- trailing comment\n"
    )
    statements = [s.strip() for s in _statements(script)]
    assert statements[0].endswith("CREATE TABLE t (a TEXT DEFAULT 'x;y');")
    assert statements[1] == "CREATE INDEX i ON t (a);"
    assert statements[2] == "-- trailing comment"
    conn = sqlite3.connect(":memory:")
    for statement in statements:
        conn.execute(statement)


# -- PostgreSQL specifics ------------------------------------------------------------------------------


def test_pgsql_placeholders() -> None:
    assert (
        to_pg("SELECT a FROM t WHERE b = ? AND c = ?") == "SELECT a FROM t WHERE b = $1 AND c = $2"
    )
    assert to_pg("SELECT 1") == "SELECT 1"


async def test_pgsql_unreachable_is_unavailable() -> None:
    # Port 1 on loopback: connection refused at once, no PostgreSQL needed.
    storage = PgsqlStorage(host="127.0.0.1", port=1, database="x", username="x", connect_timeout=2)
    with pytest.raises(StorageUnavailable, match="127.0.0.1:1"):
        await storage.open()
    await storage.close()


@pytest.mark.postgres
async def test_pgsql_unknown_database_is_an_error_not_an_outage(pg_database: PgDatabase) -> None:
    storage = PgsqlStorage(
        host=pg_database.host,
        port=pg_database.port,
        database=pg_database.name + "_missing",
        username=pg_database.user,
    )
    with pytest.raises(StorageError) as info:
        await storage.open()
    assert not isinstance(info.value, StorageUnavailable)


def test_pgsql_rejects_empty_pool() -> None:
    with pytest.raises(ValueError):
        PgsqlStorage(database="d", username="u", pool_size=0)


# -- migrations --------------------------------------------------------------------------------------


def _tables(sql: str) -> set[str]:
    return set(re.findall(r"CREATE TABLE (?:IF NOT EXISTS )?(\w+)", sql))


def test_dialects_migrate_in_step() -> None:
    sqlite_m, pgsql_m = load_migrations("sqlite"), load_migrations("pgsql")
    assert [(m.version, m.name) for m in sqlite_m] == [(m.version, m.name) for m in pgsql_m]
    for lite, pg in zip(sqlite_m, pgsql_m, strict=True):
        assert _tables(lite.sql) == _tables(pg.sql)


@pytest.mark.parametrize("package", [
    "suricate.modules.mod_roster", "suricate.modules.mod_offline", "suricate.modules.mod_last",
    "suricate.modules.mod_private", "suricate.modules.mod_vcard", "suricate.modules.mod_blocking",
    "suricate.modules.mod_fast_auth_token"])
def test_module_dialects_migrate_in_step(package: str) -> None:
    sqlite_m = load_module_migrations(package, "sqlite")
    pgsql_m = load_module_migrations(package, "pgsql")
    assert sqlite_m and [(m.version, m.name) for m in sqlite_m] == [
        (m.version, m.name) for m in pgsql_m]
    for lite, pg in zip(sqlite_m, pgsql_m, strict=True):
        assert _tables(lite.sql) == _tables(pg.sql)
        # Databases created before modules had migrations have these tables already.
        assert not re.search(r"CREATE (TABLE|INDEX) (?!IF NOT EXISTS)", lite.sql + pg.sql)
    if package.endswith("mod_offline"):
        assert "BIGSERIAL" in pgsql_m[0].sql  # arrival order, see pop_offline


def test_unknown_dialect_has_no_migrations() -> None:
    with pytest.raises(StorageError, match="oracle"):
        load_migrations("oracle")
