"""mod_roster and mod_presence without sockets: the roster cache, pushes, hidden pending
requests, probes (RFC 6121 §2, §3, §4.3)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from suricate.core import hooks as H
from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_roster import (
    ROSTER_CACHE,
    computed_version,
    is_visible,
    item_element,
    item_xml,
)
from suricate.modules.mod_roster.store import (
    ASK_STATES,
    SUBSCRIPTION_STATES,
    RosterItem,
    _roster_item,
)
from suricate.protocol import subscription as sub
from suricate.xml import ns
from suricate.xml.element import Element
from tests.modules.services_harness import FakeSession, module_server

ALICE = JID.parse("alice@localhost")
BOB = JID.parse("bob@localhost")


class Session(FakeSession):
    """A FakeSession; the per-session state mod_roster and mod_presence use is in their
    session slots (``module_state``)."""

    @property
    def roster_cache(self) -> dict[JID, RosterItem] | None:
        return ROSTER_CACHE.get(self)

    @roster_cache.setter
    def roster_cache(self, cache: dict[JID, RosterItem]) -> None:
        ROSTER_CACHE.set(self, cache)

    def send(self, stanza: Element) -> None:
        self.received.put_nowait(stanza)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with module_server(tmp_path, "[modules.mod_roster]\n[modules.mod_presence]") as srv:
        for jid in (ALICE, BOB):
            await srv.auth.register(jid, "pw")
        yield srv


async def opened(server: Server, jid: str, interested: bool = True) -> Session:
    session = Session(server, jid)
    await server.hooks.fold_async(H.SESSION_OPENED, None, session)
    if interested:
        session.module_state["mod_roster"] = True
    return session


def presence(type_: str, status: str | None = None) -> Element:
    el = Element("presence", ns.CLIENT, {"type": type_})
    if status:
        el.add("status", text=status)
    return el


def test_item_element_shows_only_our_own_pending_request() -> None:
    item = RosterItem(jid="bob@localhost", name="Bob", subscription="none", ask="both",
                      groups=("Friends",), approved=False)
    el = item_element(item)
    assert el.attrs == {"jid": "bob@localhost", "name": "Bob", "subscription": "none",
                        "ask": "subscribe"}
    assert [g.text for g in el.find_all("group")] == ["Friends"]
    only_in = RosterItem(jid="bob@localhost", ask="in", hidden=True)
    assert "ask" not in item_element(only_in).attrs
    assert not is_visible(only_in)  # a stranger's request is not a roster entry
    # An item the user added (even without a name or group) stays when the contact asks.
    assert is_visible(RosterItem(jid="bob@localhost", ask="in"))


def test_item_xml_writes_what_item_element_serializes() -> None:
    """The roster get writes items as text (``item_xml``): the same XML as the elements."""
    items = [RosterItem(jid="bob@localhost", subscription=s, ask=a, name=name, groups=groups,
                        approved=approved)
             for s in sorted(SUBSCRIPTION_STATES)
             for a in sorted(ASK_STATES)
             for name in (None, "", "Bob <&> \"the\" 'builder'\t")
             for groups in ((), ("Friends",), ("a&b", "<c>", "d\re"))
             for approved in (False, True)]
    items.append(RosterItem(jid="o'neil&co@localhost"))
    for item in items:
        assert item_xml(item) == item_element(item).serialize(ns.ROSTER), item


def test_item_xml_is_made_once_per_item() -> None:
    """Items outlive a session (the store keeps rosters between logins): each is written once,
    and an item changed (a new value) is written afresh."""
    item = RosterItem(jid="bob@localhost", name="Bob", subscription="both", groups=("G",))
    written = item_xml(item)
    assert item.written is written and item_xml(item) is written
    renamed = replace(item, name="Robert")
    assert renamed.written is None
    assert item_xml(renamed) == item_element(renamed).serialize(ns.ROSTER) != written
    # Not part of the value: an item written equals (and hashes as) one that was not.
    fresh = RosterItem(jid="bob@localhost", name="Bob", subscription="both", groups=("G",))
    assert fresh == item and hash(fresh) == hash(item)
    assert "written" not in repr(item)
    row = ("bob@localhost", "Bob", "both", "none", 0, None, 0, "G")
    assert _roster_item(row, ["G"]).written is None


def test_roster_item_read_back_equals_the_one_made() -> None:
    row = ("bob@localhost", "Bob", "from", "out", 1, "hi", 0, "ignored")
    made = RosterItem(jid="bob@localhost", name="Bob", subscription="from", ask="out",
                      groups=("G1", "G2"), approved=True, ask_message="hi")
    assert _roster_item(row, ["G1", "G2"]) == made
    assert hash(_roster_item(row, ["G1", "G2"])) == hash(made)


def test_normalize_gives_the_rfc_states() -> None:
    # RFC 6121 Appendix A.1: a pending request in an already subscribed direction is none.
    assert sub.normalize("to", "out") == sub.TO
    assert sub.normalize("from", "both") == sub.FROM_OUT
    assert sub.normalize("both", "both") == sub.BOTH
    assert sub.normalize("none", "in") == sub.NONE_IN


def test_computed_version_ignores_hidden_items() -> None:
    base = [RosterItem(jid="bob@localhost", subscription="both")]
    hidden = RosterItem(jid="eve@localhost", ask="in", hidden=True)
    assert computed_version(base) == computed_version([*base, hidden])
    assert computed_version(base) != computed_version(
        [RosterItem(jid="bob@localhost", subscription="to")])


async def test_outbound_subscribe_updates_storage_cache_and_pushes(server: Server) -> None:
    alice = await opened(server, "alice@localhost/phone")
    other = await opened(server, "alice@localhost/tablet", interested=False)
    outcome = await server.hooks.fold_async(H.ROSTER_OUT_SUBSCRIPTION, None, ALICE, BOB,
                                            "subscribe", presence("subscribe"))
    assert outcome.forward
    assert alice.roster_cache is not None and other.roster_cache is not None
    assert alice.roster_cache[BOB].ask == "out"
    assert other.roster_cache[BOB].ask == "out"  # every session's cache follows
    push = alice.received.get_nowait()
    item = push.find("query", ns.ROSTER).find("item")  # type: ignore[union-attr]
    assert item is not None and item.attrs["ask"] == "subscribe"
    assert other.received.empty()  # §2.1.6: only interested resources get pushes


async def test_inbound_request_is_kept_hidden_with_its_message(server: Server) -> None:
    bob = await opened(server, "bob@localhost/laptop")
    outcome = await server.hooks.fold_async(H.ROSTER_IN_SUBSCRIPTION, None, BOB, ALICE,
                                            "subscribe", presence("subscribe", "hello"))
    assert outcome.forward
    stored = await server.modules["mod_roster"].store.get_roster_item("localhost", "bob", "alice@localhost")
    assert stored is not None and (stored.ask, stored.ask_message) == ("in", "hello")
    assert bob.roster_cache is not None and bob.roster_cache[ALICE].ask == "in"
    assert bob.received.empty()  # nothing visible changed: no push
    answer = await bob.iq("get", Element("query", ns.ROSTER))
    query = answer.find("query", ns.ROSTER)
    assert query is not None and query.find_all("item") == []


async def test_probe_is_answered_only_for_a_subscriber(server: Server) -> None:
    alice = await opened(server, "alice@localhost/phone")
    alice.presence = Element("presence", ns.CLIENT, {"from": str(alice.jid)})
    alice.presence.add("status", text="here")
    bob = await opened(server, "bob@localhost/laptop")
    probe = Element("presence", ns.CLIENT, {"type": "probe", "from": str(bob.jid),
                                             "to": str(ALICE)})
    # Not a subscriber: nothing about alice reaches bob.
    assert await server.hooks.fold_async(H.PRESENCE_TO_USER, False, bob.jid, ALICE, probe)
    await server.drain(5)
    assert bob.received.empty()
    await server.modules["mod_roster"].store.put_roster_item(
        "localhost", "alice", RosterItem(jid="bob@localhost", subscription="from"))
    alice.roster_cache = {BOB: RosterItem(jid="bob@localhost", subscription="from")}
    assert await server.hooks.fold_async(H.PRESENCE_TO_USER, False, bob.jid, ALICE, probe)
    answer: Any = bob.received.get_nowait()
    assert answer.attrs["from"] == "alice@localhost/phone"
    assert answer.attrs["to"] == "bob@localhost/laptop"
    assert answer.find_text("status") == "here"
