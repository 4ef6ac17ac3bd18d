"""Modern MUC and odds and ends with real slixmpp clients over TLS: XEP-0410 self-ping,
IQs to occupants, XEP-0249 direct invitations, configuration notices, bad input."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from slixmpp import JID as SJID
from slixmpp.exceptions import IqError, PresenceError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from suricate.core.server import Server
from tests.e2e.harness import disconnect, running_server
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

ROOM = f"modern@{SERVICE}"


async def test_self_ping_and_iq_to_occupant(server: Server) -> None:
    alice, bob = await user(server, "alice"), await user(server, "bob")
    await create_instant(alice, ROOM, "Alice")
    ping = alice.plugin["xep_0199"]
    # XEP-0410 §3.3: a room answering self-pings itself advertises it on its own JID
    # (clients look for the feature before trusting a ping's answer as "still joined").
    info = await alice.plugin["xep_0030"].get_info(jid=ROOM, timeout=5)
    assert "http://jabber.org/protocol/muc#self-ping-optimization" in \
        info["disco_info"]["features"]
    # XEP-0410 §3: the room answers a joined occupant's self-ping.
    await ping.send_ping(f"{ROOM}/Alice", timeout=5)
    # Not joined: not-acceptable, the signal to rejoin.
    with pytest.raises(IqError) as err:
        await bob.plugin["xep_0199"].send_ping(f"{ROOM}/Alice", timeout=5)
    assert err.value.condition == "not-acceptable"
    # An IQ to another occupant goes to its client, and the answer comes back (§7.? IQ to
    # an occupant JID), from the occupant JID.
    await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    version = await alice.plugin["xep_0030"].get_info(jid=f"{ROOM}/Bob", timeout=5)
    assert str(version["from"]) == f"{ROOM}/Bob"
    assert "urn:xmpp:ping" in version["disco_info"]["features"]
    await disconnect(alice, bob)


async def test_direct_invitation_passes_through(server: Server) -> None:
    alice, bob = await user(server, "alice"), await user(server, "bob")
    await create_instant(alice, ROOM, "Alice")
    got: asyncio.Queue[Any] = asyncio.Queue()
    bob.add_event_handler("groupchat_direct_invite", got.put_nowait)
    alice.plugin["xep_0249"].send_invitation("bob@localhost/r", ROOM, reason="come")
    invite = await asyncio.wait_for(got.get(), 5)
    assert str(invite["from"]) == "alice@localhost/r"
    assert str(invite["groupchat_invite"]["jid"]) == ROOM
    await disconnect(alice, bob)


async def test_mediated_invitation_to_a_full_jid_reaches_that_session(server: Server) -> None:
    """§7.8.2: the room sends the invitation to the JID in <invite to=.../>; a full JID
    names one session (the others of the account do not get it), as Prosody and ejabberd
    route it (tests/interop: a session that sent no presence is reached so)."""
    alice = await user(server, "alice")
    one, other = await user(server, "carol", "one"), await user(server, "carol", "other")
    await create_instant(alice, ROOM, "Alice")
    drain(one, other)
    alice.plugin["xep_0045"].invite(SJID(ROOM), "carol@localhost/one", reason="come")
    invite = await one.next_message()
    assert str(invite["to"]) == "carol@localhost/one"
    assert str(invite["muc"]["invite"]["from"]) == "alice@localhost"
    with pytest.raises(TimeoutError):
        await other.next_message(0.3)
    await disconnect(alice, one, other)


async def test_configuration_notice_and_bad_input(server: Server) -> None:
    alice, bob = await user(server, "alice"), await user(server, "bob")
    await create_instant(alice, ROOM, "Alice")
    await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    notices: asyncio.Queue[Any] = asyncio.Queue()
    bob.add_event_handler("groupchat_config_status", notices.put_nowait)
    form = alice.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="muc#roomconfig_whois", value="anyone")
    await alice.plugin["xep_0045"].set_room_config(SJID(ROOM), form, timeout=5)
    # §10.2.1: 104 (configuration changed) and 172 (now non-anonymous).
    notice = await asyncio.wait_for(notices.get(), 5)
    assert {"104", "172"} <= codes(notice)
    # Only owners configure (§10.2: forbidden).
    with pytest.raises(IqError) as err:
        await bob.plugin["xep_0045"].get_room_config(SJID(ROOM), timeout=5)
    assert err.value.condition == "forbidden"
    # A value we do not take is refused, not ignored.
    form = alice.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="muc#roomconfig_maxusers", value="100000")
    with pytest.raises(IqError) as err:
        await alice.plugin["xep_0045"].set_room_config(SJID(ROOM), form, timeout=5)
    assert err.value.condition == "not-acceptable"
    # §7.2.1: a join without a nick is jid-malformed.
    errors: asyncio.Queue[Any] = asyncio.Queue()
    bob.register_handler(Callback("perr", StanzaPath("presence@type=error"), errors.put_nowait))
    bob.send_presence(pto=ROOM)
    error = await asyncio.wait_for(errors.get(), 5)
    assert error["error"]["condition"] == "jid-malformed"
    # A groupchat message from someone not in the room: not-acceptable (§7.4).
    carol = await user(server, "carol")
    carol.make_message(mto=ROOM, mbody="hi?", mtype="groupchat").send()
    msg = await carol.next_message()
    assert msg["type"] == "error" and msg["error"]["condition"] == "not-acceptable"
    await disconnect(alice, bob, carol)


async def test_service_limits(tmp_path: Any) -> None:
    options = 'max_user_conferences = 1\naccess_create = "admins"\nmax_room_id = 8\n'
    extra = """
[acl]
admin = [{user = "alice"}, {user = "carol"}]
[access]
admins = [{acl = "admin", value = "allow"}]
"""
    async with running_server(tmp_path, extra=extra, modules=muc_toml(options)) as server:
        alice, bob = await user(server, "alice"), await user(server, "bob")
        # access_create: only alice creates rooms (§10.1.1: not-allowed).
        with pytest.raises(PresenceError) as err:
            await bob.plugin["xep_0045"].join_muc_wait(SJID(f"bobs@{SERVICE}"), "Bob",
                                                       timeout=5)
        assert err.value.condition == "not-allowed"
        with pytest.raises(PresenceError) as err:
            await alice.plugin["xep_0045"].join_muc_wait(SJID(f"far-too-long@{SERVICE}"),
                                                         "Alice", timeout=5)
        assert err.value.condition == "not-acceptable"
        await create_instant(alice, ROOM, "Alice")
        carol = await user(server, "carol")
        await create_instant(carol, f"second@{SERVICE}", "Carol")
        await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
        # max_user_conferences = 1: Bob is in one room already.
        with pytest.raises(PresenceError) as err:
            await bob.plugin["xep_0045"].join_muc_wait(SJID(f"second@{SERVICE}"), "Bob",
                                                       timeout=5)
        assert err.value.condition == "resource-constraint"
        await disconnect(alice, bob, carol)


async def test_occupant_whose_session_ends_leaves(tmp_path: Any) -> None:
    # Without mod_presence nobody sends the unavailable presence for a session that ends:
    # the room notices the end of the session itself (§7.14 for the others).
    async with running_server(tmp_path, modules="[modules.mod_disco]\n[modules.mod_muc]\n") \
            as server:
        alice, bob = await user(server, "alice"), await user(server, "bob")
        await create_instant(alice, ROOM, "Alice")
        await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
        await disconnect(bob)
        gone = await presence_from(alice, f"{ROOM}/Bob", "unavailable")
        assert gone["muc"]["role"] == "none"
        await disconnect(alice)


async def test_moderation_and_retraction(server: Server) -> None:
    alice, bob, carol = (await user(server, "alice"), await user(server, "bob"),
                         await user(server, "carol"))
    await create_instant(alice, ROOM, "Alice")
    await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    moderated: asyncio.Queue[Any] = asyncio.Queue()
    bob.add_event_handler("moderated_message", moderated.put_nowait)

    async def say(client: Any, body: str) -> str:
        client.make_message(mto=ROOM, mbody=body, mtype="groupchat").send()
        while True:
            msg = await next_groupchat(client)
            if msg["body"] == body:
                return str(msg["stanza_id"]["id"])

    bad = await say(bob, "something rude")
    oops = await say(bob, "a typo")
    kept = await say(bob, "fine")
    # Only the author retracts its message (XEP-0424 in a room).
    alice.plugin["xep_0424"].send_retraction(SJID(ROOM), oops, mtype="groupchat")
    assert (await error_message(alice))["error"]["condition"] == "forbidden"
    bob.plugin["xep_0424"].send_retraction(SJID(ROOM), oops, mtype="groupchat")
    # XEP-0425: a participant may not moderate, a moderator may.
    with pytest.raises(IqError) as err:
        await bob.plugin["xep_0425"].moderate(SJID(ROOM), kept, timeout=5)
    assert err.value.condition == "forbidden"
    await alice.plugin["xep_0425"].moderate(SJID(ROOM), bad, reason="be nice", timeout=5)
    notice = await asyncio.wait_for(moderated.get(), 5)
    assert notice["retract"]["id"] == bad
    assert str(notice["retract"]["moderated"]["by"]) == f"{ROOM}/Alice"
    # The history forgets both.
    _, _, _, history = await carol.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Carol",
                                                                    maxstanzas=10, timeout=5)
    assert [m["body"] for m in history] == ["fine"]
    await disconnect(alice, bob, carol)
