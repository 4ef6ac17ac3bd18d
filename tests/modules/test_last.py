"""mod_last: XEP-0012 Last Activity of the server and of accounts."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from suricate.core import hooks as H
from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_roster.store import RosterItem
from suricate.xml import ns
from suricate.xml.element import Element
from suricate.xml.parser import parse_fragment
from tests.modules.services_harness import FakeSession, error_condition, module_server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with module_server(tmp_path, "[modules.mod_last]\n[modules.mod_roster]") as srv:
        for name in ("alice", "bob", "carol"):
            await srv.auth.register(JID.parse(f"{name}@localhost"), "pw")
        # bob lets alice see his presence; carol has no subscription.
        await srv.modules["mod_roster"].store.put_roster_item("localhost", "bob", RosterItem(
            "alice@localhost", subscription="from"))
        yield srv


def last() -> Element:
    return Element("query", ns.LAST)


async def test_server_uptime(server: Server) -> None:
    server.started_at = time.time() - 3600
    alice = FakeSession(server, "alice@localhost/phone")
    reply = await alice.iq("get", last(), to="localhost")
    query = reply.find("query", ns.LAST)
    assert query is not None
    assert 3600 <= int(query.attrs["seconds"]) < 3700
    assert query.text == ""


async def test_offline_contact_last_logout_and_status(server: Server) -> None:
    await server.modules["mod_last"].store.set_last("localhost", "bob", int(time.time()) - 903, "Heading Home")
    alice = FakeSession(server, "alice@localhost/phone")
    reply = await alice.iq("get", last(), to="bob@localhost")
    assert reply.attrs["type"] == "result"
    query = reply.find("query", ns.LAST)
    assert query is not None
    assert 903 <= int(query.attrs["seconds"]) < 960
    assert query.text == "Heading Home"


async def test_online_contact_is_zero_seconds(server: Server) -> None:
    FakeSession(server, "bob@localhost/desk")
    alice = FakeSession(server, "alice@localhost/phone")
    reply = await alice.iq("get", last(), to="bob@localhost")
    assert reply.find("query", ns.LAST) == Element("query", ns.LAST, {"seconds": "0"})


async def test_without_subscription_is_forbidden(server: Server) -> None:
    await server.modules["mod_last"].store.set_last("localhost", "alice", int(time.time()), "")
    bob = FakeSession(server, "bob@localhost/desk")
    reply = await bob.iq("get", last(), to="alice@localhost")
    assert error_condition(reply) == "forbidden"
    carol = FakeSession(server, "carol@localhost/home")
    reply = await carol.iq("get", last(), to="bob@localhost")
    assert error_condition(reply) == "forbidden"


async def test_own_account_is_allowed(server: Server) -> None:
    await server.modules["mod_last"].store.set_last("localhost", "carol", int(time.time()) - 10, "bye")
    carol = FakeSession(server, "carol@localhost/home", available=False)
    reply = await carol.iq("get", last())
    query = reply.find("query", ns.LAST)
    assert query is not None and query.text == "bye"


async def test_never_seen_account_is_item_not_found(server: Server) -> None:
    alice = FakeSession(server, "alice@localhost/phone")
    reply = await alice.iq("get", last(), to="bob@localhost")
    assert error_condition(reply) == "item-not-found"


async def test_unknown_account_is_service_unavailable(server: Server) -> None:
    alice = FakeSession(server, "alice@localhost/phone")
    reply = await alice.iq("get", last(), to="ghost@localhost")
    assert error_condition(reply) == "service-unavailable"


async def test_unset_presence_records_logout(server: Server) -> None:
    bob = FakeSession(server, "bob@localhost/desk")
    await server.hooks.fold_async(H.UNSET_PRESENCE, None, bob, "gone fishing")
    record = await server.modules["mod_last"].store.get_last("localhost", "bob")
    assert record is not None
    assert record[1] == "gone fishing"
    assert abs(record[0] - time.time()) < 5


async def test_closed_session_records_no_close_reason_as_status(server: Server) -> None:
    bob = FakeSession(server, "bob@localhost/desk")
    bob.leave()  # the stream ended: the session left the table before the hook runs
    await server.hooks.fold_async(H.UNSET_PRESENCE, None, bob, "connection lost")
    assert (await server.modules["mod_last"].store.get_last("localhost", "bob") or (0, None))[1] == ""


async def test_unavailable_presence_status_is_recorded(server: Server) -> None:
    bob = FakeSession(server, "bob@localhost/desk")
    (presence,) = parse_fragment("<presence xmlns='jabber:client' type='unavailable'>"
                                 "<status>Heading Home</status></presence>")
    assert server.hooks.fold(H.USER_SEND_PACKET, presence, bob) is presence
    await server.drain()
    record = await server.modules["mod_last"].store.get_last("localhost", "bob")
    assert record is not None and record[1] == "Heading Home"
    # directed unavailable presence is not a logout
    (directed,) = parse_fragment("<presence xmlns='jabber:client' type='unavailable' "
                                 "to='alice@localhost'><status>x</status></presence>")
    server.hooks.fold(H.USER_SEND_PACKET, directed, bob)
    await server.drain()
    record = await server.modules["mod_last"].store.get_last("localhost", "bob")
    assert record is not None and record[1] == "Heading Home"
