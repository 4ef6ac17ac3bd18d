"""Fixtures every test folder sees.

`my_database`: a private MariaDB/MySQL database for this test run (127.0.0.1:3306, user root;
other engineers share the server), dropped afterwards. It lives here rather than in
tests/storage/conftest.py so that the storage suite's `backend` fixture, imported by test
folders of modules (tests/mam, tests/muc, ...), finds it without each importing it too.
Without the server the tests needing it skip with the reason, and fail under CI=true.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import asyncmy
import pytest

MY_HOST = "127.0.0.1"
MY_PORT = 3306
MY_USER = "root"


@dataclass(frozen=True, slots=True)
class MyDatabase:
    host: str
    port: int
    user: str
    name: str


async def _my_admin(*statements: str, database: str | None = None) -> None:
    conn = await asyncmy.connect(host=MY_HOST, port=MY_PORT, user=MY_USER, password="",
                                 db=database, connect_timeout=5, autocommit=True)
    try:
        async with conn.cursor() as cur:
            for sql in statements:
                await cur.execute(sql)
    finally:
        await conn.ensure_closed()


@pytest.fixture(scope="session")
def my_database() -> Iterator[MyDatabase]:
    """A private database for this test run (other engineers share the server), dropped
    afterwards. utf8mb4 by default, though every migration names its charset anyway."""
    name = f"suricate_test_{secrets.token_hex(6)}"
    try:
        asyncio.run(_my_admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    except (TimeoutError, OSError, asyncmy.errors.MySQLError) as exc:
        message = f"MariaDB/MySQL not reachable at {MY_HOST}:{MY_PORT}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield MyDatabase(MY_HOST, MY_PORT, MY_USER, name)
    finally:
        asyncio.run(_my_admin(f"DROP DATABASE IF EXISTS `{name}`"))


async def _my_reset_schema(db: MyDatabase) -> None:
    """Recreate the database: MySQL has no schema to drop apart from the database itself."""
    await _my_admin(f"DROP DATABASE IF EXISTS `{db.name}`",
                    f"CREATE DATABASE `{db.name}` CHARACTER SET utf8mb4")


