"""XEP-0016 Privacy Lists with real clients (slixmpp's xep_0016, and raw payloads for what it
refuses to build): lists managed (§2.3-§2.8), active and default lists, what a list stops in
each direction (§2.9-§2.14), roster groups, pushes, conflicts, bad input, and mod_blocking
enabled alongside.

"Nothing arrived" is shown without sleeping, as in test_blocking.py: the sender's stanza is
followed by a ping the server answers on the same stream, then the recipient pings.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_roster.store import RosterItem
from tests.e2e.harness import (
    MODULES_TOML,
    Client,
    connect,
    disconnect,
    eventually,
    running_server,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PLUGINS = ("xep_0030", "xep_0016", "xep_0191", "xep_0199")
PRIVACY = "jabber:iq:privacy"


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path, modules=MODULES_TOML + "\n[modules.mod_privacy]\n") \
            as srv:
        for name in ("alice", "bob", "carol"):
            await srv.auth.register(JID.parse(f"{name}@localhost"), f"{name}-pw")
        yield srv


async def barrier(*clients: Client) -> None:
    for client in clients:
        await client.plugin["xep_0199"].send_ping("localhost", timeout=5)


def no_chat(client: Client) -> bool:
    """Nothing but errors reached the client (slixmpp queues those as messages too)."""
    while not client.messages.empty():
        if client.messages.get_nowait()["type"] != "error":
            return False
    return True


async def presence_from(client: Client, frm: str, type_: str = "available") -> Any:
    while True:
        pres = await client.next_presence()
        kind = "available" if pres["type"] in ("away", "chat", "dnd", "xa") else pres["type"]
        if str(pres["from"]) == frm and kind == type_:
            return pres


def message_errors(client: Client) -> asyncio.Queue[Any]:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    client.add_event_handler("message_error", queue.put_nowait)
    return queue


def pushes(client: Client) -> asyncio.Queue[Any]:
    """Privacy list pushes (§2.6) the client receives; answered with a result."""
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def on_push(iq: Any) -> None:
        queue.put_nowait(iq)
        iq.reply().send()

    client.register_handler(Callback("privacy push", StanzaPath("iq@type=set/privacy"), on_push))
    return queue


async def user(server: Server, name: str, resource: str) -> Client:
    return await connect(server, f"{name}@localhost/{resource}", f"{name}-pw", plugins=PLUGINS)


async def roster(server: Server, owner: str, contact: str, subscription: str = "none",
                 groups: tuple[str, ...] = ()) -> None:
    await server.modules["mod_roster"].store.put_roster_item(
        "localhost", owner, RosterItem(f"{contact}@localhost", subscription=subscription,
                                       groups=groups))


async def raw_iq(client: Client, type_: str, payload: str) -> Any:
    iq = client.make_iq_get() if type_ == "get" else client.make_iq_set()
    iq.append(ET.fromstring(payload))
    return await iq.send(timeout=5)


async def refused(client: Client, type_: str, payload: str) -> str:
    """The error condition the server answers ``payload`` with."""
    with pytest.raises(IqError) as error:
        await raw_iq(client, type_, payload)
    return str(error.value.condition)


def deny_message_from(jid: str, order: int = 1) -> list[dict[str, Any]]:
    return [{"value": jid, "action": "deny", "order": str(order), "type": "jid", "message": True}]


async def test_active_list_stops_messages_from_carol_only(server: Server) -> None:
    alice = await user(server, "alice", "phone")
    bob = await user(server, "bob", "laptop")
    carol = await user(server, "carol", "desk")
    carol_errors = message_errors(carol)
    privacy = alice.plugin["xep_0016"]

    await privacy.edit_list("no-carol", deny_message_from("carol@localhost"))
    await privacy.activate("no-carol")
    # §2.3: the names, with the requesting session's active list.
    names = (await privacy.get_privacy_lists())["privacy"]
    assert names["active"]["name"] == "no-carol"
    assert [lst["name"] for lst in names["lists"]] == ["no-carol"]
    # §2.3: the list itself, as stored.
    got = (await privacy.get_list("no-carol"))["privacy"]["list"]
    [item] = got["items"]
    assert (item["type"], item["value"], item["action"], item["order"]) == (
        "jid", "carol@localhost", "deny", "1")
    assert item["message"] and not item["iq"]

    # §2.9, §2.14: carol's message does not arrive and she is told service-unavailable.
    carol.send_message(mto="alice@localhost/phone", mbody="psst", mtype="chat")
    error = await asyncio.wait_for(carol_errors.get(), 5)
    assert error["error"]["condition"] == "service-unavailable"
    bob.send_message(mto="alice@localhost/phone", mbody="hello", mtype="chat")
    assert (await alice.next_message())["body"] == "hello"
    await barrier(carol, alice)
    assert alice.messages.empty()

    # The item names messages only: carol's IQs still reach alice (slixmpp answers them).
    await carol.plugin["xep_0199"].send_ping("alice@localhost/phone", timeout=5)

    # Declining the active list (§2.4) lets carol through again.
    await privacy.deactivate()
    carol.send_message(mto="alice@localhost/phone", mbody="now?", mtype="chat")
    assert (await alice.next_message())["body"] == "now?"
    await disconnect(alice, bob, carol)


async def test_default_list_applies_to_sessions_and_offline(server: Server) -> None:
    phone = await user(server, "alice", "phone")
    privacy = phone.plugin["xep_0016"]
    await privacy.edit_list("strict", [
        {"value": "carol@localhost", "action": "deny", "order": "5", "type": "jid"}])
    await privacy.make_default("strict")
    assert (await privacy.get_privacy_lists())["privacy"]["default"]["name"] == "strict"

    # A new session without an active list applies the default (§2.2 rule 2).
    tablet = await user(server, "alice", "tablet")
    carol = await user(server, "carol", "desk")
    carol_errors = message_errors(carol)
    tablet_errors = message_errors(tablet)
    carol.send_message(mto="alice@localhost/tablet", mbody="psst", mtype="chat")
    error = await asyncio.wait_for(carol_errors.get(), 5)
    assert error["error"]["condition"] == "service-unavailable"
    # §2.14: an IQ get from the denied entity is answered service-unavailable.
    with pytest.raises(IqError) as iq_refused:
        await carol.plugin["xep_0199"].send_ping("alice@localhost/tablet", timeout=5)
    assert iq_refused.value.condition == "service-unavailable"
    # §2.13, §2.14: the item has no child element, so outbound stanzas are stopped too.
    tablet.send_message(mto="carol@localhost/desk", mbody="hi?", mtype="chat")
    error = await asyncio.wait_for(tablet_errors.get(), 5)
    assert error["error"]["condition"] == "not-acceptable"
    await barrier(tablet, carol)
    assert no_chat(carol)

    # Offline, the default list still decides: carol's message is refused and not stored.
    await disconnect(phone, tablet)
    bob = await user(server, "bob", "laptop")
    carol.send_message(mto="alice@localhost", mbody="offline psst", mtype="chat")
    error = await asyncio.wait_for(carol_errors.get(), 5)
    assert error["error"]["condition"] == "service-unavailable"
    bob.send_message(mto="alice@localhost", mbody="offline hello", mtype="chat")
    await barrier(bob, carol)
    await server.drain(5)
    assert await server.modules["mod_offline"].store.count_offline("localhost", "alice") == 1
    await disconnect(bob, carol)


async def test_presence_out_denied_to_bob(server: Server) -> None:
    await roster(server, "alice", "bob", "both")
    await roster(server, "bob", "alice", "both")
    await roster(server, "alice", "carol", "both")
    await roster(server, "carol", "alice", "both")
    bob = await user(server, "bob", "laptop")
    carol = await user(server, "carol", "desk")
    bob.send_presence()
    carol.send_presence()
    # Their probes of alice done first: one still reading storage when alice comes (a
    # database a few ms away) is answered with her presence, which her broadcast brought
    # already (docs/delivery.md, "A login's round trips").
    await eventually(lambda: all(server.sessions.available(JID.parse(f"{name}@localhost"))
                                 for name in ("bob", "carol")))
    await server.drain(5)
    alice = await user(server, "alice", "phone")
    alice.send_presence(pstatus="here")
    assert (await presence_from(bob, "alice@localhost/phone"))["status"] == "here"
    await presence_from(carol, "alice@localhost/phone")

    privacy = alice.plugin["xep_0016"]
    # Raw: slixmpp's xep_0016 writes <presence-in/> for presence_out.
    await raw_iq(alice, "set", f"<query xmlns='{PRIVACY}'><list name='hide'><item type='jid' "
                               "value='bob@localhost' action='deny' order='1'><presence-out/>"
                               "</item></list></query>")
    await privacy.activate("hide")
    # §2.11: bob, who saw alice available, sees her go unavailable.
    await presence_from(bob, "alice@localhost/phone", "unavailable")
    # Her next presence reaches carol, not bob.
    alice.send_presence(pstatus="busy")
    assert (await presence_from(carol, "alice@localhost/phone"))["status"] == "busy"
    await barrier(alice, bob)
    while not bob.presences.empty():
        seen = bob.presences.get_nowait()
        assert str(seen["from"]) != "alice@localhost/phone", seen
    # Declining the list shows bob her current presence again.
    await privacy.deactivate()
    assert (await presence_from(bob, "alice@localhost/phone"))["status"] == "busy"
    await disconnect(alice, bob, carol)


async def test_a_roster_group_item_matches(server: Server) -> None:
    await roster(server, "alice", "carol", groups=("Enemies",))
    await roster(server, "alice", "bob", groups=("Friends",))
    alice = await user(server, "alice", "phone")
    bob = await user(server, "bob", "laptop")
    carol = await user(server, "carol", "desk")
    carol_errors = message_errors(carol)
    await alice.plugin["xep_0016"].edit_list("groups", [
        {"value": "Friends", "action": "allow", "order": "1", "type": "group"},
        {"value": "Enemies", "action": "deny", "order": "2", "type": "group", "message": True},
        {"value": "", "action": "deny", "order": "3", "message": True},
    ])
    await alice.plugin["xep_0016"].activate("groups")
    carol.send_message(mto="alice@localhost/phone", mbody="from an enemy", mtype="chat")
    assert (await asyncio.wait_for(carol_errors.get(), 5))["error"]["condition"] == \
        "service-unavailable"
    bob.send_message(mto="alice@localhost/phone", mbody="from a friend", mtype="chat")
    assert (await alice.next_message())["body"] == "from a friend"
    await barrier(carol, alice)
    assert alice.messages.empty()

    # §2.2 rule 9: a roster change during the session counts at once (bob is an enemy now).
    bob_errors = message_errors(bob)
    await alice.update_roster("bob@localhost", groups=["Enemies"])
    bob.send_message(mto="alice@localhost/phone", mbody="still friends?", mtype="chat")
    assert (await asyncio.wait_for(bob_errors.get(), 5))["error"]["condition"] == \
        "service-unavailable"
    await barrier(bob, alice)
    assert no_chat(alice)
    await disconnect(alice, bob, carol)


async def test_edits_are_pushed_and_lists_in_use_elsewhere_conflict(server: Server) -> None:
    phone = await user(server, "alice", "phone")
    tablet = await user(server, "alice", "tablet")
    tablet_pushes = pushes(tablet)
    phone_pushes = pushes(phone)
    await phone.plugin["xep_0016"].edit_list("work", deny_message_from("carol@localhost"))
    # §2.6: every connected resource gets a push naming the list, the editor's own included.
    for queue in (tablet_pushes, phone_pushes):
        push = await asyncio.wait_for(queue.get(), 5)
        assert [lst["name"] for lst in push["privacy"]["lists"]] == ["work"]

    await tablet.plugin["xep_0016"].activate("work")
    # §2.8: a list active on another resource cannot be removed...
    assert await refused(phone, "set", f"<query xmlns='{PRIVACY}'><list name='work'/></query>") \
        == "conflict"
    # ...but it can be edited, and the tablet applies the new definition (§2.2 rule 8).
    await phone.plugin["xep_0016"].edit_list("work", deny_message_from("bob@localhost"))
    await asyncio.wait_for(tablet_pushes.get(), 5)
    bob = await user(server, "bob", "laptop")
    bob_errors = message_errors(bob)
    bob.send_message(mto="alice@localhost/tablet", mbody="hi", mtype="chat")
    assert (await asyncio.wait_for(bob_errors.get(), 5))["error"]["condition"] == \
        "service-unavailable"

    # §2.5: the default list cannot change while another resource applies it.
    await phone.plugin["xep_0016"].edit_list("home", deny_message_from("carol@localhost"))
    await phone.plugin["xep_0016"].make_default("home")
    await tablet.plugin["xep_0016"].deactivate()  # the tablet now applies the default
    assert await refused(phone, "set", f"<query xmlns='{PRIVACY}'><default/></query>") \
        == "conflict"
    # The resource applying it may remove its own list.
    await tablet.plugin["xep_0016"].remove_list("work")
    assert await refused(phone, "get", f"<query xmlns='{PRIVACY}'><list name='work'/></query>") \
        == "item-not-found"
    await disconnect(phone, tablet, bob)


@pytest.mark.parametrize("payload", [
    # §2.1: orders are unique within a list.
    "<list name='x'><item action='deny' order='1'/><item action='allow' order='1'/></list>",
    "<list name='x'><item type='colour' value='red' action='deny' order='1'/></list>",
    "<list name='x'><item type='jid' action='deny' order='1'/></list>",
    "<list name='x'><item type='subscription' value='sometimes' action='deny' order='1'/></list>",
    "<list name='x'><item action='maybe' order='1'/></list>",
    "<list name='x'><item action='deny' order='-1'/></list>",
    "<list name='x'><item action='deny' order='1'><presence/></item></list>",
    "<list><item action='deny' order='1'/></list>",
    # §2.1: a set carries exactly one element.
    "<active name='x'/><default name='x'/>",
])
async def test_bad_input_is_a_bad_request(server: Server, payload: str) -> None:
    alice = await user(server, "alice", "phone")
    assert await refused(alice, "set", f"<query xmlns='{PRIVACY}'>{payload}</query>") == \
        "bad-request"
    # Nothing was stored.
    names = (await alice.plugin["xep_0016"].get_privacy_lists())["privacy"]
    assert list(names["lists"]) == []
    # §2.3: one list at a time.
    assert await refused(alice, "get", f"<query xmlns='{PRIVACY}'><list name='a'/>"
                                       "<list name='b'/></query>") == "bad-request"
    await disconnect(alice)


async def test_unknown_lists_are_not_found(server: Server) -> None:
    alice = await user(server, "alice", "phone")
    for type_, payload in (("get", "<list name='nope'/>"), ("set", "<active name='nope'/>"),
                           ("set", "<default name='nope'/>"), ("set", "<list name='nope'/>")):
        assert await refused(alice, type_, f"<query xmlns='{PRIVACY}'>{payload}</query>") == \
            "item-not-found", payload
    await disconnect(alice)


async def test_blocking_and_privacy_together_refuse_if_either_does(server: Server) -> None:
    alice = await user(server, "alice", "phone")
    bob = await user(server, "bob", "laptop")
    carol = await user(server, "carol", "desk")
    bob_errors = message_errors(bob)
    carol_errors = message_errors(carol)
    await alice.plugin["xep_0191"].block("bob@localhost")  # XEP-0191: silent for messages
    await alice.plugin["xep_0016"].edit_list("all", [
        {"value": "carol@localhost", "action": "deny", "order": "1", "type": "jid",
         "message": True},
        {"value": "", "action": "allow", "order": "2"}])
    await alice.plugin["xep_0016"].activate("all")
    bob.send_message(mto="alice@localhost/phone", mbody="blocked", mtype="chat")
    carol.send_message(mto="alice@localhost/phone", mbody="denied", mtype="chat")
    assert (await asyncio.wait_for(carol_errors.get(), 5))["error"]["condition"] == \
        "service-unavailable"
    await barrier(bob, carol, alice)
    assert alice.messages.empty()
    assert bob_errors.empty()
    await disconnect(alice, bob, carol)


async def test_unblocking_does_not_show_presence_a_privacy_list_denies(server: Server) -> None:
    await roster(server, "alice", "bob", "both")
    await roster(server, "bob", "alice", "both")
    bob = await user(server, "bob", "laptop")
    bob.send_presence()
    alice = await user(server, "alice", "phone")
    await raw_iq(alice, "set", f"<query xmlns='{PRIVACY}'><list name='hide'><item type='jid' "
                               "value='bob@localhost' action='deny' order='1'><presence-out/>"
                               "</item></list></query>")
    await alice.plugin["xep_0016"].activate("hide")
    await alice.plugin["xep_0191"].block("bob@localhost")
    alice.send_presence(pstatus="here")
    # XEP-0191 §3.4: an unblocked subscriber gets the current presence, unless XEP-0016's
    # presence-out still denies it (either module refusing is enough).
    await alice.plugin["xep_0191"].unblock("bob@localhost")
    await barrier(alice, bob)
    while not bob.presences.empty():
        seen = bob.presences.get_nowait()
        shown = str(seen["from"]) == "alice@localhost/phone" and seen["type"] != "unavailable"
        assert not shown, seen
    await disconnect(alice, bob)
