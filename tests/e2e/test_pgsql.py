"""The server on PostgreSQL (127.0.0.1:5432), as configured in MongooseIM 6.4:
`[outgoing_pools.rdbms.default.connection] driver = "pgsql"`."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import (
    MODULES_TOML,
    Client,
    connect,
    disconnect,
    eventually,
    running_server,
)
from tests.storage.conftest import pg_admin, pg_admin_or_skip

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_server(tmp_path: Path) -> AsyncIterator[Server]:
    async with pg_running(tmp_path) as srv:
        yield srv


@contextlib.asynccontextmanager
async def pg_running(tmp_path: Path, modules: str | None = None) -> AsyncIterator[Server]:
    """A server on its own PostgreSQL database (skipped without PostgreSQL, except under
    CI=true)."""
    name = f"suricate_e2e_{secrets.token_hex(5)}"
    await pg_admin_or_skip(f'CREATE DATABASE "{name}"')
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
        async with running_server(tmp_path, modules=modules, pool_toml=pool) as srv:
            yield srv
    finally:
        await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
    await logout_is_recorded(srv)


async def logout_is_recorded(srv: Server) -> None:
    """alice logs in, becomes available and logs out: mod_last keeps her logout (also used
    by test_mysql.py)."""
    await srv.auth.register(JID.parse("alice@localhost"), "pw")
    alice = await connect(srv, "alice@localhost/a", "pw")
    alice.send_presence(pstatus="gone fishing")
    await eventually(lambda: any(session.presence is not None for session
                                 in srv.sessions.resources(JID.parse("alice@localhost"))))
    await disconnect(alice)
    await eventually(lambda: not srv.sessions.resources(JID.parse("alice@localhost")))
    await srv.drain()
    assert await srv.modules["mod_last"].store.get_last("localhost", "alice") is not None


async def _iq(client: Client, type_: str, payload: str) -> ET.Element:
    stanza = client.make_iq_set() if type_ == "set" else client.make_iq_get()
    stanza.xml.append(ET.fromstring(payload))
    return (await stanza.send(timeout=5)).xml


async def test_hooks_run_at_once_read_postgresql(pg_server: Server) -> None:
    """A presence to a bare JID and a session's end run at once from the connection's read,
    outside any asyncio task, up to their first database read (Server.spawn_eager). On
    PostgreSQL that read waited for a pool connection with asyncio.timeout(), which needs a
    task: the hook handler failed with "Timeout should be used inside a task". mod_last's
    logout handler always reads first, and no last activity was ever recorded; mod_blocking's
    presence filter failed whenever the block list was not in memory
    (suricate/storage/acquire.py). A blocked contact's request is dropped, on PostgreSQL
    too."""
    srv = pg_server
    for user in ("alice", "bob"):
        await srv.auth.register(JID.parse(f"{user}@localhost"), "pw")
    alice = await connect(srv, "alice@localhost/a", "pw")
    alice.auto_authorize = None  # the test reads the request, slixmpp does not answer it
    alice.send_presence()
    await _iq(alice, "set", "<block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/>"
                            "</block>")
    bob = await connect(srv, "bob@localhost/b", "pw")
    bob.send_presence(pto="alice@localhost", ptype="subscribe")
    await _iq(bob, "get", "<ping xmlns='urn:xmpp:ping'/>")  # the server read the request
    await srv.drain(5)  # ...and handled it
    await _iq(alice, "get", "<ping xmlns='urn:xmpp:ping'/>")  # what alice got, she read
    received = []
    while not alice.presences.empty():
        received.append(alice.presences.get_nowait())
    assert [str(p["from"]) for p in received if p["type"] == "subscribe"] == []
    assert await srv.modules["mod_roster"].store.get_roster_item(
        "localhost", "alice", "bob@localhost") is None
    # RFC 6121 §4.2 / XEP-0012: the logout is remembered.
    await disconnect(alice)
    last = srv.modules["mod_last"].store

    async def logout_recorded() -> bool:
        return await last.get_last("localhost", "alice") is not None

    await eventually(logout_recorded, timeout=3)
    await disconnect(bob)


async def test_two_items_published_at_once_to_a_new_node(tmp_path: Path) -> None:
    """XEP-0163 §3 auto-create: a client storing two bookmarks at once (XEP-0402) sends two
    publishes to a node that does not exist yet. Each read "no node" from the database; the
    second creation failed the primary key and the client got internal-server-error. Both
    are now published, to the one node."""
    node = "urn:xmpp:bookmarks:1"
    options = ("<publish-options><x xmlns='jabber:x:data' type='submit'>"
               "<field var='FORM_TYPE' type='hidden'>"
               "<value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
               "<field var='pubsub#max_items'><value>max</value></field></x>"
               "</publish-options>")
    async with pg_running(tmp_path, MODULES_TOML + "\n[modules.mod_pubsub]\n") as srv:
        await srv.auth.register(JID.parse("alice@localhost"), "pw")
        alice = await connect(srv, "alice@localhost/a", "pw")
        rooms = ("one@conference.localhost", "two@conference.localhost")
        answers = await asyncio.gather(*(_iq(
            alice, "set", f"<pubsub xmlns='http://jabber.org/protocol/pubsub'>"
                          f"<publish node='{node}'><item id='{room}'>"
                          f"<conference xmlns='{node}'/></item></publish>{options}</pubsub>")
            for room in rooms))
        assert [a.get("type") for a in answers] == ["result", "result"]
        items = await _iq(alice, "get", "<pubsub xmlns='http://jabber.org/protocol/pubsub'>"
                                        f"<items node='{node}'/></pubsub>")
        assert sorted(i.get("id") for i in items.iter(
            "{http://jabber.org/protocol/pubsub}item")) == sorted(rooms)
        await disconnect(alice)


async def test_an_approval_comes_before_the_contacts_presence(pg_server: Server) -> None:
    """RFC 6121 §3.1.5: the contact's server routes the 'subscribed', then the contact's
    current presence. The first waits for the user's roster write, the second for nothing:
    on PostgreSQL the presence came first (the router now keeps presences to one bare JID
    in the order it routed them)."""
    srv = pg_server
    for user in ("alice", "bob"):
        await srv.auth.register(JID.parse(f"{user}@localhost"), "pw")
    alice = await connect(srv, "alice@localhost/a", "pw")
    bob = await connect(srv, "bob@localhost/b", "pw")
    for client in (alice, bob):
        client.auto_authorize = None  # the test answers, not slixmpp
        client.auto_subscribe = False
        client.send_presence()
    alice.send_presence(pto="bob@localhost", ptype="subscribe")
    await bob.next_presence(type_="subscribe")
    bob.send_presence(pto="alice@localhost", ptype="subscribed")
    seen = []
    while not seen or str(seen[-1]["from"]) != "bob@localhost/b":
        seen.append(await alice.next_presence())
    assert [(str(p["from"]), p["type"]) for p in seen if "bob" in str(p["from"])] == [
        ("bob@localhost", "subscribed"), ("bob@localhost/b", "available")]
    await disconnect(alice, bob)
