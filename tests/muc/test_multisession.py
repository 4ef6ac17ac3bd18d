"""Several sessions of one account under one room nick (XEP-0045 multi-session), with real
slixmpp clients over TLS: alice's phone and laptop both join as "Alice"; the room shows one
occupant Alice, delivers to both, and lets each session leave on its own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from slixmpp import JID as SJID
from slixmpp.exceptions import IqError, PresenceError

from suricate.core.server import Server
from tests.e2e.harness import Client, disconnect, running_server
from tests.muc.conftest import (
    SERVICE,
    codes,
    create_instant,
    drain,
    error_message,
    muc_toml,
    next_groupchat,
    presence_from,
    user,
)

ROOM = f"devices@{SERVICE}"
ALICE = f"{ROOM}/Alice"
MUC_USER = "{http://jabber.org/protocol/muc#user}"


def presences_from(client: Client, jid: str) -> list[Any]:
    """The MUC presences from ``jid`` received so far (the queue is emptied)."""
    got = []
    queue: asyncio.Queue[Any] = client.muc_presences  # type: ignore[attr-defined]
    while not queue.empty():
        pres = queue.get_nowait()
        if str(pres["from"]) == jid:
            got.append(pres)
    return got


def item_jid(pres: Any) -> str | None:
    item = pres.xml.find(f"{MUC_USER}x/{MUC_USER}item")
    return None if item is None else item.get("jid")


async def body(client: Client, text: str, mtype: str = "groupchat") -> Any:
    """The next message of ``mtype`` with ``text`` as body (others are skipped)."""
    while True:
        msg = await client.next_message()
        if msg["type"] == mtype and msg["body"] == text:
            return msg


async def settled(sender: Client, *receivers: Client, text: str = "sync") -> None:
    """Everything the room sent the receivers before now has arrived: the room sends to one
    session in order, so once ``sender``'s groupchat message reached each receiver, any
    presence sent to it before is in its queue."""
    sender.send_message(mto=ROOM, mbody=text, mtype="groupchat")
    for receiver in receivers:
        await body(receiver, text)


async def phone_in_room(server: Server) -> tuple[Client, Client, Client]:
    """bob's room (he is its owner) with alice in it from her phone; her laptop is connected
    but has not joined yet."""
    bob = await user(server, "bob")
    phone = await user(server, "alice", "phone")
    laptop = await user(server, "alice", "laptop")
    await create_instant(bob, ROOM, "Bob")
    await phone.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Alice", timeout=5)
    await presence_from(bob, ALICE)
    return bob, phone, laptop


async def two_sessions(server: Server) -> tuple[Client, Client, Client]:
    """bob's room (he is its owner), with alice in it from her phone and her laptop."""
    bob, phone, laptop = await phone_in_room(server)
    await laptop.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Alice", timeout=5)
    return bob, phone, laptop


async def test_two_sessions_under_one_nick(server: Server) -> None:
    bob = await user(server, "bob")
    phone = await user(server, "alice", "phone")
    laptop = await user(server, "alice", "laptop")
    await create_instant(bob, ROOM, "Bob")
    bob.send_message(mto=ROOM, mbody="before", mtype="groupchat")
    await body(bob, "before")
    await phone.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Alice", timeout=5)
    await presence_from(bob, ALICE)
    drain(bob, phone)

    # The laptop's join (same bare JID, same nick) is another session of Alice: it gets
    # what any joiner gets (§7.2.3: the others' presence, its own with 110 last, the
    # history, the subject).
    pres, _, presences, history = await laptop.plugin["xep_0045"].join_muc_wait(
        SJID(ROOM), "Alice", maxstanzas=10, timeout=5)
    assert "110" in codes(pres) and item_jid(pres) == "alice@localhost/laptop"
    assert sorted(str(p["from"]) for p in presences) == [ALICE, f"{ROOM}/Bob"]  # own incl.
    assert [m["body"] for m in history] == ["before"]
    # The phone learns of it as its own presence (110); bob sees no second Alice (the
    # new session shows the same presence: nothing to tell him).
    own = await presence_from(phone, ALICE)
    assert "110" in codes(own) and own["type"] != "unavailable"
    await settled(bob, bob, phone, laptop)
    assert presences_from(bob, ALICE) == []
    items = await bob.plugin["xep_0030"].get_items(jid=ROOM, timeout=5)
    assert sorted(str(i[0]) for i in items["disco_items"]["items"]) == [ALICE, f"{ROOM}/Bob"]

    # Groupchat: bob's message reaches both sessions; a session's message is from the nick,
    # once per receiving session (alice's two sessions included).
    bob.send_message(mto=ROOM, mbody="hello both", mtype="groupchat")
    got = [await body(phone, "hello both"), await body(laptop, "hello both")]
    sid = {m.xml.find("{urn:xmpp:sid:0}stanza-id").get("id") for m in got}
    assert len(sid) == 1
    laptop.send_message(mto=ROOM, mbody="from the laptop", mtype="groupchat")
    for client in (bob, phone, laptop):
        msg = await body(client, "from the laptop")
        assert str(msg["from"]) == ALICE

    # §7.5: a private message to the nick reaches every session of the occupant.
    bob.send_message(mto=ALICE, mbody="psst", mtype="chat")
    for client in (phone, laptop):
        pm = await body(client, "psst", "chat")
        assert str(pm["from"]) == f"{ROOM}/Bob"

    # XEP-0410: each session's self-ping is answered by the room.
    for client in (phone, laptop):
        await client.plugin["xep_0199"].send_ping(ALICE, timeout=5)

    # One session leaves: it gets its own unavailable presence (110); bob sees nothing and
    # the phone stays (messages still reach it, its self-ping still answers).
    drain(bob, phone, laptop)
    laptop.plugin["xep_0045"].leave_muc(SJID(ROOM), "Alice")
    gone = await presence_from(laptop, ALICE, "unavailable")
    assert "110" in codes(gone)
    await settled(bob, bob, phone)
    assert presences_from(bob, ALICE) == []
    assert [p["type"] for p in presences_from(phone, ALICE)] == []
    await phone.plugin["xep_0199"].send_ping(ALICE, timeout=5)
    with pytest.raises(IqError) as err:
        await laptop.plugin["xep_0199"].send_ping(ALICE, timeout=5)
    assert err.value.condition == "not-acceptable"  # XEP-0410 §3: that session is out

    # The last session leaves: now bob sees Alice go.
    phone.plugin["xep_0045"].leave_muc(SJID(ROOM), "Alice")
    await presence_from(bob, ALICE, "unavailable")
    await disconnect(bob, phone, laptop)


async def test_another_account_on_the_nick_is_a_conflict(server: Server) -> None:
    bob, phone, laptop = await two_sessions(server)
    # §7.2.9: the nick is alice's; carol (another bare JID) gets conflict.
    carol = await user(server, "carol")
    with pytest.raises(PresenceError) as err:
        await carol.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Alice", timeout=5)
    assert err.value.condition == "conflict"
    # A room that keeps one session per nick (allow_multiple_sessions off): a third session
    # of alice gets conflict too; those in stay.
    form = bob.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="allow_multiple_sessions", value="0")
    await bob.plugin["xep_0045"].set_room_config(SJID(ROOM), form, timeout=5)
    tablet = await user(server, "alice", "tablet")
    with pytest.raises(PresenceError) as err:
        await tablet.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Alice", timeout=5)
    assert err.value.condition == "conflict"
    await settled(bob, phone, laptop)
    await disconnect(bob, phone, laptop, carol, tablet)


async def test_kick_removes_every_session(server: Server) -> None:
    bob, phone, laptop = await two_sessions(server)
    drain(bob, phone, laptop)
    # §8.2: a kick is of the occupant: each session gets its unavailable with 307 and 110,
    # bob sees Alice leave once.
    await bob.plugin["xep_0045"].set_role(SJID(ROOM), "Alice", "none", timeout=5)
    for client in (phone, laptop):
        pres = await presence_from(client, ALICE, "unavailable")
        assert {"110", "307"} <= codes(pres)
    pres = await presence_from(bob, ALICE, "unavailable")
    assert "307" in codes(pres)
    await settled(bob, bob)
    assert presences_from(bob, ALICE) == []
    # Neither session is in the room any more (§7.4: not-acceptable).
    for client in (phone, laptop):
        client.send_message(mto=ROOM, mbody="still here?", mtype="groupchat")
        assert (await error_message(client))["error"]["condition"] == "not-acceptable"
    await disconnect(bob, phone, laptop)


async def test_presence_nick_change_and_disconnect(server: Server) -> None:
    bob, phone, laptop = await phone_in_room(server)
    drain(bob, phone)
    # A session joining with another presence changes what the nick shows: bob gets
    # Alice's presence again (an update, not a second occupant).
    await laptop.plugin["xep_0045"].join_muc_wait(
        SJID(ROOM), "Alice", presence_options={"pshow": "away"}, timeout=5)
    update = await presence_from(bob, ALICE)
    # bob moderates: he sees the real JID, the most recent session's.
    assert update["type"] == "away" and item_jid(update) == "alice@localhost/laptop"
    own = await presence_from(phone, ALICE)
    assert "110" in codes(own) and own["type"] == "away"

    # §7.6: a nick change by one session moves the occupant, every session with it.
    drain(bob, phone, laptop)
    laptop.send_presence(pto=f"{ROOM}/Alicia")
    old = await presence_from(bob, ALICE, "unavailable")
    assert "303" in codes(old)
    await presence_from(bob, f"{ROOM}/Alicia")
    for client in (phone, laptop):
        moved = await presence_from(client, ALICE, "unavailable")
        assert {"110", "303"} <= codes(moved)
        assert "110" in codes(await presence_from(client, f"{ROOM}/Alicia"))
    # A private message to the new nick reaches both.
    bob.send_message(mto=f"{ROOM}/Alicia", mbody="renamed", mtype="chat")
    await body(phone, "renamed", "chat")
    await body(laptop, "renamed", "chat")

    # §7.7: a presence update from one session is the nick's presence, for everyone.
    drain(bob, phone)
    laptop.send_presence(pto=f"{ROOM}/Alicia", pshow="dnd")
    assert (await presence_from(bob, f"{ROOM}/Alicia"))["type"] == "dnd"
    own = await presence_from(phone, f"{ROOM}/Alicia")
    assert own["type"] == "dnd" and "110" in codes(own)

    # The laptop's client disconnects: the phone stays, its presence (available) is what
    # the nick shows now, so bob gets it; no unavailable for him.
    drain(bob, phone)
    await disconnect(laptop)
    back = await presence_from(bob, f"{ROOM}/Alicia")
    assert back["type"] == "available"
    await settled(phone, bob)
    assert [p for p in presences_from(bob, f"{ROOM}/Alicia") if p["type"] == "unavailable"] \
        == []
    phone.send_message(mto=ROOM, mbody="still in", mtype="groupchat")
    assert str((await next_groupchat(bob))["from"]) == f"{ROOM}/Alicia"
    await disconnect(phone)
    await presence_from(bob, f"{ROOM}/Alicia", "unavailable")
    await disconnect(bob)


async def test_a_second_session_is_not_another_room(tmp_path: Any) -> None:
    """max_user_conferences counts rooms: a second session in the same room is not one."""
    async with running_server(tmp_path, modules=muc_toml("max_user_conferences = 1\n")) \
            as server:
        bob, phone, laptop = await two_sessions(server)
        with pytest.raises(PresenceError) as err:
            await laptop.plugin["xep_0045"].join_muc_wait(SJID(f"other@{SERVICE}"), "Alice",
                                                          timeout=5)
        assert err.value.condition == "resource-constraint"
        # Both sessions out of the room, one room is free again.
        phone.plugin["xep_0045"].leave_muc(SJID(ROOM), "Alice")
        await presence_from(phone, ALICE, "unavailable")
        laptop.plugin["xep_0045"].leave_muc(SJID(ROOM), "Alice")
        await presence_from(bob, ALICE, "unavailable")
        await create_instant(laptop, f"other@{SERVICE}", "Alice")
        await disconnect(bob, phone, laptop)


async def test_private_messages_are_not_carbon_copied_twice(tmp_path: Any) -> None:
    """Both devices enabled carbons (XEP-0280), as Conversations and Dino do: the room
    delivers a private message to each session, so the server must not add a <received/>
    copy of it (XEP-0280 §6: not for messages a room sent, private ones included); what a
    session sends to an occupant is still copied to the other (<sent/>)."""
    modules = muc_toml() + "\n[modules.mod_carboncopy]\n"
    async with running_server(tmp_path, modules=modules) as server:
        bob, phone, laptop = await two_sessions(server)
        carbons: list[tuple[str, str]] = []
        for name, client in (("phone", phone), ("laptop", laptop)):
            client.register_plugin("xep_0280")
            client.add_event_handler(
                "carbon_received",
                lambda m, n=name: carbons.append((n, str(m["carbon_received"]["body"]))))
            client.add_event_handler(
                "carbon_sent",
                lambda m, n=name: carbons.append((n, "sent " + str(m["carbon_sent"]["body"]))))
            await client.plugin["xep_0280"].enable(timeout=5)
        bob.send_message(mto=ALICE, mbody="psst", mtype="chat")
        for client in (phone, laptop):
            await body(client, "psst", "chat")
        phone.send_message(mto=f"{ROOM}/Bob", mbody="answer", mtype="chat")
        await body(bob, "answer", "chat")
        bob.send_message(mto=ALICE, mbody="end", mtype="chat")
        for client in (phone, laptop):
            await body(client, "end", "chat")
        assert carbons == [("laptop", "sent answer")]
        await disconnect(bob, phone, laptop)


async def test_archive_keeps_one_copy_and_occupant_ids_match(tmp_path: Any) -> None:
    """An archived room (mod_mam's muc section) keeps each groupchat message once, however
    many sessions got it; both sessions of alice carry the same occupant-id (XEP-0421 §3:
    per bare JID)."""
    archive_toml = "\n[modules.mod_mam]\nasync_writer.flush_interval = 200\n[modules.mod_mam.muc]\n"
    async with running_server(tmp_path, modules=muc_toml() + archive_toml) as server:
        bob, phone, laptop = await two_sessions(server)
        ids = set()
        for client, text in ((phone, "from the phone"), (laptop, "from the laptop")):
            client.send_message(mto=ROOM, mbody=text, mtype="groupchat")
            msg = await body(bob, text)
            ids.add(msg.xml.find("{urn:xmpp:occupant-id:0}occupant-id").get("id"))
        assert len(ids) == 1
        bob.send_message(mto=ROOM, mbody="to both", mtype="groupchat")
        for client in (phone, laptop):
            await body(client, "to both")
        results = [m async for m in phone.plugin["xep_0313"].iterate(
            jid=SJID(ROOM), rsm={"max": 25})]
        bodies = [str(r["mam_result"]["forwarded"]["stanza"]["body"]) for r in results]
        assert bodies == ["from the phone", "from the laptop", "to both"]
        await disconnect(bob, phone, laptop)
