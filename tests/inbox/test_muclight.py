"""mod_inbox with MUC Light rooms (groupchat = ["muclight"], MongooseIM 6.4's default): a real
Suricate with mod_muc_light, real slixmpp clients over direct TLS, the inbox and MUC Light
protocols as raw IQs, SQLite."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from suricate.core.server import Server
from suricate.jid import JID
from tests.e2e.harness import Client, disconnect, running_server
from tests.inbox.test_inbox import MARKERS, inbox, login, stanza_id_of
from tests.muc_light.conftest import affs_xml, create_xml, iq, light_toml

SERVICE = "muclight.localhost"
ROOM = f"room@{SERVICE}"


def inbox_toml(options: str = "") -> str:
    return light_toml(extra_modules=f"[modules.mod_offline]\n[modules.mod_inbox]\n{options}\n")


async def start(tmp_path: Path, options: str = "") -> AsyncIterator[Server]:
    async with running_server(tmp_path, modules=inbox_toml(options)) as srv:
        for name in ("alice", "bob", "carol"):
            await srv.auth.register(JID.parse(f"{name}@localhost"), "pw")
        yield srv


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    """aff_changes and remove_on_kicked on (the defaults), and mod_muc's rooms too: a MUC
    Light room's messages must still count once (not once more as a MUC room's)."""
    async for srv in start(tmp_path, 'groupchat = ["muclight", "muc"]'):
        yield srv


@pytest.fixture(params=["false", "true"], ids=["aff_changes=false", "aff_changes=true"])
async def kept_server(request: pytest.FixtureRequest, tmp_path: Path
                      ) -> AsyncIterator[tuple[Server, bool]]:
    """remove_on_kicked off, with and without aff_changes."""
    async for srv in start(tmp_path, f"aff_changes = {request.param}\nremove_on_kicked = false"):
        yield srv, request.param == "true"


async def room_entry(client: Client, room: str = ROOM) -> dict[str, Any] | None:
    entries, _ = await inbox(client)
    found = [e for e in entries if str(e["jid"]) == room]
    return found[0] if found else None


async def settled(client: Client, check: Any, room: str = ROOM) -> dict[str, Any] | None:
    """The room's entry once ``check(entry)`` holds (the room fans messages out in a task of
    its own, after the IQ result): the test fails with the last entry seen after 5 s."""
    entry = None
    for _ in range(50):
        entry = await room_entry(client, room)
        if check(entry):
            return entry
        await asyncio.sleep(0.1)
    raise AssertionError(f"inbox entry of {room} never settled: {entry}")


async def groupchat(sender: Client, body: str, msg_id: str) -> None:
    msg = sender.make_message(mto=ROOM, mbody=body, mtype="groupchat")
    msg["id"] = msg_id
    msg.send()


async def test_members_see_the_room_with_unread_counts(server: Server) -> None:
    alice = await login(server, "alice@localhost/a")
    bob = await login(server, "bob@localhost/b1")
    bob2 = await login(server, "bob@localhost/b2")  # two sessions: still one count per message
    await iq(alice, ROOM, "set", create_xml(occupants={"bob@localhost": "member",
                                                       "carol@localhost": "member"}))
    # aff_changes: the creation notification names each member, so each has the room.
    await settled(bob, lambda e: e is not None and e["unread"] == 1)
    for i in range(3):
        await groupchat(alice, f"hello {i}", f"m{i}")
    entry = await settled(bob, lambda e: e is not None and e["body"] == "hello 2")
    assert entry is not None and entry["unread"] == 4  # the notification and 3 messages
    # The sender's own entry: its last message, nothing unread (writing reads the room).
    mine = await settled(alice, lambda e: e is not None and e["body"] == "hello 2")
    assert mine is not None and mine["unread"] == 0
    # carol is offline: her entry is kept all the same, and she sees it when she logs in.
    carol = await login(server, "carol@localhost/c")
    entries, totals = await inbox(carol)
    assert [(str(e["jid"]), e["unread"], e["body"]) for e in entries] == [
        (ROOM, 4, "hello 2")]
    assert totals["unread-messages"] == 4 and totals["active-conversations"] == 1
    # XEP-0333 in the room: a marker for an older message leaves the count, the last one
    # resets it; the marker (fanned out to the members) is not itself a message.
    await marks_read(bob, (("m0", 4), ("m2", 0)), "hello 2")
    # bob answers: his entry is read, alice's and carol's count it.
    await groupchat(bob2, "hi all", "b0")
    await settled(alice, lambda e: e is not None and (e["body"], e["unread"]) == ("hi all", 1))
    entry = await settled(carol, lambda e: e is not None and e["body"] == "hi all")
    assert entry is not None and entry["unread"] == 5
    entry = await room_entry(bob)
    assert entry is not None and (entry["body"], entry["unread"]) == ("hi all", 0)
    await disconnect(alice, bob, bob2, carol)


async def marks_read(member: Client, marks: tuple[tuple[str, int], ...], body: str) -> None:
    """The member's client sends a displayed marker (XEP-0333) to the room for each id in
    turn; the room's inbox entry then has the unread count given with it, its last message
    still ``body``."""
    for marked, unread in marks:
        before = await room_entry(member)
        marker = member.make_message(mto=ROOM, mtype="groupchat")
        marker.xml.append(ET.fromstring(f"<displayed xmlns='{MARKERS}' id='{marked}'/>"))
        marker.send()
        want = (unread, body)
        if before is not None and (before["unread"], before["body"]) == want:
            # Nothing is to change (there is no event to wait for): time for a wrong
            # change to show.
            await asyncio.sleep(0.2)
            entry = await room_entry(member)
        else:  # the inbox writer applies it in a batch of its own: wait for it
            entry = await settled(member, lambda e: e is not None
                                  and (e["unread"], e["body"]) == want)  # noqa: B023
        assert entry is not None and (entry["unread"], entry["body"]) == want, entry


async def test_a_marker_naming_the_room_stanza_id_reads_the_room(server: Server) -> None:
    """XEP-0333 in a group chat: a member's client names the message it displayed by the
    XEP-0359 stanza-id the room gave it (``by`` the room's JID): that reads the room too."""
    alice = await login(server, "alice@localhost/a")
    bob = await login(server, "bob@localhost/b")
    await iq(alice, ROOM, "set", create_xml(occupants={"bob@localhost": "member"}))
    for i in range(2):
        await groupchat(alice, f"hello {i}", f"m{i}")
    ids = []
    while len(ids) < 2:
        msg = await bob.next_message()
        if msg["type"] == "groupchat" and msg["body"]:
            ids.append(stanza_id_of(msg, ROOM))
    await settled(bob, lambda e: e is not None and e["body"] == "hello 1")
    await marks_read(bob, ((ids[0], 3), (ids[1], 0)), "hello 1")  # creation + two messages
    await disconnect(alice, bob)


async def test_affiliation_changes_and_removal(server: Server) -> None:
    alice = await login(server, "alice@localhost/a")
    bob = await login(server, "bob@localhost/b")
    carol = await login(server, "carol@localhost/c")
    await iq(alice, ROOM, "set", create_xml(occupants={"bob@localhost": "member"}))
    await groupchat(alice, "before carol", "m0")
    await settled(bob, lambda e: e is not None and e["unread"] == 2)
    # carol is added: her entry is the notification naming her; bob's (not named) is as was.
    await iq(alice, ROOM, "set", affs_xml({"carol@localhost": "member"}))
    entry = await settled(carol, lambda e: e is not None)
    assert entry is not None and entry["unread"] == 1
    assert entry["body"] == ""  # MUC Light notifications carry an empty body
    entry = await room_entry(bob)
    assert entry is not None and (entry["body"], entry["unread"]) == ("before carol", 2)
    # bob is removed: remove_on_kicked takes the room out of his inbox; carol keeps hers.
    await iq(alice, ROOM, "set", affs_xml({"bob@localhost": "none"}))
    await settled(bob, lambda e: e is None)
    await groupchat(alice, "without bob", "m1")
    entry = await settled(carol, lambda e: e is not None and e["body"] == "without bob")
    assert entry is not None and entry["unread"] == 2
    assert await room_entry(bob) is None  # a room he left sends him nothing more
    # The room destroyed: every member is removed, every entry goes.
    await iq(alice, ROOM, "set", "<query xmlns='urn:xmpp:muclight:0#destroy'/>")
    await settled(carol, lambda e: e is None)
    await settled(alice, lambda e: e is None)
    await disconnect(alice, bob, carol)


async def test_without_remove_on_kicked(kept_server: tuple[Server, bool]) -> None:
    server, aff_changes = kept_server
    alice = await login(server, "alice@localhost/a")
    bob = await login(server, "bob@localhost/b")
    await iq(alice, ROOM, "set", create_xml(occupants={"bob@localhost": "member"}))
    # The notifications go out before the IQ result: the creation one is in the inbox only
    # with aff_changes.
    entry = await room_entry(bob)
    assert (entry is not None) == aff_changes
    await groupchat(alice, "first", "m0")
    entry = await settled(bob, lambda e: e is not None and e["body"] == "first")
    assert entry is not None and entry["unread"] == (2 if aff_changes else 1)
    await iq(alice, ROOM, "set", affs_xml({"bob@localhost": "none"}))
    # bob is out and keeps the conversation: as it was, or with the notification that he is
    # out as its last message (MongooseIM: the invitation, the message, the removal).
    entry = await room_entry(bob)
    assert entry is not None
    assert (entry["body"], entry["unread"]) == (("", 3) if aff_changes else ("first", 1))
    await disconnect(alice, bob)


SMART = "esl:xmpp:smart-markers:0"


async def room_markers(client: Client) -> set[tuple[str, str]]:
    """(sender, marked id) of the room's smart markers, as the client's query sees them."""
    result = await iq(client, str(client.boundjid.bare), "get",
                      f"<query xmlns='{SMART}' peer='{ROOM}'/>")
    assert result is not None
    return {(m.get("from") or "", m.get("id") or "") for m in result.findall(f"{{{SMART}}}marker")}


async def test_smart_markers_go_with_the_membership_and_the_room(tmp_path: Path) -> None:
    # MongooseIM 6.4's mod_smart_markers: a member's markers to a MUC Light room are removed
    # when its affiliation becomes none (room_new_affiliations) and all of the room's when the
    # room is destroyed (forget_room); a new room of the same name starts without them.
    modules = light_toml(extra_modules="[modules.mod_smart_markers]\n")
    async with running_server(tmp_path, modules=modules) as server:
        for name in ("alice", "bob", "carol"):
            await server.auth.register(JID.parse(f"{name}@localhost"), "pw")
        alice = await login(server, "alice@localhost/a")
        bob = await login(server, "bob@localhost/b")
        carol = await login(server, "carol@localhost/c")
        markers = server.modules["mod_smart_markers"]
        try:
            await iq(alice, ROOM, "set", create_xml(occupants={"bob@localhost": "member",
                                                               "carol@localhost": "member"}))
            await groupchat(alice, "hello", "m0")
            for member in (bob, carol):
                marker = member.make_message(mto=ROOM, mtype="groupchat")
                marker.xml.append(ET.fromstring(f"<displayed xmlns='{MARKERS}' id='m0'/>"))
                marker.send()
            for _ in range(50):
                if len(await room_markers(alice)) == 2:
                    break
                await asyncio.sleep(0.1)
            assert await room_markers(alice) == {("bob@localhost", "m0"),
                                                 ("carol@localhost", "m0")}
            # bob is removed: his marker goes, carol's stays.
            await iq(alice, ROOM, "set", affs_xml({"bob@localhost": "none"}))
            assert await room_markers(alice) == {("carol@localhost", "m0")}
            # 6.4's can_access_room: a non-member's marker to the room (which refuses it) is
            # not kept among the members'.
            errors: asyncio.Queue[Any] = asyncio.Queue()
            bob.add_event_handler("message_error", errors.put_nowait)
            marker = bob.make_message(mto=ROOM, mtype="groupchat")
            marker.xml.append(ET.fromstring(f"<displayed xmlns='{MARKERS}' id='m1'/>"))
            marker.send()
            await asyncio.wait_for(errors.get(), 5)
            assert await room_markers(alice) == {("carol@localhost", "m0")}
            assert await markers.store.of_user("localhost", "bob") == []
            # The room destroyed: nothing of it is left.
            await iq(alice, ROOM, "set", "<query xmlns='urn:xmpp:muclight:0#destroy'/>")
            await markers.flush()
            assert await markers.store.of_user("localhost", "carol") == []
            await iq(alice, ROOM, "set", create_xml(occupants={"carol@localhost": "member"}))
            assert await room_markers(carol) == set()
        finally:
            await disconnect(alice, bob, carol)
