"""What differs per backend: the factory, SQLite settings, error translation, migrations."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from suricate.core.module import open_module_store
from suricate.modules.mod_offline.store import OfflineMessage, OfflineStore
from suricate.modules.mod_vcard.store import VcardStore
from suricate.storage import StorageError, StorageUnavailable, create_storage
from suricate.storage.module_store import load_module_migrations
from suricate.storage.mysql import MysqlStorage, split_script, to_mysql
from suricate.storage.pgsql import PgsqlStorage, to_pg
from suricate.storage.sql import load_migrations
from suricate.storage.sqlite import SqliteStorage, _statements

from .conftest import MyDatabase, PgDatabase, open_sql_storage, reset_database

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


async def test_sqlite_reads_take_no_lock_unless_a_transaction_holds_it(tmp_path: Path) -> None:
    """A read runs inline without the lock and its context manager when no transaction
    holds the connection (one per login, ~4 µs of 10), and waits for one that does: it
    never reads inside another's uncommitted transaction."""
    storage = SqliteStorage(tmp_path / "s.db")
    await storage.open()
    entered = []
    session = storage._session

    def counting(**kwargs: bool) -> object:
        entered.append(kwargs)
        return session(**kwargs)

    storage._session = counting  # type: ignore[method-assign]
    try:
        assert await storage.get_user("example.com", "alice") is None
        assert entered == []  # no lock, no context manager
        began = asyncio.Event()
        finish = asyncio.Event()

        async def slow_registration() -> None:
            async with storage._session(transaction=True) as ex:
                await ex.execute("INSERT INTO users (server, username, password, pass_details,"
                                 " created_at) VALUES ('example.com', 'alice', NULL, 'x', 0)")
                began.set()
                await finish.wait()  # the transaction holds the connection meanwhile

        writer = asyncio.create_task(slow_registration())
        await began.wait()
        read = asyncio.create_task(storage.get_user("example.com", "alice"))
        await asyncio.sleep(0.05)
        assert not read.done()  # waits for the transaction
        finish.set()
        await writer
        assert (await read) is not None  # and sees it committed
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


@pytest.mark.postgres
async def test_pgsql_a_step_is_one_round_trip_no_reset_query(pg_database: PgDatabase) -> None:
    """A pooled connection given back is not sent asyncpg's reset query (one more round trip
    per storage step: 9.3 against 4.6 ms with the database 2 ms away); a transaction left
    open is still rolled back, so the next step starts clean."""
    await reset_database(pg_database)
    storage = open_sql_storage(pg_database, pool_size=1)
    await storage.open()
    admin = await asyncpg.connect(host=pg_database.host, port=pg_database.port,
                                  user=pg_database.user, database=pg_database.name)
    try:
        async with storage._session() as ex:  # noqa: SLF001
            (row,) = await ex.fetch("SELECT pg_backend_pid() AS pid, 'step-marker' AS m")
        pid = row["pid"]
        # pg_stat_activity: an idle backend's last statement.
        last = await admin.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
        assert "step-marker" in last, last
        with pytest.raises(RuntimeError):
            async with storage._session(transaction=True) as ex:  # noqa: SLF001
                await ex.execute("CREATE TEMPORARY TABLE t (x int)")
                raise RuntimeError("a step fails inside its transaction")
        async with storage._session() as ex:  # noqa: SLF001
            (row,) = await ex.fetch("SELECT pg_backend_pid() AS pid, "
                                    "to_regclass('pg_temp.t') IS NULL AS gone")
        assert row["pid"] == pid and row["gone"]  # the same connection, rolled back
    finally:
        await admin.close()
        await storage.close()


def test_pgsql_rejects_empty_pool() -> None:
    with pytest.raises(ValueError):
        PgsqlStorage(database="d", username="u", pool_size=0)


# -- MySQL / MariaDB specifics ---------------------------------------------------------------------


def test_factory_mysql() -> None:
    storage = create_storage(
        {"driver": "mysql", "host": "db.internal", "database": "mongooseim",
         "username": "mongooseim", "password": "secret", "workers": 3},
        Path("/"),
    )
    assert isinstance(storage, MysqlStorage)
    assert (storage.host, storage.port, storage.database, storage.username) == (
        "db.internal", 3306, "mongooseim", "mongooseim")
    assert storage.password == "secret" and storage.pool_size == 3
    assert storage.dialect == "mysql"


def test_mysql_spelling() -> None:
    """The shared SQL (SQLite/PostgreSQL syntax) as MySQL reads it."""
    assert to_mysql("SELECT a FROM t WHERE b = ? AND c LIKE '%x'").sql == (
        "SELECT a FROM t WHERE b = %s AND c LIKE '%%x'")
    assert to_mysql("INSERT INTO t (k, v) VALUES (?, ?) ON CONFLICT (k) DO NOTHING").sql == (
        "INSERT INTO t (k, v) VALUES (%s, %s) ON DUPLICATE KEY UPDATE k = k")
    assert to_mysql("INSERT INTO t (k, v) VALUES (?, ?), (?, ?) ON CONFLICT DO NOTHING").sql == (
        "INSERT INTO t (k, v) VALUES (%s, %s), (%s, %s) ON DUPLICATE KEY UPDATE k = k")
    assert to_mysql("UPDATE t SET v = ? WHERE k = ?").count == "matched"
    upsert = to_mysql("INSERT INTO t (k, v, w) VALUES (?, ?, ?) ON CONFLICT (k) DO UPDATE SET"
                      " v = excluded.v, w = excluded.w")
    assert (upsert.count, upsert.upsert_rows) == ("upsert", 1)
    assert upsert.sql == (
        "INSERT INTO t (k, v, w) VALUES (%s, %s, %s) ON DUPLICATE KEY UPDATE"
        " v = VALUES(v), w = VALUES(w)")
    # MySQL 8.0.19+: the row alias instead of the deprecated VALUES().
    assert to_mysql("INSERT INTO t (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET"
                    " v = excluded.v", row_alias=True).sql == (
        "INSERT INTO t (k, v) VALUES (%s, %s) AS excluded ON DUPLICATE KEY UPDATE v = excluded.v")
    delete = to_mysql("DELETE FROM t WHERE a = ? RETURNING id, v")
    assert (delete.sql, delete.returning, delete.delete_table, delete.delete_where) == (
        "DELETE FROM t WHERE a = %s", "id, v", "t", "a = %s")
    assert to_mysql("SELECT 1 FROM t WHERE j LIKE ? ESCAPE '\\'").sql.endswith("ESCAPE '\\\\'")
    assert to_mysql("SELECT CAST(? AS BIGINT) IS NULL").sql == "SELECT CAST(%s AS SIGNED) IS NULL"


def test_mysql_script_splitter() -> None:
    script = "-- a comment; with a semicolon\nCREATE TABLE a (x INT);\n\nSELECT 1;\n"
    assert split_script(script) == ["CREATE TABLE a (x INT)", "SELECT 1"]


async def test_mysql_unreachable_is_unavailable() -> None:
    # Port 1 on loopback: connection refused at once, no MySQL needed.
    storage = MysqlStorage(host="127.0.0.1", port=1, database="x", username="x", connect_timeout=2)
    with pytest.raises(StorageUnavailable, match="127.0.0.1:1"):
        await storage.open()
    await storage.close()


def test_mysql_rejects_empty_pool() -> None:
    with pytest.raises(ValueError):
        MysqlStorage(database="d", username="u", pool_size=0)


@pytest.mark.mysql
async def test_mysql_unknown_database_is_an_error_not_an_outage(my_database: MyDatabase) -> None:
    storage = MysqlStorage(host=my_database.host, port=my_database.port,
                           database=my_database.name + "_missing", username=my_database.user)
    with pytest.raises(StorageError) as info:
        await storage.open()
    assert not isinstance(info.value, StorageUnavailable)


@pytest.fixture
async def mysql(my_database: MyDatabase) -> AsyncIterator[MysqlStorage]:
    await reset_database(my_database)
    storage = open_sql_storage(my_database)
    assert isinstance(storage, MysqlStorage)
    await storage.open()
    yield storage
    await storage.close()


@pytest.mark.mysql
async def test_mysql_tables_are_innodb_utf8mb4(mysql: MysqlStorage) -> None:
    stores = [await open_module_store(mysql, name, cls) for name, cls in
              (("mod_vcard", VcardStore), ("mod_offline", OfflineStore))]
    assert stores
    rows = await mysql._fetch(
        "SELECT table_name, engine, table_collation FROM information_schema.tables"
        " WHERE table_schema = DATABASE() ORDER BY table_name")
    assert {row[0] for row in rows} >= {"users", "domain_settings", "vcards", "offline_messages"}
    for name, engine, collation in rows:
        assert (engine, collation) == ("InnoDB", "utf8mb4_bin"), name


@pytest.mark.mysql
async def test_mysql_four_byte_unicode_and_code_point_order(mysql: MysqlStorage) -> None:
    """utf8mb4 keeps characters outside the BMP (MySQL's "utf8" would refuse them) and the
    binary collation sorts like Python and the other backends (code points, case apart)."""
    names = ["zoe", "Zed", "émile", "\U0001f600smile", "alice"]
    for name in names:
        assert await mysql.create_user("example.com", name, None, "x")
    assert await mysql.list_users("example.com") == sorted(names)
    vcards = await open_module_store(mysql, "mod_vcard", VcardStore)
    assert isinstance(vcards, VcardStore)
    big = "<vCard><PHOTO>" + "\U0001f600" * 300_000 + "</PHOTO></vCard>"  # 1.2 MB: LONGTEXT
    await vcards.set_vcard("example.com", "\U0001f600smile", big)
    assert await vcards.get_vcard("example.com", "\U0001f600smile") == big


@pytest.mark.mysql
async def test_mysql_too_long_key_is_refused_not_truncated(mysql: MysqlStorage) -> None:
    with pytest.raises(StorageError) as info:
        await mysql.create_user("example.com", "a" * 300, None, "x")
    assert not isinstance(info.value, StorageUnavailable)
    assert await mysql.count_users("example.com") == 0


@pytest.mark.mysql
async def test_mysql_emulated_returning_pops_each_message_once(my_database: MyDatabase) -> None:
    """MySQL has no DELETE ... RETURNING: the emulation (SELECT ... FOR UPDATE, DELETE, in
    one transaction) must keep pop_offline's promise: concurrent pops never share a message.
    Run on MariaDB with its native RETURNING turned off."""
    await reset_database(my_database)
    storage = MysqlStorage(host=my_database.host, port=my_database.port,
                           database=my_database.name, username=my_database.user,
                           pool_size=6, native_returning=False)
    await storage.open()
    try:
        offline = await open_module_store(storage, "mod_offline", OfflineStore)
        assert isinstance(offline, OfflineStore)
        for i in range(50):
            await offline.store_offline("example.com", "bob",
                                        OfflineMessage(float(i), "a@x", "bob@example.com", f"<{i}/>"))
        pops = await asyncio.gather(*(offline.pop_offline("example.com", "bob") for _ in range(5)))
        packets = [m.packet for pop in pops for m in pop]
        assert sorted(packets) == sorted(f"<{i}/>" for i in range(50))  # each exactly once
        assert [m.packet for m in max(pops, key=len)] == [f"<{i}/>" for i in range(50)]
        assert await offline.count_offline("example.com", "bob") == 0

        # Messages stored while pops run: each is popped once or still stored, never
        # deleted without being returned.
        async def store(n: int) -> None:
            for i in range(n):
                await offline.store_offline("example.com", "bob", OfflineMessage(
                    float(i), "a@x", "bob@example.com", f"<late{i}/>"))

        async def pop_until(done: asyncio.Task[None]) -> list[str]:
            got: list[str] = []
            while not done.done():
                got += [m.packet for m in await offline.pop_offline("example.com", "bob")]
            return got

        storing = asyncio.ensure_future(store(100))
        popped = await asyncio.gather(pop_until(storing), pop_until(storing))
        left = [m.packet for m in await offline.pop_offline("example.com", "bob")]
        everything = popped[0] + popped[1] + left
        assert sorted(everything) == sorted(f"<late{i}/>" for i in range(100))
    finally:
        await storage.close()


@pytest.mark.mysql
async def test_mysql_concurrent_opens_migrate_once(my_database: MyDatabase) -> None:
    """Server and CLI starting together: the named migration lock lets one apply each script."""
    await reset_database(my_database)
    storages = [open_sql_storage(my_database, pool_size=2) for _ in range(3)]
    try:
        await asyncio.gather(*(s.open() for s in storages))
        await asyncio.gather(*(open_module_store(s, "mod_vcard", VcardStore) for s in storages))
        assert await storages[0].schema_versions() == [1, 2, 3]
        rows = await storages[0]._fetch("SELECT COUNT(*) FROM module_schema_version")
        # Each of mod_vcard's scripts recorded once, whichever storage applied it.
        assert rows[0][0] == len(load_module_migrations("suricate.modules.mod_vcard", "mysql"))
    finally:
        for s in storages:
            await s.close()


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
    "suricate.modules.mod_fast_auth_token", "suricate.modules.mod_event_pusher"])
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
