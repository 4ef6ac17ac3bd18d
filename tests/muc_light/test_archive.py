"""MUC Light rooms in the room archive (mod_mam's muc section, as MongooseIM 6.4 does): real
Suricate, real slixmpp clients over direct TLS paging with xep_0313, the GraphQL
getRoomMessages over real HTTP; SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from slixmpp import JID as SJID

from suricate.jid import JID
from suricate.modules.mod_mam.muc.store import MucArchiveStore
from tests.e2e.harness import Client, disconnect, running_server
from tests.muc_light.conftest import (
    NS,
    SERVICE,
    PgDatabase,
    create_xml,
    iq,
    iq_error,
    light_toml,
    next_message,
    pool_toml,
    user,
)
from tests.ops.harness import admin, gql, ops_server

MAM = "urn:xmpp:mam:2"
SID = "urn:xmpp:sid:0"
RETRACT = "urn:xmpp:message-retract:1"
ESL = "urn:esl:message-retract-by-stanza-id:0"
ROOM = f"den@{SERVICE}"
ARCHIVE_TOML = """
[modules.mod_mam]
async_writer.flush_interval = 100
[modules.mod_mam.muc]
"""
PLUGINS = ("xep_0030", "xep_0313")


async def say(sender: Client, body: str, members: list[Client]) -> str:
    """A groupchat message to the room; the stanza-id every member got (all the same)."""
    sender.make_message(mto=ROOM, mbody=body, mtype="groupchat").send()
    ids = set()
    for member in members:
        msg = await next_message(member)
        assert msg["body"] == body
        ids.add(msg.xml.find(f"{{{SID}}}stanza-id").get("id"))
    (stanza_id,) = ids
    return str(stanza_id)


async def archive(client: Client, **kwargs: Any) -> list[Any]:
    """Every message of the room's archive, through slixmpp's xep_0313 (pages of 10)."""
    return [m async for m in client.plugin["xep_0313"].iterate(
        jid=SJID(ROOM), rsm={"max": 10}, **kwargs)]


def body_of(result: Any) -> str:
    return str(result["mam_result"]["forwarded"]["stanza"]["body"])


async def test_members_page_the_archive_with_the_stanza_ids_they_got(
        tmp_path: Path, backend: PgDatabase | None) -> None:
    pools = await pool_toml(backend)
    async with running_server(tmp_path, modules=light_toml(extra_modules=ARCHIVE_TOML),
                              pool_toml=pools) as server:
        alice, bob, carol = [await user(server, n, plugins=PLUGINS)
                             for n in ("alice", "bob", "carol")]
        await iq(alice, ROOM, "set", create_xml(occupants={"bob@localhost": "member"}))
        await next_message(alice), await next_message(bob)
        # XEP-0313 §6.1.2: the room says it is archived.
        info = await alice.plugin["xep_0030"].get_info(jid=ROOM, timeout=5)
        assert MAM in info["disco_info"]["features"]

        ids = [await say(alice if i % 2 else bob, f"m{i}", [alice, bob]) for i in range(24)]
        # The creation notification comes first (MongooseIM archives it), then the messages.
        creation, *results = await archive(bob)
        assert creation["mam_result"]["forwarded"]["stanza"].xml.find(
            f"{{{NS}#affiliations}}x") is not None
        assert [body_of(m) for m in results] == [f"m{i}" for i in range(24)]
        assert [str(m["mam_result"]["id"]) for m in results] == ids
        first = results[0]["mam_result"]["forwarded"]["stanza"]
        assert str(first["from"]) == f"{ROOM}/bob@localhost" and first["type"] == "groupchat"
        # Stored once per room, not once per member.
        store = server.module_stores["mod_mam_muc"]
        assert isinstance(store, MucArchiveStore)
        assert await store.count(SERVICE, "den") == 25
        # Members know each other's bare JIDs: `with` may name one.
        only_alice = await archive(bob, with_jid=SJID("alice@localhost"))
        assert [body_of(m) for m in only_alice] == [f"m{i}" for i in range(1, 24, 2)]

        # XEP-0424: alice may not retract bob's message; bob retracts his own, which the
        # archive replaces by a tombstone.
        for who, target in ((alice, ids[0]), (bob, ids[2])):
            retraction = who.make_message(mto=ROOM, mtype="groupchat")
            retraction.xml.append(ET.fromstring(
                f"<retract xmlns='{RETRACT}' id='{target}'/>"))
            retraction.send()
            await next_message(alice), await next_message(bob)
        for _ in range(50):
            kept = [m["mam_result"]["forwarded"]["stanza"].xml for m in await archive(bob)][1:]
            if kept[2].find(f"{{{RETRACT}}}retracted") is not None:
                break
            await asyncio.sleep(0.05)
        assert kept[2].findtext("{jabber:client}body") is None
        assert kept[2].find(f"{{{RETRACT}}}retracted").get("id") == ids[2]
        assert kept[0].findtext("{jabber:client}body") == "m0"
        # MongooseIM's retraction by stanza-id (urn:esl:message-retract-by-stanza-id:0),
        # advertised by the archived room: the same rules, its own tombstone.
        assert ESL in info["disco_info"]["features"]
        # XEP-0424 §"Tombstones": the room's archive keeps tombstones, and says so.
        assert f"{RETRACT}#tombstone" in info["disco_info"]["features"]
        for who, target in ((alice, ids[6]), (bob, ids[4])):
            retraction = who.make_message(mto=ROOM, mtype="groupchat")
            retraction.xml.append(ET.fromstring(
                f"<apply-to xmlns='urn:xmpp:fasten:0' id='{target}'>"
                f"<retract xmlns='{ESL}'/></apply-to>"))
            retraction.send()
            await next_message(alice), await next_message(bob)
        kept = [m["mam_result"]["forwarded"]["stanza"].xml for m in await archive(bob)][1:]
        assert kept[4].findtext("{jabber:client}body") is None
        sid = kept[4].find(f"{{{ESL}}}retracted/{{urn:xmpp:sid:0}}stanza-id")
        assert sid is not None and (sid.get("id"), sid.get("by")) == (ids[4], ROOM)
        assert kept[6].findtext("{jabber:client}body") == "m6"
        assert kept[6].find(f"{{{ESL}}}retracted") is None

        # A non-member is refused (MongooseIM 6.4: forbidden), a missing room is not found.
        assert await iq_error(carol, ROOM, "set", f"<query xmlns='{MAM}'/>") == "forbidden"
        assert await iq_error(alice, f"nowhere@{SERVICE}", "set",
                              f"<query xmlns='{MAM}'/>") == "item-not-found"

        # Destroying the room removes its archive: a new room of that name starts empty.
        await iq(alice, ROOM, "set", f"<query xmlns='{NS}#destroy'/>")
        await next_message(alice), await next_message(bob)
        for _ in range(50):
            if await store.count(SERVICE, "den") == 0:
                break
            await asyncio.sleep(0.05)
        assert await store.count(SERVICE, "den") == 0
        await iq(alice, ROOM, "set", create_xml())
        await next_message(alice)
        (creation,) = await archive(alice)  # only the new room's creation
        assert creation["mam_result"]["forwarded"]["stanza"].xml.find(
            f"{{{NS}#affiliations}}x") is not None
        await disconnect(alice, bob, carol)


async def test_get_room_messages(tmp_path: Path) -> None:
    room_q = f'room: "{ROOM}"'
    async with ops_server(tmp_path, modules=light_toml(extra_modules=ARCHIVE_TOML)) as server:
        for name in ("alice", "bob"):
            await server.auth.register(JID.parse(f"{name}@localhost"), f"{name}-pw")
        await admin(server, 'mutation { muc_light { createRoom(mucDomain: "localhost", '
                    'name: "Den", owner: "alice@localhost", subject: "", id: "den") { jid } } }')
        alice = await user(server, "alice")
        for i in range(5):
            await admin(server, f'mutation {{ muc_light {{ sendMessageToRoom({room_q}, '
                        f'from: "alice@localhost", body: "hello {i}") }} }}')
        ids = []
        for _ in range(5):
            msg = await next_message(alice)
            ids.append(msg.xml.find(f"{{{SID}}}stanza-id").get("id"))
        fields = "{ stanzas { sender timestamp stanza_id stanza } limit }"
        data = await admin(server, f'{{ muc_light {{ getRoomMessages({room_q}, pageSize: 2) '
                           f'{fields} }} }}')
        page = data["muc_light"]["getRoomMessages"]
        assert page["limit"] == 2
        _, bad = await gql(server, f'{{ muc_light {{ getRoomMessages({room_q}, pageSize: 0) '
                                   f'{fields} }} }}')
        assert "pageSize must be positive" in bad["errors"][0]["message"], bad
        assert [s["stanza_id"] for s in page["stanzas"]] == ids[3:]
        assert page["stanzas"][0]["sender"] == f"{ROOM}/alice@localhost"
        assert "hello 3" in page["stanzas"][0]["stanza"]
        before = page["stanzas"][0]["timestamp"]
        data = await admin(server, f'{{ muc_light {{ getRoomMessages({room_q}, '
                           f'before: "{before}") {fields} }} }}')
        # The room's creation notification is archived too (MongooseIM 6.4).
        creation, *older = data["muc_light"]["getRoomMessages"]["stanzas"]
        assert "urn:xmpp:muclight:0#affiliations" in creation["stanza"]
        assert [s["stanza_id"] for s in older] == ids[:3]
        # The user API: members only.
        query = f'{{ muc_light {{ getRoomMessages({room_q}) {{ stanzas {{ stanza_id }} }} }} }}'
        status, result = await gql(server, query, auth=("alice@localhost", "alice-pw"),
                                   path="/api/graphql/user")
        assert len(result["data"]["muc_light"]["getRoomMessages"]["stanzas"]) == 6
        status, result = await gql(server, query, auth=("bob@localhost", "bob-pw"),
                                   path="/api/graphql/user")
        assert result["errors"][0]["extensions"]["code"] == "not_room_member"
        await disconnect(alice)


async def test_without_the_muc_section_rooms_are_not_archived(tmp_path: Path) -> None:
    async with running_server(tmp_path, modules=light_toml()) as server:
        alice = await user(server, "alice")
        await iq(alice, ROOM, "set", create_xml())
        await next_message(alice)
        info = await alice.plugin["xep_0030"].get_info(jid=ROOM, timeout=5)
        assert MAM not in info["disco_info"]["features"]
        assert await iq_error(alice, ROOM, "set", f"<query xmlns='{MAM}'/>") == \
            "service-unavailable"
        await disconnect(alice)


async def test_legacy_mode_rooms_are_archived_too(tmp_path: Path) -> None:
    toml = light_toml("legacy_mode = true\n", extra_modules=ARCHIVE_TOML)
    async with running_server(tmp_path, modules=toml) as server:
        alice = await user(server, "alice", plugins=(*PLUGINS, "xep_0045"))
        await alice.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "alice@localhost", timeout=5)
        await next_message(alice)  # the subject
        info = await alice.plugin["xep_0030"].get_info(jid=ROOM, timeout=5)
        assert MAM in info["disco_info"]["features"]
        stanza_id = await say(alice, "old school", [alice])
        (result,) = await archive(alice)
        assert body_of(result) == "old school" and str(result["mam_result"]["id"]) == stanza_id
        await disconnect(alice)


async def test_notifications_are_archived_as_mongooseim_does(tmp_path: Path) -> None:
    """MongooseIM 6.4 passes a room's creation, affiliation and configuration notifications
    through the room archive (mod_muc_light_codec_modern → filter_room_packet; its
    mam_SUITE muc_light_easy finds [create, message, message, affiliations]): a client
    rebuilding a room from its archive sees who joined and what changed."""
    AFF, CFG = f"{{{NS}#affiliations}}", f"{{{NS}#configuration}}"
    async with running_server(tmp_path, modules=light_toml(extra_modules=ARCHIVE_TOML)) \
            as server:
        alice, bob, carol = [await user(server, n, plugins=PLUGINS)
                             for n in ("alice", "bob", "carol")]
        await iq(alice, ROOM, "set", create_xml(occupants={"bob@localhost": "member"}))
        await next_message(alice), await next_message(bob)
        message_id = await say(alice, "hello", [alice, bob])
        await iq(alice, ROOM, "set", f"<query xmlns='{NS}#affiliations'>"
                 "<user affiliation='member'>carol@localhost</user></query>")
        aff_notes = [await next_message(c) for c in (alice, bob, carol)]
        await iq(bob, ROOM, "set", f"<query xmlns='{NS}#configuration'>"
                 "<subject>news</subject></query>")
        cfg_notes = [await next_message(c) for c in (alice, bob, carol)]

        for _ in range(50):
            results = await archive(carol)
            if len(results) >= 4:
                break
            await asyncio.sleep(0.05)
        kept = [m["mam_result"]["forwarded"]["stanza"].xml for m in results]
        assert len(kept) == 4, [ET.tostring(k) for k in kept]
        # The creation: every member, no version.
        create = kept[0].find(f"{AFF}x")
        assert create is not None and kept[0].get("from") == ROOM
        assert {u.text: u.get("affiliation") for u in create.findall(f"{AFF}user")} == \
            {"alice@localhost": "owner", "bob@localhost": "member"}
        assert create.find(f"{AFF}version") is None
        assert kept[1].findtext("{jabber:client}body") == "hello"
        assert str(results[1]["mam_result"]["id"]) == message_id
        # The affiliation change: the changes and the version, no prev-version.
        change = kept[2].find(f"{AFF}x")
        assert change is not None and kept[2].get("from") == ROOM
        assert {u.text: u.get("affiliation") for u in change.findall(f"{AFF}user")} == \
            {"carol@localhost": "member"}
        assert change.findtext(f"{AFF}version") and change.find(f"{AFF}prev-version") is None
        # The configuration change, as the members got it.
        config = kept[3].find(f"{CFG}x")
        assert config is not None and config.findtext(f"{CFG}subject") == "news"
        assert config.findtext(f"{CFG}prev-version") and config.findtext(f"{CFG}version")
        # The members who stayed got the archive id as the notification's stanza-id.
        for note, result in ((aff_notes[0], results[2]), (aff_notes[1], results[2]),
                             (cfg_notes[2], results[3])):
            sid = note.xml.find(f"{{{SID}}}stanza-id")
            assert sid is not None and sid.get("by") == ROOM
            assert sid.get("id") == str(result["mam_result"]["id"])
        await disconnect(alice, bob, carol)
