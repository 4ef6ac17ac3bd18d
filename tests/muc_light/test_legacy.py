"""``legacy_mode = true``: MUC Light rooms through the XEP-0045 subset of the MUC Light
protocol (§8.1), driven by slixmpp's own xep_0045 plugin over direct TLS."""

from __future__ import annotations

import asyncio

import pytest
from slixmpp import JID as SJID
from slixmpp.exceptions import IqError, PresenceError

from tests.e2e.harness import disconnect, running_server
from tests.muc_light.conftest import SERVICE, light_toml, next_message, no_message, user

ROOM = f"coven@{SERVICE}"
PLUGINS = ("xep_0030", "xep_0004", "xep_0045")


async def test_xep0045_client_creates_invites_talks_and_leaves(tmp_path: object) -> None:
    async with running_server(tmp_path, modules=light_toml("legacy_mode = true\n")) as server:  # type: ignore[arg-type]
        alice = await user(server, "alice", plugins=PLUGINS)
        bob = await user(server, "bob", plugins=PLUGINS)
        muc_a, muc_b = alice.plugin["xep_0045"], bob.plugin["xep_0045"]
        info = await alice.plugin["xep_0030"].get_info(jid=SERVICE, timeout=5)
        assert "http://jabber.org/protocol/muc" in info["disco_info"]["features"]

        # §8.1.9: joining creates the room; the nick is the bare JID.
        pres, subject, _, _ = await muc_a.join_muc_wait(SJID(ROOM), "alice@localhost",
                                                         timeout=5)
        assert {str(c) for c in pres["muc"]["status_codes"]} == {"110", "201"}
        assert pres["muc"]["affiliation"] == "owner" and pres["muc"]["role"] == "moderator"
        assert subject["type"] == "groupchat"
        await next_message(alice)  # the subject
        # §8.1.9.1: an existing room cannot be joined: registration-required.
        with pytest.raises(PresenceError) as refused:
            await muc_b.join_muc_wait(SJID(ROOM), "bob@localhost", timeout=5)
        assert refused.value.condition == "registration-required"

        # §8.1.12: the owner adds bob; bob is invited, alice sees bob's presence.
        while not bob.stanzas.empty():  # type: ignore[attr-defined]
            bob.stanzas.get_nowait()  # type: ignore[attr-defined]
        alice_pres: asyncio.Queue[object] = asyncio.Queue()
        alice.add_event_handler(f"muc::{ROOM}::presence", alice_pres.put_nowait)
        await muc_a.set_affiliation(SJID(ROOM), "member", jid=SJID("bob@localhost"), timeout=5)
        # (slixmpp's groupchat_invite event skips rooms it tried to join: read the stanza)
        invite = await next_message(bob)
        assert invite["from"] == ROOM
        assert invite["muc"]["invite"]["from"] == "alice@localhost"
        seen = await asyncio.wait_for(alice_pres.get(), 5)
        assert seen["from"] == f"{ROOM}/bob@localhost"  # type: ignore[index]
        assert seen["muc"]["affiliation"] == "member"  # type: ignore[index]
        assert seen["muc"]["role"] == "participant"  # type: ignore[index]
        # XEP-0045 §9.5 / §10.5: each list has its own affiliation only.
        members = await muc_a.get_affiliation_list(SJID(ROOM), "member", timeout=5)
        assert {str(j) for j in members} == {"bob@localhost"}
        owners = await muc_a.get_affiliation_list(SJID(ROOM), "owner", timeout=5)
        assert {str(j) for j in owners} == {"alice@localhost"}
        assert await muc_a.get_affiliation_list(SJID(ROOM), "outcast", timeout=5) == []
        moderators = await muc_a.get_roles_list(SJID(ROOM), "moderator", timeout=5)
        assert {str(j) for j in moderators} == {"alice@localhost"}

        # Messages: from room/<sender's bare JID> to every member.
        bob.send_message(mto=ROOM, mtype="groupchat", mbody="hello coven")
        for client in (alice, bob):
            msg = await next_message(client)
            assert msg["from"] == f"{ROOM}/bob@localhost" and msg["body"] == "hello coven"
        # §8.1.3: the subject as a classic message, to everyone.
        muc_b.set_subject(SJID(ROOM), "Toil and trouble")
        for client in (alice, bob):
            msg = await next_message(client)
            assert msg["from"] == ROOM and msg["subject"] == "Toil and trouble"
        # §8.1.4 / §8.1.11: the configuration form; a member may not change it.
        form = await muc_a.get_room_config(SJID(ROOM), timeout=5)
        assert form.get_values()["roomname"] == "Untitled"
        submit = alice.plugin["xep_0004"].make_form(ftype="submit")
        submit.add_field(var="roomname", value="The Coven")
        with pytest.raises(IqError) as denied:
            await muc_b.set_room_config(SJID(ROOM), submit, timeout=5)
        assert denied.value.condition == "not-allowed"
        # XEP-0045 §10.1.3: a cancelled form changes nothing and tells nobody.
        await muc_a.cancel_config(SJID(ROOM), timeout=5)
        await no_message(bob)
        await muc_a.set_room_config(SJID(ROOM), submit, timeout=5)
        for client in (alice, bob):
            msg = await next_message(client)
            assert "104" in {str(c) for c in msg["muc"]["status_codes"]}

        # §8.1.7: bob leaves by dropping his own affiliation: unavailable with 321.
        bob_pres: asyncio.Queue[object] = asyncio.Queue()
        bob.add_event_handler(f"muc::{ROOM}::presence", bob_pres.put_nowait)
        await muc_b.set_affiliation(SJID(ROOM), "none", jid=SJID("bob@localhost"), timeout=5)
        gone = await asyncio.wait_for(bob_pres.get(), 5)
        assert gone["type"] == "unavailable"  # type: ignore[index]
        assert "321" in {str(c) for c in gone["muc"]["status_codes"]}  # type: ignore[index]
        bob.send_message(mto=ROOM, mtype="groupchat", mbody="still here?")
        err = await next_message(bob)
        assert err["type"] == "error" and err["error"]["condition"] == "item-not-found"
        await no_message(alice)

        # §8.1.10: destruction.
        await muc_a.destroy(SJID(ROOM), timeout=5)
        with pytest.raises(IqError) as missing:
            await muc_a.get_room_config(SJID(ROOM), timeout=5)
        assert missing.value.condition == "item-not-found"
        await disconnect(alice, bob)
