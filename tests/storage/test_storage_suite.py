"""The behaviour every Storage backend must share for the core tables (accounts, domains, schema
bookkeeping); runs once per backend (conftest.py). The modules' stores: test_module_stores.py."""

from __future__ import annotations

import asyncio
import time

import pytest

from suricate.storage import StorageError
from suricate.storage.sql import SqlStorage

from .conftest import StorageFactory

S = "example.com"

# -- users ---------------------------------------------------------------------------------


async def test_create_and_get_user(storage: SqlStorage) -> None:
    before = time.time()
    assert await storage.create_user(S, "alice", None, "scram-record") is True
    user = await storage.get_user(S, "alice")
    assert user is not None
    assert (user.server, user.username, user.password, user.pass_details) == (
        S,
        "alice",
        None,
        "scram-record",
    )
    assert before - 1 <= user.created_at <= time.time() + 1
    assert isinstance(user.created_at, float)


async def test_create_existing_user_fails_and_keeps_credentials(storage: SqlStorage) -> None:
    assert await storage.create_user(S, "alice", "secret", None)
    assert await storage.create_user(S, "alice", "other", "x") is False
    user = await storage.get_user(S, "alice")
    assert user is not None and user.password == "secret" and user.pass_details is None


async def test_unknown_user(storage: SqlStorage) -> None:
    assert await storage.get_user(S, "nobody") is None
    assert await storage.user_exists(S, "nobody") is False
    assert await storage.set_password(S, "nobody", "x", None) is False
    assert await storage.remove_user(S, "nobody") is False


async def test_set_password(storage: SqlStorage) -> None:
    await storage.create_user(S, "alice", "old", None)
    assert await storage.set_password(S, "alice", None, "new-scram") is True
    user = await storage.get_user(S, "alice")
    assert user is not None and (user.password, user.pass_details) == (None, "new-scram")


async def test_users_are_per_server(storage: SqlStorage) -> None:
    await storage.create_user(S, "alice", "a", None)
    await storage.create_user("other.org", "alice", "b", None)
    assert await storage.user_exists("other.org", "alice")
    assert await storage.user_exists("third.net", "alice") is False
    assert await storage.count_users(S) == 1
    await storage.remove_user(S, "alice")
    assert await storage.user_exists("other.org", "alice")


async def test_list_and_count_users(storage: SqlStorage) -> None:
    # Byte/code-point order on both backends: upper case before lower, ASCII before the rest.
    names = ["bob", "alice", "Zed", "émile", "carol", "дмитрий", "李"]
    for name in names:
        assert await storage.create_user(S, name, None, "x")
    assert await storage.count_users(S) == len(names)
    assert await storage.count_users("empty.org") == 0
    assert await storage.list_users(S) == sorted(names)
    assert await storage.list_users(S, limit=2) == sorted(names)[:2]
    assert await storage.list_users(S, limit=3, offset=2) == sorted(names)[2:5]
    assert await storage.list_users(S, offset=5) == sorted(names)[5:]
    assert await storage.list_users(S, limit=0) == []
    assert await storage.list_users("empty.org") == []
    with pytest.raises(ValueError):
        await storage.list_users(S, limit=-1)


async def test_unicode_user(storage: SqlStorage) -> None:
    assert await storage.create_user("пример.рф", "юзер😀", "пароль😀", None)
    user = await storage.get_user("пример.рф", "юзер😀")
    assert user is not None and user.password == "пароль😀"
    assert await storage.list_users("пример.рф") == ["юзер😀"]


# -- transactions, migrations, life cycle ----------------------------------------------------------


async def test_failed_transaction_rolls_back(storage: SqlStorage) -> None:
    with pytest.raises(RuntimeError):
        async with storage._session(transaction=True) as ex:
            await ex.execute(
                "INSERT INTO users (server, username, created_at) VALUES (?, ?, ?)", S, "a", 1.0
            )
            raise RuntimeError("boom")
    assert await storage.get_user(S, "a") is None
    # The connection is usable afterwards (no transaction left open).
    assert await storage.create_user(S, "a", None, "x")
    assert await storage.user_exists(S, "a")


async def test_database_error_becomes_storage_error(storage: SqlStorage) -> None:
    with pytest.raises(StorageError):
        await storage._execute("INSERT INTO users (server) VALUES (?)", S)
    await storage.create_user(S, "a", None, "x")
    with pytest.raises(StorageError):
        await storage._execute(
            "INSERT INTO users (server, username, created_at) VALUES (?, ?, ?)", S, "a", 1.0
        )


async def test_migrations_recorded(storage: SqlStorage) -> None:
    from suricate.storage.sql import load_migrations

    expected = [m.version for m in load_migrations(storage.dialect)]
    assert expected and await storage.schema_versions() == expected


async def test_reopen_is_idempotent_and_keeps_data(
    storage: SqlStorage, make_storage: StorageFactory
) -> None:
    versions = await storage.schema_versions()
    await storage.create_user(S, "alice", None, "x")
    await storage.close()
    await storage.close()  # twice is harmless

    again = make_storage()
    await again.open()
    await again.open()  # already open: nothing happens
    assert await again.schema_versions() == versions
    assert await again.user_exists(S, "alice")
    rows = await again._fetch("SELECT COUNT(*) FROM schema_version")
    assert rows[0][0] == len(versions)


async def test_concurrent_first_open_migrates_once(make_storage: StorageFactory) -> None:
    # Server and CLI starting together on an empty database.
    first, second = make_storage(), make_storage()
    await asyncio.gather(first.open(), second.open())
    assert await first.schema_versions() == await second.schema_versions()


async def test_newer_schema_refused(storage: SqlStorage, make_storage: StorageFactory) -> None:
    await storage._execute(
        "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
        999,
        "from_the_future",
        0.0,
    )
    newer = make_storage()
    with pytest.raises(StorageError, match="newer"):
        await newer.open()


async def test_closed_storage_raises_storage_error(storage: SqlStorage) -> None:
    await storage.close()
    with pytest.raises(StorageError):
        await storage.get_user(S, "alice")
