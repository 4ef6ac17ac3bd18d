"""A MongooseIM customer's mobile app on MUC Light, walked end to end: the configuration such an
app's operator writes (mod_muc_light, mod_mam with pm and muc, mod_inbox with groupchat =
["muclight"], mod_smart_markers, mod_offline, XEP-0357 push), real Suricate, real slixmpp
clients over direct TLS and a real XEP-0114 component standing in for the app's push server.
What MongooseIM 6.4 does is cited where a check depends on it (docs/muc_light.md, "With the
archive, offline members and the inbox")."""

from __future__ import annotations

import asyncio
import contextlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slixmpp import JID as SJID
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from suricate.core.c2s import STREAM_MANAGEMENT
from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_muc_light import rules
from suricate.protocol.c2s import C2SState
from tests.e2e.harness import (
    Client,
    connect,
    disconnect,
    eventually,
    free_port,
    running_server,
)
from tests.e2e.test_component import SECRET, component_toml
from tests.inbox.test_inbox import CONV, INBOX, MARKERS
from tests.inbox.test_inbox import inbox as inbox_query
from tests.muc_light.conftest import (
    NS,
    SERVICE,
    affs_xml,
    create_xml,
    iq,
    iq_error,
    users_of,
)
from tests.muc_light.conftest import user as light_user
from tests.pusher.test_push import APP, PUSH, AppServer, summary

SID = "urn:xmpp:sid:0"
MAM = "urn:xmpp:mam:2"
AFFS = f"{NS}#affiliations"
ROOM = f"crew@{SERVICE}"

#: What the operator of such an app writes (MongooseIM 6.4 names): the room archive on the
#: MUC Light service, the inbox with MUC Light rooms, offline storage for one-to-one chats,
#: push for phones in a pocket.
APP_MODULES = """
[modules.mod_disco]
[modules.mod_presence]
[modules.mod_roster]
[modules.mod_offline]
[modules.mod_stream_management]
[modules.mod_mam]
async_writer.flush_interval = 50
[modules.mod_mam.pm]
[modules.mod_mam.muc]
host = "muclight.@HOST@"
[modules.mod_muc_light]
host = "muclight.@HOST@"
rooms_per_user = 100
max_occupants = 50
[modules.mod_inbox]
groupchat = ["muclight"]
reset_markers = ["displayed"]
aff_changes = true
remove_on_kicked = true
[modules.mod_smart_markers]
[modules.mod_event_pusher.push]
"""
PLUGINS = ("xep_0030", "xep_0313")


@contextlib.asynccontextmanager
async def app_server(tmp: Path) -> AsyncIterator[tuple[Server, AppServer]]:
    plain, tls = free_port(), free_port()
    async with running_server(tmp, extra=component_toml(tmp, plain, tls),
                              modules=APP_MODULES) as server:
        push = AppServer(APP, SECRET)
        push.connect("127.0.0.1", plain)
        await asyncio.wait_for(asyncio.shield(push.started), 10)
        try:
            yield server, push
        finally:
            push.disconnect()


async def phone(server: Server, name: str) -> Client:
    """The app logged in: every message kept in ``stanzas``, inbox results apart."""
    client = await light_user(server, name, plugins=PLUGINS)
    results: asyncio.Queue[Any] = asyncio.Queue()
    client.register_handler(Callback(
        "inbox results", MatchXPath(f"{{jabber:client}}message/{{{INBOX}}}result"),
        lambda msg: results.put_nowait(msg.xml.find(f"{{{INBOX}}}result"))))
    client.inbox_results = results  # type: ignore[attr-defined]
    return client


async def received(client: Client, check: Callable[[Any], bool], timeout: float = 5.0) -> Any:
    """The next message for which ``check`` holds (the others are skipped: inbox results,
    notifications the step does not look at)."""
    queue: asyncio.Queue[Any] = client.stanzas  # type: ignore[attr-defined]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        msg = await asyncio.wait_for(queue.get(), max(0.01, deadline - loop.time()))
        if check(msg):
            return msg


def from_room(body: str | None = None) -> Callable[[Any], bool]:
    def check(msg: Any) -> bool:
        return str(msg["from"].bare) == ROOM and (body is None or msg["body"] == body)
    return check


def affs_of(msg: Any) -> dict[str, str]:
    x = msg.xml.find(f"{{{AFFS}}}x")
    return {} if x is None else users_of(x, AFFS)


async def entry(client: Client, room: str = ROOM) -> dict[str, Any] | None:
    entries, _ = await inbox_query(client)
    found = [e for e in entries if str(e["jid"]) == room]
    return found[0] if found else None


async def settled(client: Client, check: Callable[[dict[str, Any] | None], bool],
                  room: str = ROOM) -> dict[str, Any] | None:
    """The room's inbox entry once ``check`` holds (written in batches, off the message
    path)."""
    last = None
    for _ in range(50):
        last = await entry(client, room)
        if check(last):
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"inbox entry of {room} never settled: {last}")


async def say(sender: Client, body: str, msg_id: str) -> None:
    msg = sender.make_message(mto=ROOM, mbody=body, mtype="groupchat")
    msg["id"] = msg_id
    msg.send()


def stanza_id(msg: Any) -> str:
    sid = msg.xml.find(f"{{{SID}}}stanza-id")
    assert sid is not None and sid.get("by") == ROOM
    return str(sid.get("id"))


async def enable_push(client: Client) -> None:
    stanza = client.make_iq_set()
    node = f"n-{client.boundjid.user}"
    stanza.xml.append(ET.fromstring(f"<enable xmlns='{PUSH}' jid='{APP}' node='{node}'/>"))
    await stanza.send(timeout=5)


async def test_the_rooms_life_as_the_app_sees_it(tmp_path: Path) -> None:
    async with app_server(tmp_path) as (server, _push):
        alice, bob, carol, dave = [await phone(server, n) for n in ("alice", "bob", "carol", "dave")]
        try:
            # A room with a chosen id: every first member is told, and has it in its inbox
            # (6.4's aff_changes: the notification naming the member is unread, the owner's
            # own included).
            await iq(alice, ROOM, "set", create_xml(
                "", {"bob@localhost": "member", "carol@localhost": "member"},
                roomname="Crew", subject="Launch"))
            for client in (alice, bob, carol):
                msg = await received(client, from_room())
                assert affs_of(msg) == {str(client.boundjid.bare): (
                    "owner" if client is alice else "member")}
                await settled(client, lambda e: e is not None and e["unread"] == 1)
            # A room named by the service (§5.1.1): the app learns its JID from the
            # notification's sender, and so does the inbox.
            await iq(dave, SERVICE, "set", create_xml(
                "", {"bob@localhost": "member"}, roomname="Side"))
            side = str((await received(bob, lambda m: m["from"].domain == SERVICE
                                       and str(m["from"].bare) != ROOM))["from"].bare)
            await settled(bob, lambda e: e is not None and e["unread"] == 1, room=side)
            # The rooms list (disco#items on the service) carries names and versions.
            items = await iq(bob, SERVICE, "get",
                             "<query xmlns='http://jabber.org/protocol/disco#items'/>")
            assert items is not None
            listed = {i.get("jid"): (i.get("name"), i.get("version")) for i in items}
            assert listed.keys() == {ROOM, side} and listed[side][0] == "Side"
            name, version = listed[ROOM]
            assert name == "Crew"
            # Version-based fetches: the current version gives an empty result.
            for what in ("info", "affiliations", "configuration"):
                assert await iq(bob, ROOM, "get", f"<query xmlns='{NS}#{what}'>"
                                f"<version>{version}</version></query>") is None
                got = await iq(bob, ROOM, "get", f"<query xmlns='{NS}#{what}'>"
                               "<version>old</version></query>")
                assert got is not None and got.findtext(f"{{{NS}#{what}}}version") == version

            # A member changes the subject (always allowed): everyone is told, the inbox does
            # not count configuration changes (6.4 keeps only changes naming the member).
            await iq(bob, ROOM, "set", f"<query xmlns='{NS}#configuration'>"
                     "<subject>Countdown</subject></query>")
            for client in (alice, bob, carol):
                msg = await received(client, from_room())
                assert msg.xml.findtext(f"{{{NS}#configuration}}x/"
                                        f"{{{NS}#configuration}}subject") == "Countdown"
            assert (await entry(carol) or {}).get("unread") == 1

            # Talk: unread counts per member, the sender's own entry read.
            await say(alice, "T-10", "m1")
            await say(bob, "T-9", "m2")
            ids = [stanza_id(await received(carol, from_room(b))) for b in ("T-10", "T-9")]
            await settled(carol, lambda e: e is not None and e["unread"] == 3
                          and e["body"] == "T-9")
            # bob wrote last: writing reads the room (6.4's write_to_sender_inbox).
            await settled(bob, lambda e: e is not None and e["unread"] == 0
                          and e["body"] == "T-9")
            await settled(alice, lambda e: e is not None and e["unread"] == 1)
            # carol displays the last message (by the room's stanza-id): read.
            marker = carol.make_message(mto=ROOM, mtype="groupchat")
            marker.xml.append(ET.fromstring(f"<displayed xmlns='{MARKERS}' id='{ids[1]}'/>"))
            marker.send()
            await settled(carol, lambda e: e is not None and e["unread"] == 0)
            # The marker reached the other members, and counts as nothing in their inbox.
            await received(alice, lambda m: m.xml.find(f"{{{MARKERS}}}displayed") is not None)
            assert (await entry(alice) or {}).get("unread") == 1

            # dave is added: his inbox gets the room with the notification naming him.
            await iq(alice, ROOM, "set", affs_xml({"dave@localhost": "member"}))
            msg = await received(dave, from_room())
            assert affs_of(msg) == {"dave@localhost": "member"}
            await settled(dave, lambda e: e is not None and e["unread"] == 1)
            assert (await entry(carol) or {}).get("unread") == 0  # not naming carol

            # Blocking: bob blocks the room; removed and added again he is skipped silently.
            await iq(alice, ROOM, "set", affs_xml({"bob@localhost": "none"}))
            await settled(bob, lambda e: e is None)  # remove_on_kicked: the room vanishes
            await iq(bob, SERVICE, "set", f"<query xmlns='{NS}#blocking'>"
                     f"<room action='deny'>{ROOM}</room></query>")
            await iq(alice, ROOM, "set", affs_xml({"bob@localhost": "member"}))
            got = await iq(alice, ROOM, "get", f"<query xmlns='{NS}#affiliations'/>")
            assert got is not None and "bob@localhost" not in users_of(got, AFFS)
            assert await entry(bob) is None
            # ... and he can neither read the room's archive nor its info any more.
            assert await iq_error(bob, ROOM, "get", f"<query xmlns='{NS}#info'/>") \
                == "item-not-found"
            assert await iq_error(bob, ROOM, "set", f"<query xmlns='{MAM}'/>") == "forbidden"

            # The owner leaves: a member it did not touch becomes owner (6.4's rule: the
            # first remaining member), everyone staying is told both changes.
            await iq(alice, ROOM, "set", affs_xml({"alice@localhost": "none"}))
            msg = await received(carol, lambda m: from_room()(m)
                                 and "alice@localhost" in affs_of(m))
            assert affs_of(msg) == {"alice@localhost": "none", "carol@localhost": "owner"}
            await settled(alice, lambda e: e is None)
            # carol, owner now, changes what only the owner may change, and destroys it.
            await iq(carol, ROOM, "set", f"<query xmlns='{NS}#configuration'>"
                     "<roomname>Crew 2</roomname></query>")
            await iq(carol, ROOM, "set", f"<query xmlns='{NS}#destroy'/>")
            for client in (carol, dave):
                await received(client, lambda m: m.xml.find(f"{{{NS}#destroy}}x") is not None)
                await settled(client, lambda e: e is None)
            items = await iq(carol, SERVICE, "get",
                             "<query xmlns='http://jabber.org/protocol/disco#items'/>")
            assert items is None or list(items) == []
        finally:
            await disconnect(alice, bob, carol, dave)


async def test_an_offline_member_catches_up_from_push_inbox_and_archive(tmp_path: Path) -> None:
    async with app_server(tmp_path) as (server, push):
        alice, bob, carol = [await phone(server, n) for n in ("alice", "bob", "carol")]
        try:
            await enable_push(bob)
            await iq(alice, ROOM, "set", create_xml(occupants={"bob@localhost": "member"}))
            await received(bob, from_room())
            await disconnect(bob)  # the app is closed: bob has no session
            await asyncio.sleep(0.2)

            ids: list[str] = []
            started = datetime.now(UTC)
            # While bob is away: carol is added (a notification not naming bob), a
            # configuration change, then messages.
            await iq(alice, ROOM, "set", affs_xml({"carol@localhost": "member"}))
            await iq(alice, ROOM, "set", f"<query xmlns='{NS}#configuration'>"
                     "<subject>news</subject></query>")
            for i in range(3):
                await say(alice if i != 1 else carol, f"while away {i}", f"w{i}")
                # One at a time: two senders' messages may reach the room in either order.
                got = await received(alice, from_room(f"while away {i}"))
                ids.append(stanza_id(got))

            # Push: one notification per message with a body, from the room JID of its
            # sender; 6.4 publishes none for the room's notifications (their body is empty).
            notes = [summary((await asyncio.wait_for(push.published.get(), 5))[1])
                     for _ in range(3)]
            assert [(n["last-message-sender"], n["last-message-body"]) for n in notes] == [
                (f"{ROOM}/alice@localhost", "while away 0"),
                (f"{ROOM}/carol@localhost", "while away 1"),
                (f"{ROOM}/alice@localhost", "while away 2")]
            await asyncio.sleep(0.3)
            assert push.published.empty(), summary(push.published.get_nowait()[1])

            # bob opens the app: MUC Light keeps no offline copies (6.4: the room archive is
            # where a member catches up), the inbox says what is unread...
            bob = await phone(server, "bob")
            await asyncio.sleep(0.3)
            assert [m for m in list(bob.stanzas._queue)  # type: ignore[attr-defined]
                    if from_room()(m)] == []
            e = await settled(bob, lambda e: e is not None and e["body"] == "while away 2")
            assert e is not None and e["unread"] == 4  # his creation notification + 3
            # ... and the archive has it all, paged from the last stanza-id he had.
            archive = [m async for m in bob.plugin["xep_0313"].iterate(
                jid=SJID(ROOM), rsm={"max": 2})]
            bodies = [str(r["mam_result"]["forwarded"]["stanza"]["body"]) for r in archive]
            assert bodies[-3:] == ["while away 0", "while away 1", "while away 2"]
            # with: a member's messages only (by bare JID).
            mine = [m async for m in bob.plugin["xep_0313"].iterate(
                jid=SJID(ROOM), with_jid=SJID("carol@localhost"))]
            assert [str(r["mam_result"]["forwarded"]["stanza"]["body"]) for r in mine] == [
                "while away 1"]
            # start: from a time on (XEP-0313 §4.1.2).
            since = [m async for m in bob.plugin["xep_0313"].iterate(
                jid=SJID(ROOM), start=started)]
            assert [str(r["mam_result"]["forwarded"]["stanza"]["body"]) for r in since
                    if r["mam_result"]["forwarded"]["stanza"]["body"]] == [
                "while away 0", "while away 1", "while away 2"]
            # after the id of a message: what came next.
            later = [m async for m in bob.plugin["xep_0313"].iterate(
                jid=SJID(ROOM), rsm={"after": ids[0], "max": 10})]
            assert [str(r["mam_result"]["forwarded"]["stanza"]["body"]) for r in later] == [
                "while away 1", "while away 2"]

            # He reads the room: a displayed marker for the last message resets his count.
            marker = bob.make_message(mto=ROOM, mtype="groupchat")
            marker.xml.append(ET.fromstring(f"<displayed xmlns='{MARKERS}' id='{ids[2]}'/>"))
            marker.send()
            await settled(bob, lambda e: e is not None and e["unread"] == 0)

            # Retraction by its author: every member is told, the archive keeps a tombstone.
            retract = alice.make_message(mto=ROOM, mtype="groupchat")
            retract.xml.append(ET.fromstring(
                f"<retract xmlns='urn:xmpp:message-retract:1' id='{ids[2]}'/>"))
            retract.send()
            await received(bob, lambda m: m.xml.find(
                "{urn:xmpp:message-retract:1}retract") is not None)

            # Inbox properties of a room entry: archive box, mute, read=false, <reset/>.
            await iq(bob, str(bob.boundjid.bare), "set",
                     f"<query xmlns='{CONV}' jid='{ROOM}'><box>archive</box>"
                     "<mute>3600</mute></query>")
            await say(alice, "back to the inbox", "w3")
            await received(bob, from_room("back to the inbox"))
            e = await settled(bob, lambda e: e is not None and e["body"] == "back to the inbox")
            assert e is not None and e["box"] == "inbox" and e["unread"] == 1
            assert e["mute"] != "0"  # still muted
            await iq(bob, str(bob.boundjid.bare), "set",
                     f"<reset xmlns='{CONV}' jid='{ROOM}'/>")
            assert (await entry(bob) or {}).get("unread") == 0
        finally:
            await disconnect(alice, bob, carol)


def test_the_owner_leaving_hands_the_room_on_in_mongooseims_order() -> None:
    """Apps often name accounts by phone number. 6.4 promotes the first remaining member in
    (user, server) order: ``4912345`` before ``491234567``, where the JIDs' text sorts the
    other way ('6' before '@')."""
    before = {"owner@localhost": "owner", "491234567@localhost": "member",
              "4912345@localhost": "member"}
    after, changed = rules.apply(before, [("owner@localhost", "none")], False)
    assert changed == {"owner@localhost": "none", "4912345@localhost": "owner"}
    assert after == {"491234567@localhost": "member", "4912345@localhost": "owner"}


async def test_a_phone_in_a_pocket_is_woken_by_messages_not_by_notices(tmp_path: Path) -> None:
    """The usual state of a member's phone: its stream-management session waits to be resumed
    (XEP-0198 §5). A room's message queued for it is pushed (XEP-0357 §7), from the
    sender's room JID; the room's notices (empty body) are queued but wake nobody."""
    async with app_server(tmp_path) as (server, push):
        alice, carol = await phone(server, "alice"), await phone(server, "carol")
        await server.auth.register(JID.parse("bob@localhost"), "bob-pw")
        pocket = await connect(server, "bob@localhost/phone", "bob-pw", direct_tls=True,
                               plugins=("xep_0198",))
        try:
            pocket.send_presence()
            session = lambda: next((s for s in server.sessions  # noqa: E731
                                    if str(s.jid) == "bob@localhost/phone"), None)
            await eventually(lambda: STREAM_MANAGEMENT.get(session()) is not None)
            await enable_push(pocket)
            await iq(alice, ROOM, "set", create_xml(occupants={"bob@localhost": "member"}))
            pocket.abort()  # the network is gone, the stream never closed
            await eventually(lambda: getattr(session(), "state", None)
                             == C2SState.RESUME_SESSION)
            await iq(alice, ROOM, "set", affs_xml({"carol@localhost": "member"}))
            await say(alice, "wake up", "p1")
            _, published = await asyncio.wait_for(push.published.get(), 5)
            note = summary(published)
            assert (note["last-message-sender"], note["last-message-body"],
                    note["message-count"]) == (f"{ROOM}/alice@localhost", "wake up", "1")
            await asyncio.sleep(0.3)
            assert push.published.empty(), summary(push.published.get_nowait()[1])
        finally:
            await disconnect(alice, carol)
