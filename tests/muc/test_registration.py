"""Room nick registration (XEP-0045 §7.10, jabber:iq:register to the room) and the four
muc#roomconfig_allowpm values, with real slixmpp clients over TLS."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from slixmpp import JID as SJID
from slixmpp.exceptions import IqError, PresenceError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from suricate.core.server import Server
from suricate.modules.mod_muc.store import MucStore
from tests.e2e.harness import Client, disconnect
from tests.muc.conftest import (
    SERVICE,
    create_instant,
    create_room,
    error_message,
    presence_from,
    user,
)

REGISTER = "jabber:iq:register"
ROOM = f"verona@{SERVICE}"


async def register_iq(client: Client, payload: str, type_: str = "set",
                      room: str = ROOM) -> Any:
    iq = client.make_iq_set(ito=room) if type_ == "set" else client.make_iq_get(ito=room)
    iq.xml.append(ET.fromstring(payload))
    return await iq.send(timeout=5)


def nick_form(nick: str) -> str:
    return (f"<query xmlns='{REGISTER}'><x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#register</value>"
            f"</field><field var='muc#register_roomnick'><value>{nick}</value></field>"
            "</x></query>")


async def refused(client: Client, payload: str, room: str = ROOM) -> str:
    with pytest.raises(IqError) as err:
        await register_iq(client, payload, room=room)
    return str(err.value.condition)


async def test_registered_nick_is_reserved_for_its_owner(server: Server) -> None:
    owner, romeo, tybalt = (await user(server, "owner"), await user(server, "romeo"),
                            await user(server, "tybalt"))
    await create_room(owner, ROOM, "Owner", {"muc#roomconfig_persistentroom": "1"})
    info = await romeo.plugin["xep_0030"].get_info(jid=SJID(ROOM), timeout=5)
    assert REGISTER in info["disco_info"]["features"]
    # The form (§7.10: muc#register_roomnick), then the registration.
    form = await register_iq(romeo, f"<query xmlns='{REGISTER}'/>", "get")
    fields = {f.get("var") for f in form.xml.iter("{jabber:x:data}field")}
    assert {"FORM_TYPE", "muc#register_roomnick"} <= fields
    await register_iq(romeo, nick_form("Romeo"))
    again = await register_iq(romeo, f"<query xmlns='{REGISTER}'/>", "get")
    query = again.xml.find(f"{{{REGISTER}}}query")
    assert query.find(f"{{{REGISTER}}}registered") is not None
    assert query.findtext(f"{{{REGISTER}}}username") == "Romeo"
    # §7.12: the room tells its owner the reserved nick.
    item = await romeo.plugin["xep_0030"].get_info(jid=SJID(ROOM), node="x-roomuser-item",
                                                   timeout=5)
    assert [i[3] for i in item["disco_info"]["identities"]] == ["Romeo"]
    # Registered means member (§7.10), stored with the persistent room.
    members = await owner.plugin["xep_0045"].get_affiliation_list(SJID(ROOM), "member",
                                                                  timeout=5)
    assert [str(j) for j in members] == ["romeo@localhost"]
    store = server.module_stores["mod_muc"]
    assert isinstance(store, MucStore)
    for _ in range(250):  # up to 5 s: the room is stored after the IQ result
        stored = await store.load_room(SERVICE, "verona")
        if stored is not None and stored.nicks:
            break
        await asyncio.sleep(0.02)
    assert stored is not None and stored.nicks == {"romeo@localhost": "Romeo"}
    # Someone else: neither the nick to join with, nor to register, nor to change to.
    with pytest.raises(PresenceError) as err:
        await tybalt.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Romeo", timeout=5)
    assert err.value.condition == "conflict"
    assert await refused(tybalt, nick_form("Romeo")) == "conflict"
    assert await refused(tybalt, nick_form("")) == "not-acceptable"
    await tybalt.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Tybalt", timeout=5)
    errors: asyncio.Queue[Any] = asyncio.Queue()
    tybalt.register_handler(Callback("perr", StanzaPath("presence@type=error"),
                                     errors.put_nowait))
    tybalt.send_presence(pto=f"{ROOM}/Romeo")  # a nick change (§7.6) to the reserved nick
    assert (await asyncio.wait_for(errors.get(), 5))["error"]["condition"] == "conflict"
    # The owner of the nick joins with it; cancelling frees it.
    await romeo.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Romeo", timeout=5)
    await register_iq(romeo, f"<query xmlns='{REGISTER}'><remove/></query>")
    romeo.plugin["xep_0045"].leave_muc(SJID(ROOM), "Romeo")
    await presence_from(romeo, f"{ROOM}/Romeo", "unavailable")  # the nick is free
    await register_iq(tybalt, nick_form("Romeo"))
    await disconnect(owner, romeo, tybalt)


async def test_members_only_rooms_need_membership_to_register(server: Server) -> None:
    owner, carol = await user(server, "owner"), await user(server, "carol")
    club = f"club@{SERVICE}"
    await create_room(owner, club, "Owner", {"muc#roomconfig_membersonly": "1"})
    assert await refused(carol, nick_form("Carol"), club) == "registration-required"
    await owner.plugin["xep_0045"].set_affiliation(SJID(club), "outcast",
                                                   jid=SJID("carol@localhost"), timeout=5)
    assert await refused(carol, nick_form("Carol"), club) == "forbidden"
    await owner.plugin["xep_0045"].set_affiliation(SJID(club), "member",
                                                   jid=SJID("carol@localhost"), timeout=5)
    await register_iq(carol, nick_form("Carol"), room=club)
    await disconnect(owner, carol)


@pytest.mark.parametrize(("allowpm", "visitor", "participant"), [
    ("anyone", True, True),
    ("participants", False, True),
    ("moderators", False, False),
    ("none", False, False),
])
async def test_allowpm(server: Server, allowpm: str, visitor: bool, participant: bool) -> None:
    mod, part, vis = (await user(server, "mod"), await user(server, "part"),
                      await user(server, "vis"))
    room = f"pm-{allowpm}@{SERVICE}"
    await create_room(mod, room, "Mod", {"muc#roomconfig_allowpm": allowpm,
                                         "muc#roomconfig_moderatedroom": "1",
                                         "members_by_default": "0"})
    await part.plugin["xep_0045"].join_muc_wait(SJID(room), "Part", timeout=5)
    await vis.plugin["xep_0045"].join_muc_wait(SJID(room), "Vis", timeout=5)
    await mod.plugin["xep_0045"].set_role(SJID(room), "Part", "participant", timeout=5)
    form = await mod.plugin["xep_0045"].get_room_config(SJID(room), timeout=5)
    assert form.get_values()["muc#roomconfig_allowpm"] == allowpm

    async def pm(sender: Client, allowed: bool, body: str) -> None:
        sender.send_message(mto=f"{room}/Mod", mbody=body, mtype="chat")
        if allowed:
            got = await mod.next_message(5)
            while got["body"] != body:
                got = await mod.next_message(5)
            assert str(got["from"]) in (f"{room}/Part", f"{room}/Vis")
        else:
            err = await error_message(sender)
            assert err["error"]["condition"] == "forbidden"

    await pm(vis, visitor, "from a visitor")
    await pm(part, participant, "from a participant")
    await disconnect(mod, part, vis)


async def test_allowpm_default_follows_default_room(server: Server) -> None:
    alice = await user(server, "alice")
    await create_instant(alice, f"plain@{SERVICE}", "Alice")
    form = await alice.plugin["xep_0045"].get_room_config(SJID(f"plain@{SERVICE}"), timeout=5)
    assert form.get_values()["muc#roomconfig_allowpm"] == "anyone"
    await disconnect(alice)
