"""The server on MariaDB/MySQL (127.0.0.1:3306), configured as in MongooseIM 6.4:
`[outgoing_pools.rdbms.default.connection] driver = "mysql"`. Real slixmpp clients register
in band, log in, keep a roster and get a message stored while offline; a second server on the
same database finds it all again."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from suricate.jid import JID
from tests.e2e.harness import connect, disconnect, eventually, running_server
from tests.e2e.test_pgsql import logout_is_recorded
from tests.e2e.test_register import register_in_band
from tests.storage.conftest import MyDatabase, my_database, rdbms_pool_toml, reset_database

__all__ = ["my_database"]  # fixture

pytestmark = pytest.mark.mysql


async def test_register_roster_and_offline_on_mariadb(tmp_path: Path,
                                                      my_database: MyDatabase) -> None:
    await reset_database(my_database)
    pool = rdbms_pool_toml(my_database)
    async with running_server(tmp_path, pool_toml=pool) as srv:
        assert type(srv.storage).__name__ == "MysqlStorage"
        # XEP-0077 in band: the account row is written to MariaDB by the registration.
        outcome, alice = await register_in_band(srv, "alice@localhost/pc", "wonderland")
        assert outcome == "registered"
        assert await srv.storage.user_exists("localhost", "alice")
        await srv.auth.register(JID.parse("bob@localhost"), "builder")

        # RFC 6121 §2.3 roster set with a name and groups, then read back by a roster get.
        await alice.update_roster("bob@localhost", name="Bob \U0001f477", groups=["Work", "Ünï"])
        roster = await alice.get_roster()
        item = roster["roster"]["items"]["bob@localhost"]
        assert item["name"] == "Bob \U0001f477"
        assert sorted(item["groups"]) == ["Work", "Ünï"]

        # A message to bob while he is offline is stored (XEP-0160) and delivered on login.
        alice.send_message(mto="bob@localhost", mbody="while you were away", mtype="chat")

        async def stored() -> bool:
            return await srv.modules["mod_offline"].store.count_offline("localhost", "bob") == 1

        await eventually(stored)
        bob = await connect(srv, "bob@localhost/b", "builder", plugins=("xep_0203",))
        bob.send_presence()
        msg = await bob.next_message()
        assert msg["body"] == "while you were away"
        assert msg["delay"]["stamp"] is not None  # XEP-0203: it was stored
        assert await srv.modules["mod_offline"].store.count_offline("localhost", "bob") == 0
        await disconnect(alice, bob)

    # Another server on the same database: the account, its password and roster are there.
    async with running_server(tmp_path / "again", pool_toml=pool) as srv:
        again = await connect(srv, "alice@localhost/pc", "wonderland")
        roster = await asyncio.wait_for(again.get_roster(), 5)
        assert roster["roster"]["items"]["bob@localhost"]["name"] == "Bob \U0001f477"
        await disconnect(again)


async def test_last_activity_is_recorded_when_a_client_logs_out_on_mariadb(
        tmp_path: Path, my_database: MyDatabase) -> None:
    """As on PostgreSQL (tests/e2e/test_pgsql.py): the logout record of a session's end, run
    outside any task, waits for a pooled connection with asyncio.timeout, which needs one."""
    await reset_database(my_database)
    async with running_server(tmp_path, pool_toml=rdbms_pool_toml(my_database)) as srv:
        await logout_is_recorded(srv)
