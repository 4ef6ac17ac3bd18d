"""mod_offline: what XEP-0160 keeps, the quota, and delivery with XEP-0203 stamps."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_offline import ModOffline, parse_stored
from suricate.xml import ns
from suricate.xml.element import Element
from tests.modules.services_harness import FakeSession, error_condition, module_server

MODULES = """
[modules.mod_offline]
"""
QUOTA = '[access]\nmax_user_offline_messages = [{acl = "all", value = 2}]\n'
CHATSTATES = "http://jabber.org/protocol/chatstates"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with module_server(tmp_path, QUOTA + MODULES) as srv:
        for name in ("alice", "bob"):
            await srv.auth.register(JID.parse(f"{name}@localhost"), "pw")
        yield srv


def offline(server: Server) -> ModOffline:
    module = server.modules["mod_offline"]
    assert isinstance(module, ModOffline)
    return module


def message(body: str | None = "hi", type_: str | None = "chat",
            extra: list[Element] | None = None) -> Element:
    msg = Element("message", ns.CLIENT, {"from": "bob@localhost/laptop",
                                         "to": "alice@localhost"})
    if type_ is not None:
        msg.attrs["type"] = type_
    if body is not None:
        msg.add("body", text=body)
    for child in extra or []:
        msg.append(child)
    return msg


@pytest.mark.parametrize(("stanza", "kept"), [
    (message(), True),
    (message(type_=None), True),  # no type = normal (RFC 6121 §5.2.2)
    (message(type_="normal"), True),
    (message(body=None, extra=[Element("x", "jabber:x:oob")]), True),  # other payload
    (message(body=None, extra=[Element("composing", CHATSTATES)]), False),
    (message(body=None, extra=[Element("thread", ns.CLIENT), Element("paused", CHATSTATES)]),
     False),
    (message(extra=[Element("active", CHATSTATES)]), True),  # content + chat state
    (message(type_="headline"), False),
    (message(type_="error"), False),
    (message(type_="groupchat"), False),  # store_groupchat_messages = false
    (message(extra=[Element("no-store", "urn:xmpp:hints")]), False),
    (message(body=None, extra=[Element("composing", CHATSTATES),
                               Element("store", "urn:xmpp:hints")]), True),
])
async def test_what_is_worth_storing(server: Server, stanza: Element, kept: bool) -> None:
    assert offline(server).worth_storing(stanza) is kept


async def test_standalone_chat_state_is_consumed_not_stored(server: Server) -> None:
    bob, alice = JID.parse("bob@localhost/laptop"), JID.parse("alice@localhost")
    stanza = message(body=None, extra=[Element("composing", CHATSTATES)])
    assert await offline(server).store_offline(False, bob, alice, stanza) is True
    assert await server.modules["mod_offline"].store.count_offline("localhost", "alice") == 0


async def test_stored_then_delivered_in_order_with_delay(server: Server) -> None:
    bob = FakeSession(server, "bob@localhost/laptop")
    for n in range(2):
        msg = message(body=f"m{n}")
        server.router.route(bob.jid, JID.parse("alice@localhost"), msg)
    await server.drain(5)
    assert await server.modules["mod_offline"].store.count_offline("localhost", "alice") == 2
    assert bob.received.empty()  # stored: the sender hears nothing

    alice = FakeSession(server, "alice@localhost/phone")
    await offline(server).deliver_stored(None, alice)
    got = [alice.received.get_nowait() for _ in range(2)]
    assert [m.find_text("body") for m in got] == ["m0", "m1"]
    for m in got:
        delay = m.find("delay", ns.DELAY)
        assert delay is not None
        assert delay.attrs["from"] == "localhost"
        assert delay.attrs["stamp"].endswith("Z") and "T" in delay.attrs["stamp"]
        assert m.attrs["from"] == "bob@localhost/laptop"
    assert await server.modules["mod_offline"].store.count_offline("localhost", "alice") == 0


async def test_quota_exceeded_bounces_resource_constraint(server: Server) -> None:
    """Over the quota, the sender hears it as from MongooseIM 6.4: resource-constraint."""
    bob = FakeSession(server, "bob@localhost/laptop")
    for n in range(3):
        server.router.route(bob.jid, JID.parse("alice@localhost"), message(body=f"m{n}"))
    await server.drain(5)
    assert await server.modules["mod_offline"].store.count_offline("localhost", "alice") == 2
    bounce = bob.received.get_nowait()
    assert error_condition(bounce) == "resource-constraint"
    assert bounce.find_text("body") == "m2"
    assert bob.received.empty()  # one error, not a service-unavailable too


async def test_message_with_x_expire_is_not_delivered_after_it(server: Server) -> None:
    """XEP-0023 (read by MongooseIM 6.4's mod_offline): a stored message whose sender gave
    it ``seconds`` to live is not delivered after them; one without lives on."""
    bob = FakeSession(server, "bob@localhost/laptop")
    short = message(body="call me in the next minute",
                    extra=[Element("x", "jabber:x:expire", {"seconds": "60"})])
    bad = message(body="bad ttl", extra=[Element("x", "jabber:x:expire", {"seconds": "x"})])
    for msg in (short, bad):
        server.router.route(bob.jid, JID.parse("alice@localhost"), msg)
    await server.drain(5)
    store = offline(server).store
    later = [parse_stored(m.packet) for m in
             await store.pop_offline("localhost", "alice", now=time.time() + 120)]
    assert [m.find_text("body") for m in later if m is not None] == ["bad ttl"]


async def test_negative_priority_resource_gets_nothing(server: Server) -> None:
    bob = FakeSession(server, "bob@localhost/laptop")
    server.router.route(bob.jid, JID.parse("alice@localhost"), message())
    await server.drain(5)
    alice = FakeSession(server, "alice@localhost/phone")
    alice.priority = -1
    await offline(server).deliver_stored(None, alice)
    assert alice.received.empty()
    assert await server.modules["mod_offline"].store.count_offline("localhost", "alice") == 1


async def test_stamp_is_kept_when_stored_twice(server: Server) -> None:
    msg = message()
    ModOffline._stamp(msg, "localhost", 0.0)
    ModOffline._stamp(msg, "localhost", 1000.0)
    delays = msg.find_all("delay", ns.DELAY)
    assert [d.attrs["stamp"] for d in delays] == ["1970-01-01T00:00:00.000Z"]


def test_stored_xml_reads_back_unchanged() -> None:
    msg = message(body="a < b & 'c'")
    msg.attrs["xml:lang"] = "fr"
    msg.add("x", "jabber:x:oob").add("url", text="https://example.org/?a=1&b=2")
    assert parse_stored(msg.serialize(ns.CLIENT)) == msg
    assert parse_stored("<message") is None
