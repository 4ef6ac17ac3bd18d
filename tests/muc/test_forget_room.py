"""mod_muc runs the forget_room hook when a room ends (MongooseIM 6.4's mod_muc:forget_room):
what other modules keep about the room goes with it, so a new room of the same name starts
without it. Seen here through mod_smart_markers (its forget_room handler drops every marker to
the room), with a real Suricate, real slixmpp clients over direct TLS and GraphQL over HTTP."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from slixmpp import JID as SJID

from suricate.core.server import Server
from tests.e2e.harness import Client, disconnect
from tests.muc.conftest import SERVICE, create_room, muc_toml, next_groupchat, presence_from, user
from tests.ops.harness import admin, ops_server

ROOM = f"gone@{SERVICE}"
MARKERS = "urn:xmpp:chat-markers:0"
SMART = "esl:xmpp:smart-markers:0"


async def room_markers(client: Client) -> set[tuple[str, str]]:
    """(sender, marked id) of the room's smart markers, as the client's query sees them."""
    stanza = client.make_iq_get(ito=client.boundjid.bare)
    stanza.xml.append(ET.fromstring(f"<query xmlns='{SMART}' peer='{ROOM}'/>"))
    result = (await stanza.send(timeout=5)).xml
    return {(m.get("from") or "", m.get("id") or "")
            for m in result.iter(f"{{{SMART}}}marker")}


async def settled(client: Client, expected: set[tuple[str, str]]) -> None:
    """The room's markers become ``expected`` (markers are written in batches, and the hook
    runs in a task of its own after the room ended): fails with what was seen after 5 s."""
    seen: set[tuple[str, str]] = set()
    for _ in range(50):
        seen = await room_markers(client)
        if seen == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"markers of {ROOM}: {seen}, expected {expected}")


@pytest.mark.parametrize("end", ["owner_destroys", "admin_destroys", "temporary_emptied",
                                 "persistent_emptied"])
async def test_the_end_of_a_room_forgets_its_markers(tmp_path: Path, end: str) -> None:
    modules = muc_toml() + "[modules.mod_smart_markers]\n"
    async with ops_server(tmp_path, modules=modules) as server:
        await check_ending(server, end)


async def check_ending(server: Server, end: str) -> None:
    alice, bob = await user(server, "alice"), await user(server, "bob")
    try:
        persistent = end != "temporary_emptied"
        await create_room(alice, ROOM, "al",
                          {"muc#roomconfig_persistentroom": "1" if persistent else "0"})
        await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "bo", timeout=5)
        msg = alice.make_message(mto=ROOM, mbody="hello", mtype="groupchat")
        msg["id"] = "m0"
        msg.send()
        await next_groupchat(bob)
        for client in (alice, bob):
            marker = client.make_message(mto=ROOM, mtype="groupchat")
            marker.xml.append(ET.fromstring(f"<displayed xmlns='{MARKERS}' id='m0'/>"))
            marker.send()
        kept = {("alice@localhost", "m0"), ("bob@localhost", "m0")}
        await settled(alice, kept)
        if end == "owner_destroys":  # XEP-0045 §10.9
            await alice.plugin["xep_0045"].destroy(SJID(ROOM), reason="done", timeout=5)
        elif end == "admin_destroys":  # the GraphQL muc category (6.4's deleteRoom)
            await admin(server, f'mutation {{ muc {{ deleteRoom(room: "{ROOM}", '
                                'reason: "done") } }')
        else:  # both leave (§7.14): a temporary room ends, a persistent one stays
            for client, nick in ((bob, "bo"), (alice, "al")):
                client.plugin["xep_0045"].leave_muc(SJID(ROOM), nick)
                await presence_from(client, f"{ROOM}/{nick}", "unavailable")
        if end == "persistent_emptied":
            await asyncio.sleep(0.3)  # what a forget_room run would have removed by now
            assert await room_markers(bob) == kept
            return
        await settled(bob, set())
        markers = server.modules["mod_smart_markers"]
        assert await markers.store.of_user("localhost", "alice") == []  # type: ignore[attr-defined]
        # A new room of the same name starts without them.
        await create_room(alice, ROOM, "al", {})
        assert await room_markers(alice) == set()
    finally:
        await disconnect(alice, bob)
