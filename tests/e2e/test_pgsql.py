"""The server on PostgreSQL (127.0.0.1:5432), as configured in MongooseIM 6.4:
`[outgoing_pools.rdbms.default.connection] driver = "pgsql"`."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import connect, disconnect, eventually, running_server

pytestmark = pytest.mark.postgres


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres",
                                 database="postgres", timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture
async def pg_server(tmp_path: Path) -> AsyncIterator[Server]:
    name = f"suricate_e2e_{secrets.token_hex(5)}"
    try:
        await _admin(f'CREATE DATABASE "{name}"')
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        message = f"PostgreSQL not reachable at 127.0.0.1:5432: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    pool = f"""
[outgoing_pools.rdbms.default]
workers = 4

[outgoing_pools.rdbms.default.connection]
driver = "pgsql"
host = "127.0.0.1"
database = "{name}"
username = "postgres"
password = ""
"""
    try:
        async with running_server(tmp_path, pool_toml=pool) as srv:
            yield srv
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_chat_and_offline_on_postgresql(pg_server: Server) -> None:
    srv = pg_server
    assert type(srv.storage).__name__ == "PgsqlStorage"
    await srv.auth.register(JID.parse("alice@localhost"), "pw")
    await srv.auth.register(JID.parse("bob@localhost"), "pw")
    alice = await connect(srv, "alice@localhost/a", "pw")
    alice.send_message(mto="bob@localhost", mbody="while you were away", mtype="chat")

    async def stored() -> bool:
        return await srv.modules["mod_offline"].store.count_offline("localhost", "bob") == 1

    await eventually(stored)
    bob = await connect(srv, "bob@localhost/b", "pw")
    bob.send_presence()
    msg = await bob.next_message()
    assert msg["body"] == "while you were away"
    bob.send_message(mto="alice@localhost/a", mbody="back", mtype="chat")
    assert (await alice.next_message())["body"] == "back"
    await disconnect(alice, bob)


async def test_last_activity_is_recorded_when_a_client_logs_out_on_postgresql(
        pg_server: Server) -> None:
    """A session's end runs its hooks at once, outside any asyncio task (core/eager.py), and
    asyncpg's wait for a pooled connection needs one: mod_last's logout record failed with
    "Timeout should be used inside a task" and XEP-0012 §3 had no last activity to give."""
    srv = pg_server
    await srv.auth.register(JID.parse("alice@localhost"), "pw")
    alice = await connect(srv, "alice@localhost/a", "pw")
    alice.send_presence(pstatus="gone fishing")
    await eventually(lambda: any(session.presence is not None for session
                                 in srv.sessions.resources(JID.parse("alice@localhost"))))
    await disconnect(alice)
    await eventually(lambda: not srv.sessions.resources(JID.parse("alice@localhost")))
    await srv.drain()
    assert await srv.modules["mod_last"].store.get_last("localhost", "alice") is not None
