"""XEP-0045 rooms driven by real slixmpp clients (xep_0045) over TLS: the service, creation,
joining, presence broadcast (§7.2), groupchat messages, history, subject, nick changes."""

from __future__ import annotations

import asyncio

import pytest
from slixmpp import JID as SJID
from slixmpp.exceptions import IqError, PresenceError

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import disconnect, eventually
from tests.muc.conftest import (
    SERVICE,
    codes,
    create_instant,
    drain,
    error_message,
    next_groupchat,
    presence_from,
    user,
)

ROOM = f"room@{SERVICE}"


async def test_service_discovery(server: Server) -> None:
    alice = await user(server, "alice")
    disco = alice.plugin["xep_0030"]
    items = await disco.get_items(jid="localhost", timeout=5)
    assert SERVICE in {i[0] for i in items["disco_items"]["items"]}
    info = await disco.get_info(jid=SERVICE, timeout=5)
    assert ("conference", "text", None, "Chatrooms") in info["disco_info"]["identities"]
    assert "http://jabber.org/protocol/muc" in info["disco_info"]["features"]
    # A room that does not exist: item-not-found (XEP-0030 §3.1).
    with pytest.raises(IqError) as err:
        await disco.get_info(jid=f"nowhere@{SERVICE}", timeout=5)
    assert err.value.condition == "item-not-found"
    await disconnect(alice)


async def test_create_join_talk(server: Server) -> None:
    alice, bob = await user(server, "alice"), await user(server, "bob")
    muc_a, muc_b = alice.plugin["xep_0045"], bob.plugin["xep_0045"]
    # §10.1.2: a new room is locked (201) until its owner accepts the default configuration.
    pres, _, _, _ = await muc_a.join_muc_wait(SJID(ROOM), "Alice", timeout=5)
    assert {"110", "201"} <= codes(pres)
    assert pres["muc"]["affiliation"] == "owner" and pres["muc"]["role"] == "moderator"
    with pytest.raises(PresenceError) as locked:
        await muc_b.join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    assert locked.value.condition == "item-not-found"
    form = alice.plugin["xep_0004"].make_form(ftype="submit")
    await muc_a.set_room_config(SJID(ROOM), form, timeout=5)

    pres, subject, occupants, history = await muc_b.join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    assert "110" in codes(pres) and "201" not in codes(pres)
    assert pres["muc"]["role"] == "participant" and pres["muc"]["affiliation"] == "none"
    # §7.2.3: the occupants first (semi-anonymous room: no real JID for a participant).
    # (slixmpp lists the self-presence among them too, last.)
    assert [str(p["from"]) for p in occupants] == [f"{ROOM}/Alice", f"{ROOM}/Bob"]
    assert not occupants[0]["muc"]["jid"]
    # §7.2.16: an empty <subject/> when there is none, after the (empty) history.
    empty = subject.xml.find("{jabber:client}subject")
    assert empty is not None and not empty.text and history == []
    # Alice, a moderator, sees Bob's real JID.
    seen = await presence_from(alice, f"{ROOM}/Bob")
    assert str(seen["muc"]["jid"]) == "bob@localhost/r"

    muc_b_msg = bob.make_message(mto=ROOM, mbody="hello room", mtype="groupchat")
    muc_b_msg.send()
    for client in (alice, bob):
        msg = await next_groupchat(client)
        assert msg["body"] == "hello room" and str(msg["from"]) == f"{ROOM}/Bob"
        # XEP-0359 stanza-id by the room, XEP-0421 occupant-id.
        sid = msg.xml.find("{urn:xmpp:sid:0}stanza-id")
        assert sid is not None and sid.get("by") == ROOM and sid.get("id")
        oid = msg.xml.find("{urn:xmpp:occupant-id:0}occupant-id")
        assert oid is not None and oid.get("id")

    info = await alice.plugin["xep_0030"].get_info(jid=ROOM, timeout=5)
    features = set(info["disco_info"]["features"])
    assert {"http://jabber.org/protocol/muc", "muc_public", "muc_temporary", "muc_open",
            "muc_semianonymous", "muc_unsecured", "urn:xmpp:sid:0",
            "urn:xmpp:occupant-id:0"} <= features
    items = await alice.plugin["xep_0030"].get_items(jid=SERVICE, timeout=5)
    assert ROOM in {i[0] for i in items["disco_items"]["items"]}

    # §7.14: leaving; everyone sees it, the last one out ends a temporary room.
    muc_b.leave_muc(SJID(ROOM), "Bob")
    gone = await presence_from(alice, f"{ROOM}/Bob", "unavailable")
    assert gone["muc"]["role"] == "none"
    muc_a.leave_muc(SJID(ROOM), "Alice")
    rooms = server.modules["mod_muc"].rooms  # type: ignore[attr-defined]
    await eventually(lambda: JID.parse(ROOM) not in rooms)
    await disconnect(alice, bob)


async def test_history_subject_nick_change_private(server: Server) -> None:
    alice, bob = await user(server, "alice"), await user(server, "bob")
    muc_a, muc_b = alice.plugin["xep_0045"], bob.plugin["xep_0045"]
    await create_instant(alice, ROOM, "Alice")
    muc_a.set_subject(SJID(ROOM), "Today: tests")
    for i in range(5):
        alice.make_message(mto=ROOM, mbody=f"m{i}", mtype="groupchat").send()
    for _ in range(5):
        await next_groupchat(alice)
    # §7.2.15: maxstanzas picks the latest, each with a delay from the room.
    _, subject, _, history = await muc_b.join_muc_wait(SJID(ROOM), "Bob", maxstanzas=2,
                                                       timeout=5)
    assert [m["body"] for m in history] == ["m3", "m4"]
    assert all(str(m["delay"]["from"]) == ROOM for m in history)
    assert subject["subject"] == "Today: tests"
    assert str(subject["from"]) == f"{ROOM}/Alice"
    muc_b.leave_muc(SJID(ROOM), "Bob")
    await presence_from(bob, f"{ROOM}/Bob", "unavailable")
    _, _, _, history = await muc_b.join_muc_wait(SJID(ROOM), "Bob", maxchars=0, timeout=5)
    assert history == []
    muc_b.leave_muc(SJID(ROOM), "Bob")
    await presence_from(bob, f"{ROOM}/Bob", "unavailable")
    _, _, _, history = await muc_b.join_muc_wait(SJID(ROOM), "Bob", seconds=3600, timeout=5)
    assert [m["body"] for m in history] == [f"m{i}" for i in range(5)]

    # §7.6: nick change = unavailable with 303 (and the new nick), then the new presence.
    await asyncio.sleep(0.1)
    drain(alice, bob)
    bob.send_presence(pto=f"{ROOM}/Robert")
    old = await presence_from(alice, f"{ROOM}/Bob", "unavailable")
    item = old.xml.find("{http://jabber.org/protocol/muc#user}x/"
                        "{http://jabber.org/protocol/muc#user}item")
    assert "303" in codes(old) and item.get("nick") == "Robert"
    await presence_from(alice, f"{ROOM}/Robert")
    own = await presence_from(bob, f"{ROOM}/Robert")
    assert "110" in codes(own)
    # §7.2.9: a nick in use is a conflict.
    carol = await user(server, "carol")
    with pytest.raises(PresenceError) as conflict:
        await carol.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Alice", timeout=5)
    assert conflict.value.condition == "conflict"

    # §7.5: a private message reaches the real JID, from the sender's occupant JID.
    alice.send_message(mto=f"{ROOM}/Robert", mbody="psst", mtype="chat")
    while True:
        pm = await bob.next_message()
        if pm["body"] == "psst":
            break
    assert str(pm["from"]) == f"{ROOM}/Alice" and pm["type"] == "chat"
    # To a nick nobody has: item-not-found; groupchat to an occupant: bad-request.
    alice.send_message(mto=f"{ROOM}/Nobody", mbody="?", mtype="chat")
    err = await error_message(alice)
    assert err["error"]["condition"] == "item-not-found"
    await disconnect(alice, bob, carol)
