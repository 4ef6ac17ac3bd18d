"""Roster (RFC 6121 §2, XEP-0237) and presence (RFC 6121 §3, §4) with real clients: slixmpp for
the subscription dances, a raw client where the exact XML matters."""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path
from typing import Any

import pytest

from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules import MODULES
from suricate.modules.mod_roster.store import RosterItem
from tests.e2e.harness import ALL_MODULES, RawClient, connect, disconnect, running_server

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ROSTER = "jabber:iq:roster"


async def raw_session(server: Server, user: str, password: str, resource: str) -> RawClient:
    """Log in over direct TLS with PLAIN and bind ``resource``; return the raw stream."""
    client = await RawClient.open(server.tls_port, tls=True)  # type: ignore[attr-defined]
    await client.open_stream()
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    await client.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
                      f"{token}</auth>")
    await client.expect(r"<success[^>]*?(/>|>.*?</success>)")
    await client.send("<stream:stream to='localhost' xmlns='jabber:client' "
                      "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>")
    features = await client.expect(r"<stream:features.*?(</stream:features>|<stream:features/>)")
    client.features = features  # type: ignore[attr-defined]
    await client.send(f"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                      f"<resource>{resource}</resource></bind></iq>")
    await client.expect(r"<iq[^>]*id=.bind.*?</iq>")
    return client


def iq_reply(iq_id: str) -> str:
    """A regexp for the whole answer to our IQ ``iq_id`` (empty or with a payload)."""
    return rf"<iq(?=[^>]*id=.{iq_id}.)[^>]*?(/>|>.*?</iq>)"


PUSH = r"<iq(?=[^>]*type=.set.)[^>]*>\s*<query xmlns=.jabber:iq:roster.*?</iq>"


async def roster_get(client: RawClient, iq_id: str, ver: str | None = None) -> str:
    ver_attr = f" ver='{ver}'" if ver is not None else ""
    await client.send(f"<iq type='get' id='{iq_id}'><query xmlns='{ROSTER}'{ver_attr}/></iq>")
    return await client.expect(iq_reply(iq_id))


async def register(server: Server, *names: str) -> None:
    for name in names:
        await server.auth.register(JID.parse(f"{name}@localhost"), f"{name}-pw")


async def item(server: Server, user: str, contact: str) -> Any:
    return await server.modules["mod_roster"].store.get_roster_item("localhost", user, f"{contact}@localhost")


async def client(server: Server, name: str, resource: str) -> Any:
    c = await connect(server, f"{name}@localhost/{resource}", f"{name}-pw")
    # The test decides every answer to a subscription request (slixmpp would auto-accept).
    c.auto_authorize = None
    c.auto_subscribe = False
    return c


async def presence_from(c: Any, frm: str, type_: str = "available") -> Any:
    while True:
        pres = await c.next_presence()
        # slixmpp reports an available presence's <show/> as its type
        kind = "available" if pres["type"] in ("away", "chat", "dnd", "xa") else pres["type"]
        if str(pres["from"]) == frm and kind == type_:
            return pres


# -- roster IQs --------------------------------------------------------------------------------


async def test_roster_set_get_remove_pushes_to_interested_resources(server: Server) -> None:
    await register(server, "alice", "bob")
    one = await raw_session(server, "alice", "alice-pw", "one")
    two = await raw_session(server, "alice", "alice-pw", "two")
    assert re.search(r"<query xmlns=.jabber:iq:roster.\s*/>", await roster_get(one, "g1"))
    await roster_get(two, "g2")  # both resources are now interested (RFC 6121 §2.2)

    await one.send(f"<iq type='set' id='s1'><query xmlns='{ROSTER}'>"
                   "<item jid='bob@localhost' name='Bob' subscription='both' ask='subscribe'>"
                   "<group>Friends</group></item></query></iq>")
    for c in (one, two):
        push = await c.expect(PUSH)
        assert "jid=\"bob@localhost\"" in push and "name=\"Bob\"" in push
        assert "subscription=\"none\"" in push  # §2.1.2.5: a client cannot set it
        assert "ask=" not in push
        assert "<group>Friends</group>" in push
    await one.expect(iq_reply("s1"))

    listed = await roster_get(two, "g3")
    assert "jid=\"bob@localhost\"" in listed and "<group>Friends</group>" in listed

    await two.send(f"<iq type='set' id='r1'><query xmlns='{ROSTER}'>"
                   "<item jid='bob@localhost' subscription='remove'/></query></iq>")
    for c in (one, two):
        push = await c.expect(PUSH)
        assert "subscription=\"remove\"" in push
    await two.expect(iq_reply("r1"))
    assert "bob@localhost" not in await roster_get(one, "g4")
    # §2.5.3: removing what is not there
    await one.send(f"<iq type='set' id='r2'><query xmlns='{ROSTER}'>"
                   "<item jid='bob@localhost' subscription='remove'/></query></iq>")
    assert "item-not-found" in await one.expect(iq_reply("r2"))
    await one.close()
    await two.close()


async def test_presence_to_a_bare_jid_keeps_its_place_before_a_message(server: Server) -> None:
    """RFC 6120 §10.1: a directed presence to an account, then a message to one of its
    resources: they reach it in the order they were sent."""
    await register(server, "alice", "bob")
    alice = await client(server, "alice", "phone")
    bob = await client(server, "bob", "laptop")
    seen: list[str] = []
    both = asyncio.Event()

    def note(kind: str) -> Any:
        def handler(stanza: Any) -> None:
            if str(stanza["from"]) == "bob@localhost/laptop":
                seen.append(kind)
                if len(seen) == 2:
                    both.set()
        return handler

    alice.add_event_handler("presence_available", note("presence"))
    alice.add_event_handler("message", note("message"))
    alice.send_presence()
    await presence_from(alice, "alice@localhost/phone")  # her own: she is available
    bob.send_presence(pto="alice@localhost", pstatus="here")
    bob.send_message(mto="alice@localhost/phone", mbody="right after", mtype="chat")
    await asyncio.wait_for(both.wait(), 5)
    assert seen == ["presence", "message"]
    await disconnect(alice, bob)


@pytest.mark.parametrize(("payload", "condition"), [
    ("<item jid='a@localhost'/><item jid='b@localhost'/>", "bad-request"),
    ("<item jid='a@localhost'><group>X</group><group>X</group></item>", "bad-request"),
    ("<item jid='a@localhost'><group></group></item>", "not-acceptable"),
    ("<item jid='alice@localhost'/>", "bad-request"),
    ("<item/>", "bad-request"),
    ("<item jid='a@localhost' name='" + "n" * 2000 + "'/>", "not-acceptable"),
])
async def test_roster_set_errors(server: Server, payload: str, condition: str) -> None:
    """RFC 6121 §2.3.3."""
    await register(server, "alice")
    one = await raw_session(server, "alice", "alice-pw", "one")
    await one.send(f"<iq type='set' id='e1'><query xmlns='{ROSTER}'>{payload}</query></iq>")
    reply = await one.expect(iq_reply("e1"))
    assert "type=\"error\"" in reply and condition in reply
    await one.close()


async def test_another_accounts_roster_is_forbidden(server: Server) -> None:
    await register(server, "alice", "bob")
    one = await raw_session(server, "alice", "alice-pw", "one")
    await one.send(f"<iq type='get' id='f1' to='bob@localhost'><query xmlns='{ROSTER}'/></iq>")
    assert "forbidden" in await one.expect(iq_reply("f1"))
    await one.close()


async def test_pre_approval_is_a_stream_feature(server: Server) -> None:
    await register(server, "alice")
    one = await raw_session(server, "alice", "alice-pw", "one")
    features = one.features  # type: ignore[attr-defined]
    assert "urn:xmpp:features:pre-approval" in features
    assert "urn:xmpp:features:rosterver" not in features  # versioning is off by default
    await one.close()


# -- roster versioning (XEP-0237) --------------------------------------------------------------


@pytest.mark.parametrize("store_current_id", [False, True])
async def test_roster_versioning(tmp_path: Path, store_current_id: bool) -> None:
    options = f"versioning = true\nstore_current_id = {str(store_current_id).lower()}"
    modules = "\n".join(f"[modules.{m}]" + (f"\n{options}" if m == "mod_roster" else "")
                        for m in ALL_MODULES if m in MODULES)
    async with running_server(tmp_path, modules=modules) as server:
        await register(server, "alice")
        one = await raw_session(server, "alice", "alice-pw", "one")
        assert "urn:xmpp:features:rosterver" in one.features  # type: ignore[attr-defined]
        first = await roster_get(one, "v1", ver="")
        ver = re.search(r"ver=\"([^\"]+)\"", first)
        assert ver is not None
        # XEP-0237 §3: the client's version is current -> an empty result.
        again = await roster_get(one, "v2", ver=ver.group(1))
        assert re.fullmatch(r"<iq[^>]*/>", again), again
        await one.send(f"<iq type='set' id='v3'><query xmlns='{ROSTER}'>"
                       "<item jid='carol@localhost'/></query></iq>")
        push = await one.expect(PUSH)
        new_ver = re.search(r"ver=\"([^\"]+)\"", push)
        assert new_ver is not None and new_ver.group(1) != ver.group(1)
        await one.expect(iq_reply("v3"))
        # An old version gets the whole roster with the current version.
        full = await roster_get(one, "v4", ver=ver.group(1))
        assert "carol@localhost" in full and f"ver=\"{new_ver.group(1)}\"" in full
        assert re.fullmatch(r"<iq[^>]*/>", await roster_get(one, "v5", ver=new_ver.group(1)))
        await one.close()


# -- subscriptions and presence ----------------------------------------------------------------


async def test_subscribe_approve_and_exchange_presence(server: Server) -> None:
    await register(server, "alice", "bob")
    alice = await client(server, "alice", "phone")
    bob = await client(server, "bob", "laptop")
    alice.send_presence()
    bob.send_presence()
    await presence_from(alice, "alice@localhost/phone")  # §4.2.2: one's own presence too

    # RFC 6121 §3.1: alice asks, bob sees the request from alice's bare JID.
    alice.send_presence(pto="bob@localhost", ptype="subscribe", pstatus="hi bob")
    request = await presence_from(bob, "alice@localhost", "subscribe")
    assert request["status"] == "hi bob"
    stored = await item(server, "alice", "bob")
    assert (stored.subscription, stored.ask) == ("none", "out")

    # §3.1.5: bob approves; alice gets the approval and bob's current presence.
    bob.send_presence(pto="alice@localhost", ptype="subscribed")
    await presence_from(alice, "bob@localhost", "subscribed")
    await presence_from(alice, "bob@localhost/laptop")
    assert (await item(server, "alice", "bob")).subscription == "to"
    assert (await item(server, "bob", "alice")).subscription == "from"

    # And the other way round: now both.
    bob.send_presence(pto="alice@localhost", ptype="subscribe")
    await presence_from(alice, "bob@localhost", "subscribe")
    alice.send_presence(pto="bob@localhost", ptype="subscribed")
    await presence_from(bob, "alice@localhost", "subscribed")
    await presence_from(bob, "alice@localhost/phone")
    assert (await item(server, "alice", "bob")).subscription == "both"
    assert (await item(server, "bob", "alice")).subscription == "both"
    # A roster get in a session opened before these changes is served from its copy of the
    # roster (no second read of storage): the copy followed every change.
    listed = (await alice.get_roster())["roster"]["items"]
    assert {str(j): i["subscription"] for j, i in listed.items()} == {"bob@localhost": "both"}

    # A presence update is broadcast to the subscriber (§4.4).
    alice.send_presence(pshow="away", pstatus="lunch")
    update = await presence_from(bob, "alice@localhost/phone")
    assert update["status"] == "lunch"

    # §4.5: bob's session ends; alice learns he is gone.
    await disconnect(bob)
    await presence_from(alice, "bob@localhost/laptop", "unavailable")

    # bob comes back: his initial presence reaches alice, and his probe brings him alice's.
    bob = await client(server, "bob", "desk")
    bob.send_presence()
    await presence_from(alice, "bob@localhost/desk")
    back = await presence_from(bob, "alice@localhost/phone")
    assert back["status"] == "lunch"
    await disconnect(alice, bob)


async def test_roster_remove_cancels_both_subscriptions(server: Server) -> None:
    await register(server, "alice", "bob")
    alice = await client(server, "alice", "phone")
    bob = await client(server, "bob", "laptop")
    alice.send_presence()
    bob.send_presence()
    alice.send_presence(pto="bob@localhost", ptype="subscribe")
    await presence_from(bob, "alice@localhost", "subscribe")
    bob.send_presence(pto="alice@localhost", ptype="subscribed")
    await presence_from(alice, "bob@localhost/laptop")
    bob.send_presence(pto="alice@localhost", ptype="subscribe")
    await presence_from(alice, "bob@localhost", "subscribe")
    alice.send_presence(pto="bob@localhost", ptype="subscribed")
    await presence_from(bob, "alice@localhost/phone")

    # RFC 6121 §2.5.2: removing the item sends unsubscribe and unsubscribed for the user.
    await alice.update_roster("bob@localhost", subscription="remove")
    await presence_from(bob, "alice@localhost", "unsubscribe")
    await presence_from(bob, "alice@localhost", "unsubscribed")
    await presence_from(bob, "alice@localhost/phone", "unavailable")
    assert await item(server, "alice", "bob") is None
    stored = await item(server, "bob", "alice")
    assert stored.subscription == "none"
    await disconnect(alice, bob)


async def test_pending_request_is_delivered_at_next_login(server: Server) -> None:
    await register(server, "alice", "bob")
    alice = await client(server, "alice", "phone")
    alice.send_presence()
    await alice.get_roster()
    alice.send_presence(pto="bob@localhost", ptype="subscribe", pstatus="remember me")
    # alice's roster push says her side is recorded; the request has then been routed, and the
    # server's pending work (bob's side) finishes in drain().
    await roster_push(alice, "bob@localhost")
    await server.drain(5)
    # bob is offline: the request is kept (RFC 6121 §3.1.3) but not in his visible roster.
    stored = await item(server, "bob", "alice")
    assert stored is not None and stored.ask == "in"

    bob = await client(server, "bob", "laptop")
    roster = await bob.get_roster()
    assert "alice@localhost" not in [str(j) for j in roster["roster"]["items"]]
    bob.send_presence()
    request = await presence_from(bob, "alice@localhost", "subscribe")
    assert request["status"] == "remember me"

    # Answering it clears the pending request.
    bob.send_presence(pto="alice@localhost", ptype="subscribed")
    await presence_from(alice, "bob@localhost", "subscribed")
    stored = await item(server, "bob", "alice")
    assert (stored.subscription, stored.ask, stored.ask_message) == ("from", "none", None)
    await disconnect(alice, bob)


async def test_pending_request_waits_for_a_non_negative_priority(server: Server) -> None:
    """RFC 6121 §3.1.3: a kept request is shown to a resource that takes stanzas for the
    account, as a live one is (§8.5.2.1.1: a non-negative priority): a device that comes
    online at priority -1 gets it when it raises its priority, not only at its next login
    (was: shown at once at -1, and never to a device that was already online at -1 when it
    arrived)."""
    await register(server, "alice", "bob")
    alice = await raw_session(server, "alice", "alice-pw", "phone")
    await alice.send("<presence to='bob@localhost' type='subscribe'><status>hi</status>"
                     "</presence>")
    await server.drain(5)
    bob = await raw_session(server, "bob", "bob-pw", "laptop")
    await roster_get(bob, "g1")
    await bob.send("<presence><priority>-1</priority></presence>")
    await server.drain(5)
    await bob.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert "subscribe" not in await bob.expect(r".*?" + iq_reply("p1"))
    await bob.send("<presence><priority>1</priority></presence>")
    request = await bob.expect(r"<presence[^>]*type=.subscribe.[^>]*>.*?</presence>")
    assert "from=\"alice@localhost\"" in request and "<status>hi</status>" in request
    await alice.close()
    await bob.close()


async def test_pre_approval_auto_accepts(server: Server) -> None:
    await register(server, "alice", "bob")
    alice = await client(server, "alice", "phone")
    alice.send_presence()
    bob = await raw_session(server, "bob", "bob-pw", "laptop")
    await roster_get(bob, "g1")
    await bob.send("<presence/>")
    await bob.expect(r"<presence[^>]*from=.bob@localhost/laptop.[^>]*(/>|>.*?</presence>)")
    # RFC 6121 §3.4.1: bob approves before alice asks; the server only records it.
    await bob.send("<presence to='alice@localhost' type='subscribed'/>")
    push = await bob.expect(PUSH)
    assert "approved=\"true\"" in push and "subscription=\"none\"" in push

    # §3.4.2: alice's request is answered by the server; bob never sees it.
    alice.send_presence(pto="bob@localhost", ptype="subscribe")
    await presence_from(alice, "bob@localhost", "subscribed")
    await presence_from(alice, "bob@localhost/laptop")
    seen = await bob.expect(r".*?" + PUSH)  # everything up to the push
    push = seen[seen.rindex("<iq"):]
    assert "subscription=\"from\"" in push and "approved" not in push
    assert (await item(server, "alice", "bob")).subscription == "to"
    assert "type=\"subscribe\"" not in seen
    await bob.close()
    await disconnect(alice)


@pytest.mark.parametrize("answer", ["decline", "withdraw"])
async def test_a_request_that_ends_unanswered_leaves_no_contact(server: Server,
                                                                answer: str) -> None:
    """RFC 6121 §3.1.3: a stranger's pending request is remembered, but the stranger is not in
    the user's roster. When the request ends, declined by the user ('unsubscribed', §3.2.1)
    or withdrawn by the stranger ('unsubscribe', §3.3.1), nothing stays behind: no roster
    push, and the stranger is not in the next roster get (was: an item in state none)."""
    await register(server, "alice", "mallory")
    alice = await raw_session(server, "alice", "alice-pw", "phone")
    mallory = await raw_session(server, "mallory", "mallory-pw", "x")
    await roster_get(alice, "g1")
    await alice.send("<presence/>")
    await mallory.send("<presence/>")
    await mallory.send("<presence to='alice@localhost' type='subscribe'/>")
    await alice.expect(r"<presence[^>]*type=.subscribe.[^>]*/>")
    assert (await item(server, "alice", "mallory")).ask == "in"
    if answer == "decline":
        await alice.send("<presence to='mallory@localhost' type='unsubscribed'/>")
        await mallory.expect(r"<presence[^>]*type=.unsubscribed.[^>]*/>")
    else:
        await mallory.send("<presence to='alice@localhost' type='unsubscribe'/>")
        await alice.expect(r"<presence[^>]*type=.unsubscribe.[^>]*/>")
    await server.drain(5)
    await alice.send(f"<iq type='get' id='g2'><query xmlns='{ROSTER}'/></iq>")
    seen = await alice.expect(r".*?" + iq_reply("g2"))
    assert "mallory" not in seen, seen  # neither pushed nor listed
    assert await item(server, "alice", "mallory") is None
    await alice.close()
    await mallory.close()


async def test_a_contact_added_without_name_stays_when_it_asks_to_subscribe(
        server: Server) -> None:
    """RFC 6121 §2.3: bob adds alice (no name, no group, as Conversations does), she then asks
    to subscribe (§3.1.3): alice stays in bob's roster, with no push (nothing he sees
    changed). Was: taken for a stranger's hidden request, pushed as removed and missing from
    the next roster get until bob answered."""
    await register(server, "alice", "bob")
    bob = await raw_session(server, "bob", "bob-pw", "desk")
    await roster_get(bob, "g1")
    await bob.send("<presence/>")
    await bob.send(f"<iq type='set' id='a1'><query xmlns='{ROSTER}'>"
                   "<item jid='alice@localhost'/></query></iq>")
    await bob.expect(PUSH)
    await bob.expect(iq_reply("a1"))
    alice = await raw_session(server, "alice", "alice-pw", "phone")
    await alice.send("<presence to='bob@localhost' type='subscribe'/>")
    await bob.expect(r"<presence[^>]*type=.subscribe.[^>]*/>")
    await server.drain(5)
    await bob.send(f"<iq type='get' id='g2'><query xmlns='{ROSTER}'/></iq>")
    seen = await bob.expect(r".*?" + iq_reply("g2"))
    assert "subscription=\"remove\"" not in seen, seen
    assert re.search(r"<item jid=\"alice@localhost\" subscription=\"none\"/>", seen), seen
    # At his next login the request is shown again, and alice is still listed.
    await bob.close()
    bob = await raw_session(server, "bob", "bob-pw", "laptop")
    assert "alice@localhost" in await roster_get(bob, "g3")
    await bob.send("<presence/>")
    await bob.expect(r"<presence[^>]*type=.subscribe.[^>]*from=.alice@localhost.")
    await bob.close()
    await alice.close()


async def roster_push(c: Any, jid: str) -> Any:
    """Wait until slixmpp's roster holds ``jid`` after a roster push."""


    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_update(iq: Any) -> None:
        if iq["type"] == "set" and jid in [str(k) for k in iq["roster"]["items"]] \
                and not fut.done():
            fut.set_result(iq)

    c.add_event_handler("roster_update", on_update)
    try:
        return await asyncio.wait_for(fut, 5)
    finally:
        c.del_event_handler("roster_update", on_update)


async def test_directed_presence_and_unavailable_on_logout(server: Server) -> None:
    await register(server, "alice", "carol")
    alice = await client(server, "alice", "phone")
    carol = await client(server, "carol", "desk")
    alice.send_presence()
    carol.send_presence()
    # RFC 6121 §4.6: no subscription, a presence sent to carol's full JID.
    alice.send_presence(pto="carol@localhost/desk", pstatus="psst")
    directed = await presence_from(carol, "alice@localhost/phone")
    assert directed["status"] == "psst"
    # §4.6.3: when alice goes, carol is told.
    await disconnect(alice)
    await presence_from(carol, "alice@localhost/phone", "unavailable")
    await disconnect(carol)


async def test_directed_presence_without_initial_presence_ends_with_the_session(
        server: Server) -> None:
    """RFC 6121 §4.6.3: the entities a session sent directed presence to are told when it
    ends, even if it never sent broadcast presence (a client that only joins rooms, e.g. a
    room on another server, which would otherwise keep a ghost occupant)."""
    await register(server, "alice", "carol")
    alice = await client(server, "alice", "bot")
    carol = await client(server, "carol", "desk")
    carol.send_presence()
    alice.send_presence(pto="carol@localhost/desk", pstatus="only this")
    await presence_from(carol, "alice@localhost/bot")
    await disconnect(alice)
    await presence_from(carol, "alice@localhost/bot", "unavailable")
    await disconnect(carol)


async def test_probe_from_a_stranger_reveals_nothing(server: Server) -> None:
    await register(server, "alice", "mallory")
    alice = await client(server, "alice", "phone")
    alice.send_presence()
    mallory = await raw_session(server, "mallory", "mallory-pw", "x")
    await mallory.send("<presence type='probe' to='alice@localhost'/>")
    # RFC 6121 §4.3.2: alice's presence is not revealed (her server answers 'unsubscribed',
    # which changes nothing in mallory's roster and so is not shown to her either).
    await server.drain(5)
    await mallory.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    seen = await mallory.expect(r".*?" + iq_reply("p1"))  # everything up to the pong
    assert "alice@localhost" not in seen
    await mallory.close()
    await disconnect(alice)


async def test_login_gets_each_contact_resource_presence_once(server: Server) -> None:
    """RFC 6121 §4.2.2/§4.3.2: at login the server probes each contact once (from the bare
    JID, §4.3.1) and the contact's server answers with the presence of each available
    resource once: the new client sees every contact resource exactly once. (A resource
    already online sees them again: the answers go to the bare JID, §8.5.2.1.2.)"""
    import collections
    import time

    from suricate.modules.mod_roster.store import RosterItem
    from tests.e2e.tls_client import TestClient, logged_in

    for name in ("alice", "bob", "carol"):
        await server.auth.register(JID.parse(f"{name}@localhost"), "pw")
    store = server.modules["mod_roster"].store
    for a, b in (("alice", "bob"), ("alice", "carol")):
        await store.put_roster_item("localhost", a, RosterItem(f"{b}@localhost",
                                                               subscription="both"))
        await store.put_roster_item("localhost", b, RosterItem(f"{a}@localhost",
                                                               subscription="both"))
    port = server.c2s_port  # type: ignore[attr-defined]

    def run() -> collections.Counter[str]:
        contacts = [logged_in(port, user, "pw", res)
                    for user, res in (("bob", "b1"), ("bob", "b2"), ("carol", "c1"))]
        phone: TestClient | None = None
        try:
            for contact in contacts:
                contact.send("<presence/>")
                contact.expect(r"<presence")  # its own: available before alice comes
            phone = logged_in(port, "alice", "pw", "phone")
            phone.send("<presence/>")
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                data = phone._recv(0.1)  # noqa: SLF001 - everything that arrives
                if data:
                    phone.buffer += data
            return collections.Counter(re.findall(r"<presence[^>]*from=\"([^\"]+)\"",
                                                  phone.buffer.decode()))
        finally:
            for client in [*contacts, *([phone] if phone else [])]:
                client.close()

    seen = await asyncio.to_thread(run)
    assert seen == {"bob@localhost/b1": 1, "bob@localhost/b2": 1, "carol@localhost/c1": 1,
                    "alice@localhost/phone": 1}, seen


async def test_login_probes_of_offline_contacts_are_answered_from_one_query(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 6121 §4.2.2: the login probes every contact; §4.3.2: each local contact without a
    session answers from its stored item. Those reads are batched into one query
    (RosterStore.get_roster_item_batched), with the same answers: silence for a subscriber
    that is offline, 'unsubscribed' from a contact whose roster does not have the user as a
    subscriber, which the user's roster then catches up with (§3.2.3)."""
    from suricate.modules.mod_roster.store import RosterItem

    contacts = [f"c{n}" for n in range(20)]
    await register(server, "alice", "stale", *contacts)
    store = server.modules["mod_roster"].store
    for name in contacts:
        await store.put_roster_item("localhost", "alice", RosterItem(f"{name}@localhost",
                                                                     subscription="both"))
        await store.put_roster_item("localhost", name, RosterItem("alice@localhost",
                                                                  subscription="both"))
    # alice thinks she is subscribed to stale's presence; stale's roster does not know her.
    await store.put_roster_item("localhost", "alice", RosterItem("stale@localhost",
                                                                 subscription="to"))
    sent: list[str] = []
    fetch = store.fetch

    async def counting(sql: str, *args: Any) -> Any:
        sent.append(sql)
        return await fetch(sql, *args)

    monkeypatch.setattr(store, "fetch", counting)
    alice = await raw_session(server, "alice", "alice-pw", "phone")
    await alice.send("<presence/>")
    await alice.expect(r"<presence[^>]*from=.alice@localhost/phone")
    await server.drain(5)
    # One query for the 21 probe answers (c0..c19 and stale, all about alice@localhost).
    assert sum(" IN (" in sql for sql in sent) == 1
    assert sum("i.jid = ?" in sql for sql in sent) <= 2  # + the subscription change's read
    # stale answered 'unsubscribed': alice's roster no longer says she is subscribed.
    assert (await item(server, "alice", "stale")).subscription == "none"
    for name in contacts:  # the subscribers kept their state
        assert (await item(server, "alice", name)).subscription == "both"
    await alice.close()


async def test_a_contacts_presence_routed_before_the_login_does_not_come_twice(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A contact's presence to an account with no available resource reaches no one, also
    when it waits in the account's presence order (Router._presence_in_order) behind an
    earlier presence still reading storage, and a resource comes meanwhile: that resource's
    own probe (RFC 6121 §4.2.2) brings the contact's current presence, once. With PostgreSQL
    2 ms away the wait was a probe's reads and the new login saw the presence twice
    (test_login_gets_each_contact_resource_presence_once); here the probe's read is held."""
    await register(server, "alice", "carol")
    store = server.modules["mod_roster"].store
    for a, b in (("alice", "carol"), ("carol", "alice")):
        await store.put_roster_item("localhost", a, RosterItem(f"{b}@localhost",
                                                               subscription="both"))
    roster = server.modules["mod_roster"]
    read = roster.get_roster_item
    gate = asyncio.Event()

    async def held(user: JID, contact: Any, **kwargs: Any) -> Any:
        if user.local == "alice":  # carol's login probes alice, who is offline: held
            await gate.wait()
        return await read(user, contact, **kwargs)

    monkeypatch.setattr(roster, "get_roster_item", held)
    carol = await raw_session(server, "carol", "carol-pw", "desk")
    await carol.send("<presence/>")
    await carol.expect(r"<presence[^>]*from=.carol@localhost/desk")
    # Waits behind the probe to alice, which waits at the gate.
    await carol.send("<presence><status>later</status></presence>")
    await carol.expect(r"<presence[^>]*from=.carol@localhost/desk.*?later")
    alice = await raw_session(server, "alice", "alice-pw", "phone")
    await alice.send("<presence/>")
    await alice.expect(r"<presence[^>]*from=.alice@localhost/phone")
    # (the answer to alice's probe is a presence to her bare JID: it waits in the same
    # order, behind the held probe and carol's second presence)
    gate.set()
    await server.drain(5)
    await alice.send("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    seen = await alice.expect(r".*?" + iq_reply("p1"))
    assert len(re.findall(r"<presence[^>]*from=.carol@localhost/desk", seen)) == 1, seen
    assert "later" in seen
    await carol.close()
    await alice.close()
