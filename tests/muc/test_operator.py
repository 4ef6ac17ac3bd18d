"""A busy public channel run day to day, with real slixmpp clients over TLS: bulk role and
affiliation changes (XEP-0045 §9, §10), configuration changes and their side effects
(§10.2), invitations (§7.8.2), history on join (§7.2.15) across hibernation."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID as SJID
from slixmpp.exceptions import IqError, PresenceError
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import disconnect, eventually, running_server
from tests.muc.conftest import (
    SERVICE,
    codes,
    create_instant,
    create_room,
    drain,
    error_message,
    muc_toml,
    next_groupchat,
    presence_from,
    user,
)
from tests.muc.test_registration import nick_form, refused, register_iq

ROOM = f"channel@{SERVICE}"
ADMIN = "http://jabber.org/protocol/muc#admin"
DELAY = "{urn:xmpp:delay}delay"




async def _admin_set(client: Any, items: list[dict[str, str]]) -> None:
    """One muc#admin set with several items (§9, §10: all of them or none)."""
    iq = client.make_iq_set(ito=ROOM)
    query = ET.SubElement(iq.xml, f"{{{ADMIN}}}query")
    for attrs in items:
        ET.SubElement(query, f"{{{ADMIN}}}item", attrs)
    await iq.send(timeout=5)


async def _affiliations(client: Any, aff: str) -> list[str]:
    found = await client.plugin["xep_0045"].get_affiliation_list(SJID(ROOM), aff, timeout=5)
    return sorted(str(j) for j in found)


async def test_bulk_change_cannot_remove_every_owner(server: Server) -> None:
    alice = await user(server, "alice")
    await create_instant(alice, ROOM, "Alice")
    await _admin_set(alice, [{"jid": "bob@localhost", "affiliation": "owner"}])
    assert await _affiliations(alice, "owner") == ["alice@localhost", "bob@localhost"]
    # Each item alone leaves an owner; together they leave none: conflict (§10.4), and
    # nothing is applied.
    with pytest.raises(IqError) as err:
        await _admin_set(alice, [{"jid": "bob@localhost", "affiliation": "admin"},
                                 {"jid": "alice@localhost", "affiliation": "member"}])
    assert err.value.condition == "conflict"
    assert await _affiliations(alice, "owner") == ["alice@localhost", "bob@localhost"]
    await disconnect(alice)


async def test_moderator_status_of_an_admin_stays(server: Server) -> None:
    alice, bob = await user(server, "alice"), await user(server, "bob")
    await create_instant(alice, ROOM, "Alice")
    await _admin_set(alice, [{"jid": "bob@localhost", "affiliation": "admin"}])
    await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    # §9.7: an admin's or owner's moderator status cannot be revoked (not-allowed).
    with pytest.raises(IqError) as err:
        await alice.plugin["xep_0045"].set_role(SJID(ROOM), "Bob", "participant", timeout=5)
    assert err.value.condition == "not-allowed"
    await disconnect(alice, bob)


async def test_members_only_switch_removes_non_members(server: Server) -> None:
    alice, bob, carol = (await user(server, "alice"), await user(server, "bob"),
                         await user(server, "carol"))
    await create_instant(alice, ROOM, "Alice")
    await _admin_set(alice, [{"jid": "bob@localhost", "affiliation": "member"}])
    await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    await carol.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Carol", timeout=5)
    drain(alice, bob, carol)
    form = alice.plugin["xep_0004"].make_form(ftype="submit")
    form.add_field(var="muc#roomconfig_membersonly", value=True)
    await alice.plugin["xep_0045"].set_room_config(SJID(ROOM), form, timeout=5)
    # §10.2: Carol (no affiliation) leaves with 322, Bob (member) stays.
    gone = await presence_from(carol, f"{ROOM}/Carol", "unavailable")
    assert {"322", "110"} <= codes(gone)
    assert "322" in codes(await presence_from(bob, f"{ROOM}/Carol", "unavailable"))
    alice.make_message(mto=ROOM, mbody="members only now", mtype="groupchat").send()
    assert (await next_groupchat(bob))["body"] == "members only now"
    await disconnect(alice, bob, carol)


async def test_invitations_follow_allow_user_invites(server: Server) -> None:
    alice, bob = await user(server, "alice"), await user(server, "bob")
    await create_instant(alice, ROOM, "Alice")
    await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    # §10.2 muc#roomconfig_allowinvites off (MongooseIM's default_room.allow_user_invites
    # = false): an occupant who is not an admin may not invite.
    bob.plugin["xep_0045"].invite(SJID(ROOM), "carol@localhost")
    assert (await error_message(bob))["error"]["condition"] == "forbidden"
    await disconnect(alice, bob)


async def test_invitation_does_not_lift_a_ban(server: Server) -> None:
    alice, bob, carol = (await user(server, "alice"), await user(server, "bob"),
                         await user(server, "carol"))
    await create_room(alice, ROOM, "Alice", {"muc#roomconfig_membersonly": True,
                                             "muc#roomconfig_allowinvites": True})
    await _admin_set(alice, [{"jid": "bob@localhost", "affiliation": "member"},
                             {"jid": "carol@localhost", "affiliation": "outcast"}])
    await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    # A member may invite (allowinvites), which makes the invitee a member (§7.8.2); but a
    # banned user stays banned: only an admin lifts a ban (§9.2).
    bob.plugin["xep_0045"].invite(SJID(ROOM), "carol@localhost")
    assert (await error_message(bob))["error"]["condition"] == "forbidden"
    assert await _affiliations(alice, "outcast") == ["carol@localhost"]
    with pytest.raises(PresenceError) as err:
        await carol.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Carol", timeout=5)
    assert err.value.condition == "forbidden"
    await disconnect(alice, bob, carol)


async def test_history_survives_hibernation(tmp_path: Path) -> None:
    async with running_server(tmp_path, modules=muc_toml("hibernate_timeout = 50\n")) as server:
        muc = server.modules["mod_muc"]
        alice, bob, carol = (await user(server, "alice"), await user(server, "bob"),
                             await user(server, "carol"))
        await create_room(alice, ROOM, "Alice", {"muc#roomconfig_persistentroom": True})
        # A joining occupant's subject carries when it was set (§7.2.15, since 1.34.0).
        _, subject, _, _ = await carol.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Carol",
                                                                       timeout=5)
        assert subject.xml.find(DELAY) is None  # never set: no time to tell
        subjects: asyncio.Queue[Any] = asyncio.Queue()
        carol.add_event_handler("groupchat_subject", subjects.put_nowait)
        alice.plugin["xep_0045"].set_subject(SJID(ROOM), "Release day")
        assert (await asyncio.wait_for(subjects.get(), 5))["subject"] == "Release day"
        alice.make_message(mto=ROOM, mbody="see you tomorrow", mtype="groupchat").send()
        await next_groupchat(alice)
        for client, nick in ((alice, "Alice"), (carol, "Carol")):
            client.plugin["xep_0045"].leave_muc(SJID(ROOM), nick)
            await presence_from(client, f"{ROOM}/{nick}", "unavailable")
        await eventually(lambda: JID.parse(ROOM) not in muc.rooms)  # type: ignore[attr-defined]
        _, subject, _, history = await bob.plugin["xep_0045"].join_muc_wait(
            SJID(ROOM), "Bob", maxstanzas=10, timeout=5)
        assert [m["body"] for m in history] == ["see you tomorrow"]
        assert subject["subject"] == "Release day"
        delay = subject.xml.find(DELAY)
        assert delay is not None and delay.get("from") == ROOM
        assert delay.get("stamp") <= history[0].xml.find(DELAY).get("stamp")
        await disconnect(alice, bob, carol)


async def test_nicks_compare_as_rfc7700_nicknames(server: Server) -> None:
    alice, bob = await user(server, "alice"), await user(server, "bob")
    await create_instant(alice, ROOM, "Alice")
    muc_b = bob.plugin["xep_0045"]
    # §7.2.9 with RFC 7700 §2.4's comparison (case, width, spaces): these are Alice's nick.
    for spoof in ("alice", "\uff21lice", "ALICE"):
        with pytest.raises(PresenceError) as err:
            await muc_b.join_muc_wait(SJID(ROOM), spoof, timeout=5)
        assert err.value.condition == "conflict", spoof
    # Another script is another nick (RFC 7700 maps no confusables): the occupant-id
    # (XEP-0421) and, in a non-anonymous room, the real JID tell them apart.
    pres, _, _, _ = await muc_b.join_muc_wait(SJID(ROOM), "\u0410lice", timeout=5)
    assert str(pres["from"]) == f"{ROOM}/\u0410lice"
    # §7.6: a nick change is compared the same way.
    errors: asyncio.Queue[Any] = asyncio.Queue()
    bob.register_handler(Callback("nick error", StanzaPath("presence@type=error"),
                                  errors.put_nowait))
    bob.send_presence(pto=f"{ROOM}/ALICE")
    error = await asyncio.wait_for(errors.get(), 5)
    assert str(error["from"]) == f"{ROOM}/ALICE"
    assert error["error"]["condition"] == "conflict"
    # §7.10: a registered nick is reserved the same way, its owner gone or not.
    await register_iq(alice, nick_form("Alice"), room=ROOM)
    alice.plugin["xep_0045"].leave_muc(SJID(ROOM), "Alice")
    await presence_from(bob, f"{ROOM}/Alice", "unavailable")
    assert await refused(bob, nick_form("alice"), room=ROOM) == "conflict"
    bob.send_presence(pto=f"{ROOM}/\uff41lice")
    error = await asyncio.wait_for(errors.get(), 5)
    assert error["error"]["condition"] == "conflict"
    await disconnect(alice, bob)


async def test_bulk_kick_then_role_change_shows_no_ghost(server: Server) -> None:
    alice, bob, carol = (await user(server, "alice"), await user(server, "bob"),
                         await user(server, "carol"))
    await create_instant(alice, ROOM, "Alice")
    await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    await carol.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Carol", timeout=5)
    drain(alice, bob, carol)
    await _admin_set(alice, [{"nick": "Bob", "role": "none"},
                             {"nick": "Bob", "role": "visitor"}])
    assert "307" in codes(await presence_from(carol, f"{ROOM}/Bob", "unavailable"))
    alice.make_message(mto=ROOM, mbody="after the kick", mtype="groupchat").send()
    assert (await next_groupchat(carol))["body"] == "after the kick"
    # The second item met an occupant that was gone: no presence brings Bob back.
    queue = carol.muc_presences  # type: ignore[attr-defined]
    late = [queue.get_nowait() for _ in range(queue.qsize())]
    assert [str(p["from"]) for p in late] == []
    await disconnect(alice, bob, carol)


async def test_bulk_role_item_sees_the_affiliation_set_before_it(server: Server) -> None:
    alice, bob = await user(server, "alice"), await user(server, "bob")
    await create_instant(alice, ROOM, "Alice")
    await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    # Bob made admin, then silenced, in one request: the second item is checked as Bob will
    # be (an admin: §8.4 not-allowed), and nothing is applied (§9: all or none).
    with pytest.raises(IqError) as err:
        await _admin_set(alice, [{"jid": "bob@localhost", "affiliation": "admin"},
                                 {"nick": "Bob", "role": "visitor"}])
    assert err.value.condition == "not-allowed"
    assert await _affiliations(alice, "admin") == []
    await disconnect(alice, bob)


async def test_member_list_reserves_nicks_and_a_ban_frees_them(server: Server) -> None:
    alice, bob, carol = (await user(server, "alice"), await user(server, "bob"),
                         await user(server, "carol"))
    await create_instant(alice, ROOM, "Alice")
    # §9.3: a nick given with the membership is the member's reserved nick (§7.10), shown in
    # the member list (§9.5) and to the member (§7.12).
    await _admin_set(alice, [{"jid": "bob@localhost", "affiliation": "member",
                              "nick": "Bobby"}])
    members = await alice.plugin["xep_0045"].get_affiliation_list(SJID(ROOM), "member",
                                                                  timeout=5)
    assert [str(j) for j in members] == ["bob@localhost"]
    iq = alice.make_iq_get(ito=ROOM)
    ET.SubElement(ET.SubElement(iq.xml, f"{{{ADMIN}}}query"), f"{{{ADMIN}}}item",
                  {"affiliation": "member"})
    listed = (await iq.send(timeout=5)).xml.find(f"{{{ADMIN}}}query/{{{ADMIN}}}item")
    assert listed.get("nick") == "Bobby"
    # §9.5: an empty nick frees it, another one replaces it.
    await _admin_set(alice, [{"jid": "bob@localhost", "affiliation": "member", "nick": ""}])
    listed = (await iq.send(timeout=5)).xml.find(f"{{{ADMIN}}}query/{{{ADMIN}}}item")
    assert listed.get("nick") is None
    await _admin_set(alice, [{"jid": "bob@localhost", "affiliation": "member",
                              "nick": "Bobby"}])
    with pytest.raises(PresenceError) as err:
        await carol.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "bobby", timeout=5)
    assert err.value.condition == "conflict"
    # The nick of someone else cannot be given; nobody bans themselves (§9.1).
    with pytest.raises(IqError) as err:
        await _admin_set(alice, [{"jid": "carol@localhost", "affiliation": "member",
                                  "nick": "BOBBY"}])
    assert err.value.condition == "conflict"
    with pytest.raises(IqError) as err:
        await _admin_set(alice, [{"jid": "alice@localhost", "affiliation": "outcast"}])
    assert err.value.condition == "not-allowed"
    # §9.2: a ban frees the banned user's reserved nick.
    await _admin_set(alice, [{"jid": "bob@localhost", "affiliation": "outcast"}])
    pres, _, _, _ = await carol.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bobby",
                                                                 timeout=5)
    assert str(pres["from"]) == f"{ROOM}/Bobby"
    await disconnect(alice, bob, carol)


async def test_moderated_message_is_not_in_late_joiners_history(server: Server) -> None:
    alice, bob, carol = (await user(server, "alice"), await user(server, "bob"),
                         await user(server, "carol"))
    await create_instant(alice, ROOM, "Alice")
    await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    ids = []
    for body in ("spam", "hello"):
        bob.make_message(mto=ROOM, mbody=body, mtype="groupchat").send()
        got = await next_groupchat(alice)
        ids.append(got["stanza_id"]["id"])
    # XEP-0425: Alice (moderator) retracts Bob's spam; a late joiner's history (§7.2.15)
    # does not show it.
    await alice.plugin["xep_0425"].moderate(SJID(ROOM), ids[0], reason="spam", timeout=5)
    _, _, _, history = await carol.plugin["xep_0045"].join_muc_wait(
        SJID(ROOM), "Carol", maxstanzas=10, timeout=5)
    assert [m["body"] for m in history] == ["hello"]
    await disconnect(alice, bob, carol)
