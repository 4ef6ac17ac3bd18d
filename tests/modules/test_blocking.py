"""mod_blocking: the XEP-0191 protocol, JID matching (§4) and what a block stops."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from suricate.core import hooks as H
from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_blocking import BLOCKLIST, ModBlocking, blocklist, is_blocked
from suricate.modules.mod_roster.store import RosterItem
from suricate.xml import ns
from suricate.xml.element import Element
from tests.modules.services_harness import FakeSession, error_condition, module_server

# mod_roster: a block or unblock tells the subscribed contacts (their roster is mod_roster's).
MODULES = """
[modules.mod_blocking]
[modules.mod_offline]
[modules.mod_roster]
"""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with module_server(tmp_path, MODULES) as srv:
        for name in ("alice", "bob"):
            await srv.auth.register(JID.parse(f"{name}@localhost"), "pw")
        yield srv


class Session(FakeSession):
    """A bound session with what mod_blocking reads: the cached blocklist, directed
    presence, and a direct line to the client for errors."""

    def __init__(self, server: Server, jid: str, available: bool = True) -> None:
        super().__init__(server, jid, available)
        self.sent: list[Element] = []

    @property
    def blocklist(self) -> frozenset[JID]:
        return blocklist(self)  # mod_blocking's session slot

    @blocklist.setter
    def blocklist(self, value: frozenset[JID]) -> None:
        BLOCKLIST.set(self, value)

    def send(self, element: Element) -> None:
        self.sent.append(element)

    def deliver(self, stanza: Element) -> None:
        # As the c2s does: the receive filters run before the client sees the stanza.
        filtered = self.server.hooks.fold(H.USER_RECEIVE_PACKET, stanza, self)
        if filtered is not None:
            super().deliver(filtered)


async def bound(server: Server, jid: str, available: bool = True) -> Session:
    session = Session(server, jid, available)
    await server.hooks.fold_async(H.SESSION_OPENED, None, session)
    return session


def blocking(name: str, *jids: str) -> Element:
    el = Element(name, ns.BLOCKING)
    for jid in jids:
        el.add("item", attrs={"jid": jid})
    return el


def jids(*items: str) -> frozenset[JID]:
    return frozenset(JID.parse(i) for i in items)


@pytest.mark.parametrize(("item", "address", "blocked"), [
    ("bob@example.org/phone", "bob@example.org/phone", True),
    ("bob@example.org/phone", "bob@example.org/laptop", False),
    ("bob@example.org/phone", "bob@example.org", False),
    ("bob@example.org", "bob@example.org/laptop", True),
    ("bob@example.org", "bob@example.org", True),
    ("bob@example.org", "carol@example.org", False),
    ("example.org/bot", "example.org/bot", True),
    ("example.org/bot", "bob@example.org/bot", False),
    ("example.org", "example.org", True),
    ("example.org", "bob@example.org/phone", True),
    ("example.org", "example.org/bot", True),
    ("example.org", "muc.example.org", True),  # a subdomain
    ("example.org", "bob@muc.example.org", True),
    ("example.org", "example.com", False),
    ("example.org", "badexample.org", False),
])
def test_jid_matching(item: str, address: str, blocked: bool) -> None:
    assert is_blocked(jids(item), JID.parse(address)) is blocked


async def test_blocklist_get_block_unblock(server: Server) -> None:
    alice = await bound(server, "alice@localhost/phone")
    reply = await alice.iq("get", Element("blocklist", ns.BLOCKING))
    assert reply.attrs["type"] == "result"
    assert reply.find("blocklist", ns.BLOCKING) == Element("blocklist", ns.BLOCKING)

    reply = await alice.iq("set", blocking("block", "bob@localhost", "spam.example"))
    assert reply.attrs["type"] == "result"
    assert alice.blocklist == jids("bob@localhost", "spam.example")
    reply = await alice.iq("get", Element("blocklist", ns.BLOCKING))
    listed = reply.find("blocklist", ns.BLOCKING)
    assert listed is not None
    assert [i.attrs["jid"] for i in listed.find_all("item")] == ["bob@localhost", "spam.example"]

    reply = await alice.iq("set", blocking("unblock", "spam.example"))
    assert reply.attrs["type"] == "result"
    assert alice.blocklist == jids("bob@localhost")
    reply = await alice.iq("set", blocking("unblock"))  # §3.5: unblock all
    assert reply.attrs["type"] == "result"
    assert alice.blocklist == frozenset()
    assert await server.modules["mod_blocking"].store.get_blocklist("localhost", "alice") == []


@pytest.mark.parametrize(("payload", "condition"), [
    (blocking("block"), "bad-request"),  # §3.3: at least one item
    (blocking("block", "@@bad"), "jid-malformed"),
    (Element("block", ns.BLOCKING, {}, [Element("item", ns.BLOCKING)]), "bad-request"),
    (Element("blocklist", ns.BLOCKING), "bad-request"),  # a set of the list
])
async def test_invalid_requests(server: Server, payload: Element, condition: str) -> None:
    alice = await bound(server, "alice@localhost/phone")
    reply = await alice.iq("set", payload)
    assert error_condition(reply) == condition
    assert alice.blocklist == frozenset()


async def test_someone_elses_blocklist_is_not_served(server: Server) -> None:
    await bound(server, "alice@localhost/phone")
    bob = await bound(server, "bob@localhost/laptop")
    reply = await bob.iq("get", Element("blocklist", ns.BLOCKING), to="alice@localhost")
    assert error_condition(reply) == "service-unavailable"


async def test_pushes_go_to_resources_that_requested_the_list(server: Server) -> None:
    phone = await bound(server, "alice@localhost/phone")
    tablet = await bound(server, "alice@localhost/tablet")
    watch = await bound(server, "alice@localhost/watch")
    await tablet.iq("get", Element("blocklist", ns.BLOCKING))
    await phone.iq("set", blocking("block", "bob@localhost"))
    push = tablet.received.get_nowait()
    assert push.attrs["type"] == "set" and push.attrs["to"] == "alice@localhost/tablet"
    assert push.find("block", ns.BLOCKING) == blocking("block", "bob@localhost")
    assert watch.received.empty()
    # Every session's cache follows, asked or not.
    assert tablet.blocklist == watch.blocklist == jids("bob@localhost")
    await phone.iq("set", blocking("unblock"))
    push = tablet.received.get_nowait()
    assert push.find("unblock", ns.BLOCKING) == Element("unblock", ns.BLOCKING)
    assert watch.blocklist == frozenset()


async def test_blocklist_is_loaded_when_a_session_opens(server: Server) -> None:
    await server.modules["mod_blocking"].store.block("localhost", "alice", ["bob@localhost"])
    alice = await bound(server, "alice@localhost/phone")
    assert alice.blocklist == jids("bob@localhost")


async def test_block_sends_unavailable_to_a_subscribed_contact(server: Server) -> None:
    await server.modules["mod_roster"].store.put_roster_item(
        "localhost", "alice", RosterItem(jid="bob@localhost", subscription="both"))
    alice = await bound(server, "alice@localhost/phone")
    bob = await bound(server, "bob@localhost/laptop")
    await alice.iq("set", blocking("block", "bob@localhost"))
    await server.drain(5)
    presence = bob.received.get_nowait()
    assert presence.name == "presence"
    assert presence.attrs["type"] == "unavailable"
    assert presence.attrs["from"] == "alice@localhost/phone"


async def test_unblock_sends_current_presence_to_a_subscriber(server: Server) -> None:
    await server.modules["mod_roster"].store.put_roster_item(
        "localhost", "alice", RosterItem(jid="bob@localhost", subscription="from"))
    alice = await bound(server, "alice@localhost/phone")
    alice.presence = Element("presence", ns.CLIENT, {}, [Element("show", ns.CLIENT, {}, ["dnd"])])
    bob = await bound(server, "bob@localhost/laptop")
    await alice.iq("set", blocking("block", "localhost"))
    await server.drain(5)
    assert bob.received.get_nowait().attrs["type"] == "unavailable"
    await alice.iq("set", blocking("unblock"))  # all
    await server.drain(5)
    presence = bob.received.get_nowait()
    assert presence.attrs.get("type") is None
    assert presence.find_text("show") == "dnd"
    assert presence.attrs["from"] == "alice@localhost/phone"


def outbound(server: Server, session: Session, stanza: Element) -> Any:
    module = server.modules["mod_blocking"]
    assert isinstance(module, ModBlocking)
    stanza.attrs["from"] = str(session.jid)
    return module.filter_outbound(stanza, session)  # type: ignore[arg-type]


async def test_outbound_to_blocked_is_refused(server: Server) -> None:
    alice = await bound(server, "alice@localhost/phone")
    alice.blocklist = jids("bob@localhost")
    msg = Element("message", ns.CLIENT, {"to": "bob@localhost/laptop", "type": "chat"})
    msg.add("body", text="hello")
    assert outbound(server, alice, msg) is None
    error = alice.sent.pop()
    assert error_condition(error) == "not-acceptable"
    err = error.find("error")
    assert err is not None and err.attrs["type"] == "cancel"
    assert err.find("blocked", ns.BLOCKING_ERRORS) is not None
    # Presence is dropped without an error; others pass.
    presence = Element("presence", ns.CLIENT, {"to": "bob@localhost"})
    assert outbound(server, alice, presence) is None
    assert alice.sent == []
    other = Element("message", ns.CLIENT, {"to": "carol@localhost"})
    assert outbound(server, alice, other) is other


async def test_inbound_from_blocked_is_dropped_iq_refused(server: Server) -> None:
    alice = await bound(server, "alice@localhost/phone")
    bob = await bound(server, "bob@localhost/laptop")
    await alice.iq("set", blocking("block", "bob@localhost"))
    msg = Element("message", ns.CLIENT, {"from": str(bob.jid), "to": str(alice.jid)})
    msg.add("body", text="hi")
    server.router.route(bob.jid, alice.jid, msg)
    iq = Element("iq", ns.CLIENT, {"type": "get", "id": "v1", "from": str(bob.jid),
                                   "to": str(alice.jid)}, [Element("query", "jabber:iq:version")])
    server.router.route(bob.jid, alice.jid, iq)
    assert alice.received.empty()
    # Only the IQ is answered (service-unavailable); the message is dropped in silence.
    reply = bob.received.get_nowait()
    assert reply.attrs["id"] == "v1" and error_condition(reply) == "service-unavailable"
    assert bob.received.empty()


async def test_presence_from_blocked_is_dropped_even_offline(server: Server) -> None:
    await server.modules["mod_blocking"].store.block("localhost", "alice", ["bob@localhost"])
    handled = await server.hooks.fold_async(
        H.PRESENCE_TO_USER, False, JID.parse("bob@localhost"), JID.parse("alice@localhost"),
        Element("presence", ns.CLIENT, {"type": "subscribe"}))
    assert handled is True


async def test_offline_message_from_blocked_is_not_stored(server: Server) -> None:
    await server.modules["mod_blocking"].store.block("localhost", "alice", ["bob@localhost"])
    bob = await bound(server, "bob@localhost/laptop")
    msg = Element("message", ns.CLIENT, {"from": str(bob.jid), "to": "alice@localhost",
                                         "type": "chat"})
    msg.add("body", text="hi")
    server.router.route(bob.jid, JID.parse("alice@localhost"), msg)
    await server.drain(5)
    assert await server.modules["mod_offline"].store.count_offline("localhost", "alice") == 0
    assert bob.received.empty()


async def test_server_made_stanzas_of_a_blocker_do_not_reach_the_blocked(server: Server) -> None:
    alice = await bound(server, "alice@localhost/phone")
    bob = await bound(server, "bob@localhost/laptop")
    await alice.iq("set", blocking("block", "bob@localhost"))
    module = server.modules["mod_blocking"]
    assert isinstance(module, ModBlocking)
    available = Element("presence", ns.CLIENT, {"from": str(alice.jid), "to": str(bob.jid)})
    assert module.filter_inbound(available, bob) is None  # type: ignore[arg-type]
    gone = Element("presence", ns.CLIENT, {"from": str(alice.jid), "to": str(bob.jid),
                                           "type": "unavailable"})
    assert module.filter_inbound(gone, bob) is gone  # type: ignore[arg-type]
