"""What real clients do in a room beyond the basic XEP-0045 flows, driven by real slixmpp
clients over TLS against one server (MUC, its archive, vCards): a join sent again by a
session already joined (§17.3 full synchronization), occupants' vCards (XEP-0054 through the
room), body-less messages with a <store/> hint (XEP-0444 reactions) in the room's archive."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID as SJID
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from suricate.core.server import Server
from tests.e2e.harness import Client, disconnect, running_server
from tests.muc.conftest import SERVICE, codes, create_instant, drain, muc_toml, user

ROOM = f"flows@{SERVICE}"
MAM = "urn:xmpp:mam:2"
SID = "urn:xmpp:sid:0"
REACTIONS = "urn:xmpp:reactions:0"
VCARD = "vcard-temp"

TOML = """
[modules.mod_vcard]
[modules.mod_mam]
async_writer.flush_interval = 50
[modules.mod_mam.muc]
"""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path, modules=muc_toml() + TOML) as srv:
        yield srv


async def said(client: Client, predicate: Any) -> Any:
    """The next groupchat message ``predicate`` accepts (others are skipped)."""
    while True:
        msg = await client.next_message(5)
        if msg["type"] == "groupchat" and predicate(msg):
            return msg


async def iq(client: Client, itype: str, to: str, payload: str) -> Any:
    stanza = client.make_iq_get(ito=to) if itype == "get" else client.make_iq_set(ito=to)
    stanza.xml.append(ET.fromstring(payload))
    return await stanza.send(timeout=5)


async def test_rejoin_vcards_and_stored_reactions(server: Server) -> None:
    alice, bob = await user(server, "alice"), await user(server, "bob")
    muc_b = bob.plugin["xep_0045"]
    await create_instant(alice, ROOM, "Alice")
    alice.plugin["xep_0045"].set_subject(SJID(ROOM), "flows")
    await muc_b.join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    alice.make_message(mto=ROOM, mbody="before the rejoin", mtype="groupchat").send()
    hello = await said(bob, lambda m: m["body"] == "before the rejoin")

    # §17.3: Bob's client lost track of the room (the room never saw it leave) and joins
    # again from the same session: it gets everything a join gets, the occupants, its own
    # presence (110), the history it asks for and the subject that ends the join, which a
    # client waits for before it shows the room (slixmpp's join_muc_wait does).
    await asyncio.sleep(0.1)
    drain(alice, bob)
    own, subject, occupants, history = await muc_b.join_muc_wait(
        SJID(ROOM), "Bob", maxstanzas=1, timeout=5)
    assert "110" in codes(own) and own["muc"]["role"] == "participant"
    assert [str(p["from"]) for p in occupants] == [f"{ROOM}/Alice", f"{ROOM}/Bob"]
    assert [m["body"] for m in history] == ["before the rejoin"]
    assert history[0]["stanza_id"]["id"] == hello["stanza_id"]["id"]
    assert subject["subject"] == "flows"
    # Still one occupant Bob: its presence did not change, so Alice heard nothing.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(alice.muc_presences.get(), 0.3)  # type: ignore[attr-defined]
    # It goes on as before: its message reaches the room.
    bob.make_message(mto=ROOM, mbody="after the rejoin", mtype="groupchat").send()
    await said(alice, lambda m: m["body"] == "after the rejoin")

    # XEP-0054 through the room: a vCard asked of an occupant JID is the account's, answered
    # by its server (Bob's client answers no vCard queries), from the occupant JID.
    await iq(bob, "set", "", f"<vCard xmlns='{VCARD}'><FN>Bob Builder</FN></vCard>")
    card = await iq(alice, "get", f"{ROOM}/Bob", f"<vCard xmlns='{VCARD}'/>")
    assert str(card["from"]) == f"{ROOM}/Bob" and card["type"] == "result"
    assert card.xml.findtext(f"{{{VCARD}}}vCard/{{{VCARD}}}FN") == "Bob Builder"

    # XEP-0444 in a room: a reaction has no body but a <store/> hint (XEP-0334 §4.4): it is
    # archived, with the stanza-id the occupants got, and a client catching up by MAM sees it.
    target = hello["stanza_id"]["id"]
    # (slixmpp raises its "message" event for messages with a body only.)
    reactions: asyncio.Queue[Any] = asyncio.Queue()
    alice.register_handler(Callback("reactions", StanzaPath("message@type=groupchat"),
                                    reactions.put_nowait))
    reaction = bob.make_message(mto=ROOM, mtype="groupchat")
    reaction.xml.append(ET.fromstring(
        f"<reactions xmlns='{REACTIONS}' id='{target}'><reaction>👍</reaction></reactions>"))
    reaction.xml.append(ET.fromstring(f"<origin-id xmlns='{SID}' id='react-1'/>"))
    reaction.xml.append(ET.fromstring("<store xmlns='urn:xmpp:hints'/>"))
    reaction.send()
    while True:
        live = await asyncio.wait_for(reactions.get(), 5)
        if live.xml.find(f"{{{REACTIONS}}}reactions") is not None:
            break
    archived = [m async for m in alice.plugin["xep_0313"].iterate(jid=SJID(ROOM),
                                                                  rsm={"max": 25})]
    kept = [m for m in archived if m["mam_result"]["forwarded"]["stanza"].xml.find(
        f"{{{REACTIONS}}}reactions") is not None]
    assert len(kept) == 1
    assert str(kept[0]["mam_result"]["id"]) == str(live["stanza_id"]["id"])
    stanza = kept[0]["mam_result"]["forwarded"]["stanza"].xml
    assert stanza.find(f"{{{REACTIONS}}}reactions").get("id") == target
    assert stanza.find(f"{{{SID}}}origin-id").get("id") == "react-1"
    await disconnect(alice, bob)
