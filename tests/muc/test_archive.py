"""The MUC archive (XEP-0313 on room JIDs, mod_mam's muc section) end to end: a real Suricate,
real slixmpp clients (xep_0045, xep_0313) over TLS, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import secrets
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp import JID as SJID
from slixmpp.exceptions import IqError
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath, StanzaPath

from suricate.core.server import Server
from suricate.modules.mod_mam.muc.store import MucArchiveStore
from tests.e2e.harness import Client, disconnect, running_server
from tests.muc.conftest import SERVICE, create_instant, create_room, muc_toml, user

MAM = "urn:xmpp:mam:2"
RSM = "http://jabber.org/protocol/rsm"
ROOM = f"lounge@{SERVICE}"

ARCHIVE_TOML = """
[modules.mod_mam]
async_writer.flush_interval = 200
[modules.mod_mam.muc]
"""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    async with running_server(tmp_path, modules=muc_toml() + ARCHIVE_TOML) as srv:
        yield srv


async def say(client: Client, body: str, room: str = ROOM) -> str:
    """Send a groupchat message; the room's stanza-id of the copy that comes back."""
    client.make_message(mto=room, mbody=body, mtype="groupchat").send()
    while True:
        msg = await client.next_message(5)
        if msg["type"] == "groupchat" and msg["body"] == body:
            return str(msg["stanza_id"]["id"])


async def archive(client: Client, room: str = ROOM, **kwargs: Any) -> list[Any]:
    """Every message of the room's archive, through slixmpp's xep_0313 (pages of 25)."""
    return [m async for m in client.plugin["xep_0313"].iterate(
        jid=SJID(room), rsm={"max": 25}, **kwargs)]


STATES = "http://jabber.org/protocol/chatstates"


def body_of(result: Any) -> str:
    return str(result["mam_result"]["forwarded"]["stanza"]["body"])


async def raw_query(client: Client, payload: str, room: str = ROOM) -> Any:
    iq = client.make_iq_set(ito=room)
    iq.xml.append(ET.fromstring(payload))
    return await iq.send(timeout=5)


async def condition_of(client: Client, payload: str, room: str = ROOM) -> str:
    with pytest.raises(IqError) as err:
        await raw_query(client, payload, room)
    return str(err.value.iq["error"]["condition"])


def with_form(jid: str) -> str:
    return (f"<query xmlns='{MAM}'><x xmlns='jabber:x:data' type='submit'>"
            f"<field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>"
            f"<field var='with'><value>{jid}</value></field></x></query>")


async def test_room_archive_pages_with_the_stanza_ids_occupants_got(server: Server) -> None:
    alice, bob, carol = (await user(server, "alice"), await user(server, "bob"),
                         await user(server, "carol"))
    await create_instant(alice, ROOM, "Alice")
    await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    # XEP-0313 §6.1.2: an archived room says so in its disco#info.
    info = await carol.plugin["xep_0030"].get_info(jid=ROOM, timeout=5)
    assert MAM in info["disco_info"]["features"]
    ids = [await say(alice if i % 3 else bob, f"m{i}") for i in range(60)]
    # What the archive does not keep (a chat state) carries no room stanza-id: clients page
    # from the last stanza-id they saw (XEP-0313 §5.1.2), which must be an archive id.
    states: asyncio.Queue[Any] = asyncio.Queue()
    bob.register_handler(Callback("state", MatchXPath(f"{{jabber:client}}message/{{{STATES}}}"
                                                      "composing"), states.put_nowait))
    state = alice.make_message(mto=ROOM, mtype="groupchat")
    state.xml.append(ET.fromstring(f"<composing xmlns='{STATES}'/>"))
    state.send()
    got = await asyncio.wait_for(states.get(), 5)
    assert got.xml.find("{urn:xmpp:sid:0}stanza-id") is None, got
    # Stored once per room, whatever the number of occupants; ids are the stanza-ids.
    results = await archive(carol)
    assert [body_of(m) for m in results] == [f"m{i}" for i in range(60)]
    assert [str(m["mam_result"]["id"]) for m in results] == ids
    first = results[0]["mam_result"]["forwarded"]["stanza"]
    assert str(first["from"]) == f"{ROOM}/Bob" and first["type"] == "groupchat"
    # Semi-anonymous room: no real JID in the results, `with` is an occupant JID.
    assert first.xml.find("{http://jabber.org/protocol/muc#user}x") is None
    only_bob = await archive(carol, with_jid=SJID(f"{ROOM}/Bob"))
    assert [body_of(m) for m in only_bob] == [f"m{i}" for i in range(0, 60, 3)]
    assert await condition_of(carol, with_form("bob@localhost")) == "forbidden"
    # RSM: the last page with count and index, newest first (flip-page).
    results_q: asyncio.Queue[Any] = asyncio.Queue()
    carol.register_handler(Callback("mam", StanzaPath("message/mam_result"),
                                    results_q.put_nowait))
    fin = await raw_query(carol, f"<query xmlns='{MAM}'><set xmlns='{RSM}'><max>10</max>"
                                 "<before/></set><flip-page/></query>")
    rsm = fin.xml.find(f"{{{MAM}}}fin/{{{RSM}}}set")
    assert rsm.findtext(f"{{{RSM}}}count") == "60"
    assert rsm.find(f"{{{RSM}}}first").get("index") == "50"
    assert rsm.findtext(f"{{{RSM}}}first") == ids[50]
    # Paging backward, older messages remain: not complete (XEP-0313 §4.3).
    assert fin.xml.find(f"{{{MAM}}}fin").get("complete") == "false"
    flipped = [body_of(await asyncio.wait_for(results_q.get(), 5)) for _ in range(10)]
    assert flipped == [f"m{i}" for i in range(59, 49, -1)]
    # Bad input: an unknown id, a page after it; prefs are not a room's.
    assert await condition_of(
        carol, f"<query xmlns='{MAM}'><set xmlns='{RSM}'><after>123</after></set></query>") \
        == "item-not-found"
    assert await condition_of(carol, f"<prefs xmlns='{MAM}' default='always'/>") == \
        "feature-not-implemented"
    await disconnect(alice, bob, carol)


async def test_subject_changes_are_archived(server: Server) -> None:
    """XEP-0313 §5.1.2: "subject change stanzas" SHOULD be stored with the messages, so a
    client catching up by MAM sees the topic change where it happened; the live copy carries
    the archive id as its stanza-id, and the subject sent again on join does not."""
    alice, bob = await user(server, "alice"), await user(server, "bob")
    await create_instant(alice, ROOM, "Alice")
    await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    before = await say(alice, "before")
    subjects: asyncio.Queue[Any] = asyncio.Queue()
    bob.register_handler(Callback("subject", MatchXPath("{jabber:client}message/"
                                                        "{jabber:client}subject"),
                                  subjects.put_nowait))
    change = alice.make_message(mto=ROOM, mtype="groupchat", msubject="Plans for Friday")
    change["id"] = "subj-1"
    change.send()
    live = await asyncio.wait_for(subjects.get(), 5)
    assert live["subject"] == "Plans for Friday" and live["id"] == "subj-1"
    sid = live.xml.find("{urn:xmpp:sid:0}stanza-id")
    assert sid is not None and sid.get("by") == ROOM
    after = await say(alice, "after")
    results = await archive(bob)
    assert [str(m["mam_result"]["id"]) for m in results] == [before, sid.get("id"), after]
    stored = results[1]["mam_result"]["forwarded"]["stanza"]
    assert stored["subject"] == "Plans for Friday" and str(stored["from"]) == f"{ROOM}/Alice"
    assert not stored["body"]
    # The subject a join gets is the room's state, not a new event: no stanza-id.
    carol = await user(server, "carol")
    carol_subjects: asyncio.Queue[Any] = asyncio.Queue()
    carol.register_handler(Callback("subject", MatchXPath("{jabber:client}message/"
                                                          "{jabber:client}subject"),
                                    carol_subjects.put_nowait))
    await carol.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Carol", timeout=5)
    on_join = await asyncio.wait_for(carol_subjects.get(), 5)
    assert on_join["subject"] == "Plans for Friday"
    assert on_join.xml.find("{urn:xmpp:sid:0}stanza-id") is None
    await disconnect(alice, bob, carol)


async def test_who_reads_the_archive_and_real_jids(server: Server) -> None:
    alice, bob, carol = (await user(server, "alice"), await user(server, "bob"),
                         await user(server, "carol"))
    members = f"club@{SERVICE}"
    await create_room(alice, members, "Alice", {"muc#roomconfig_membersonly": "1",
                                                "muc#roomconfig_whois": "anyone"})
    await alice.plugin["xep_0045"].set_affiliation(SJID(members), "member",
                                                   jid=SJID("bob@localhost"), timeout=5)
    await say(alice, "members only", members)
    # Members-only: members read it (without being joined), others are refused.
    assert [body_of(m) for m in await archive(bob, members)] == ["members only"]
    assert await condition_of(carol, f"<query xmlns='{MAM}'/>", members) == "forbidden"
    # Non-anonymous: the results carry the sender's real JID and `with` may name it.
    (result,) = await archive(bob, members, with_jid=SJID("alice@localhost"))
    item = result["mam_result"]["forwarded"]["stanza"].xml.find(
        "{http://jabber.org/protocol/muc#user}x/{http://jabber.org/protocol/muc#user}item")
    assert item is not None and item.get("jid") == "alice@localhost"
    assert await archive(bob, members, with_jid=SJID("carol@localhost")) == []
    await disconnect(alice, bob, carol)


async def test_an_occupants_own_muc_user_x_is_not_archived(server: Server) -> None:
    """XEP-0313 §7.3 (MUC message spoofing): the room does not sanitize a groupchat
    message's <x xmlns='muc#user'/>, so the archive strips it; otherwise a result would name
    the JID the sender wrote as the sender's real JID (first, before the archive's own)."""
    alice, bob = await user(server, "alice"), await user(server, "bob")
    carol = await user(server, "carol")
    room = f"open@{SERVICE}"
    await create_room(alice, room, "Alice", {"muc#roomconfig_whois": "anyone"})
    await bob.plugin["xep_0045"].join_muc_wait(SJID(room), "Bob", timeout=5)
    forged = bob.make_message(mto=room, mbody="I am the admin", mtype="groupchat")
    forged.xml.append(ET.fromstring("<x xmlns='http://jabber.org/protocol/muc#user'>"
                                    "<item jid='admin@localhost'/></x>"))
    forged.send()
    while (await bob.next_message(5))["body"] != "I am the admin":
        pass
    (result,) = await archive(carol, room)
    stanza = result["mam_result"]["forwarded"]["stanza"].xml
    items = stanza.findall("{http://jabber.org/protocol/muc#user}x/"
                           "{http://jabber.org/protocol/muc#user}item")
    assert [item.get("jid") for item in items] == ["bob@localhost"]
    # In a semi-anonymous room the results carry no <x/> at all.
    await create_instant(bob, ROOM, "Bob")
    forged["to"] = ROOM
    forged.send()
    while (await bob.next_message(5))["from"] != SJID(f"{ROOM}/Bob"):
        pass
    (result,) = await archive(carol, ROOM)
    assert result["mam_result"]["forwarded"]["stanza"].xml.find(
        "{http://jabber.org/protocol/muc#user}x") is None
    await disconnect(alice, bob, carol)


async def test_retraction_and_moderation_leave_tombstones(server: Server) -> None:
    alice, bob = await user(server, "alice"), await user(server, "bob")
    await create_instant(alice, ROOM, "Alice")
    await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
    rude = await say(bob, "something rude")
    typo = await say(bob, "a typo")
    await say(bob, "fine")
    # Alice may not retract Bob's message (not hers): the archive keeps it as it was.
    alice.plugin["xep_0424"].send_retraction(SJID(ROOM), typo, mtype="groupchat")
    bob.plugin["xep_0424"].send_retraction(SJID(ROOM), typo, mtype="groupchat")
    await alice.plugin["xep_0425"].moderate(SJID(ROOM), rude, reason="be nice", timeout=5)
    retract = "urn:xmpp:message-retract:1"

    async def tombstones() -> list[Any]:
        found = []
        for m in await archive(alice):
            stanza = m["mam_result"]["forwarded"]["stanza"].xml
            found.append((stanza.findtext("{jabber:client}body"),
                          stanza.find(f"{{{retract}}}retracted")))
        return found

    for _ in range(50):  # the tombstones are written right after the retraction
        kept = await tombstones()
        if kept[0][1] is not None and kept[1][1] is not None:
            break
        await asyncio.sleep(0.05)
    (body0, tomb0), (body1, tomb1), (body2, tomb2) = kept
    assert body0 is None and tomb0.get("id") == rude
    moderated = tomb0.find("{urn:xmpp:message-moderate:1}moderated")
    assert moderated is not None and moderated.get("by") == f"{ROOM}/Alice"
    assert tomb0.findtext(f"{{{retract}}}reason") == "be nice"
    assert body1 is None and tomb1.get("id") == typo
    assert body2 == "fine" and tomb2 is None
    await disconnect(alice, bob)


ESL = "urn:esl:message-retract-by-stanza-id:0"


def retract_by_stanza_id(client: Client, target: str) -> None:
    """MongooseIM's retraction by stanza-id (its mod_mam documentation): in a room the id is
    the room's stanza-id."""
    msg = client.make_message(mto=ROOM, mbody="retracted a message", mtype="groupchat")
    msg.xml.append(ET.fromstring(f"<apply-to xmlns='urn:xmpp:fasten:0' id='{target}'>"
                                 f"<retract xmlns='{ESL}'/></apply-to>"))
    msg.send()


async def test_retraction_by_stanza_id_leaves_a_tombstone(tmp_path: Path) -> None:
    # No history: what refuses someone else's message is the archive's own author check.
    async with running_server(tmp_path, modules=muc_toml("history_size = 0\n")
                              + ARCHIVE_TOML) as srv:
        alice, bob = await user(srv, "alice"), await user(srv, "bob")
        await create_instant(alice, ROOM, "Alice")
        await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
        info = await bob.plugin["xep_0030"].get_info(jid=ROOM, timeout=5)
        assert ESL in info["disco_info"]["features"]
        # XEP-0424 §"Tombstones": the room's archive keeps tombstones, and says so.
        assert "urn:xmpp:message-retract:1#tombstone" in info["disco_info"]["features"]
        slip = await say(bob, "bob's slip")
        hers = await say(alice, "alice's")
        # Alice names Bob's message, Bob names Alice's: nothing changes. Then Bob his own.
        targets = [slip, hers, slip]
        for client, target in zip((alice, bob, bob), targets, strict=True):
            retract_by_stanza_id(client, target)
        for client in (alice, bob):  # the retractions reach every occupant
            seen = []
            while len(seen) < 3:
                msg = await client.next_message(5)
                if msg["body"] == "retracted a message":
                    seen.append(msg.xml.find("{urn:xmpp:fasten:0}apply-to").get("id"))
            assert seen == targets
        results = await archive(alice)
        assert len(results) == 2  # the retractions act on the archive, are not kept in it
        first, second = (m["mam_result"]["forwarded"]["stanza"].xml for m in results)
        assert first.find("{jabber:client}body") is None
        retracted = first.find(f"{{{ESL}}}retracted")
        assert retracted is not None and retracted.get("stamp")
        sid = retracted.find("{urn:xmpp:sid:0}stanza-id")
        assert (sid.get("id"), sid.get("by")) == (slip, ROOM)
        # The envelope stays: who said it, the room's stanza-id.
        assert first.get("from") == f"{ROOM}/Bob"
        assert second.findtext("{jabber:client}body") == "alice's"
        assert second.find(f"{{{ESL}}}retracted") is None
        await disconnect(alice, bob)


async def test_destroying_the_room_removes_its_archive(server: Server) -> None:
    alice = await user(server, "alice")
    await create_instant(alice, ROOM, "Alice")
    for i in range(3):
        await say(alice, f"gone {i}")
    store = server.module_stores["mod_mam_muc"]
    assert isinstance(store, MucArchiveStore)
    mam = server.modules["mod_mam"]
    await mam.muc_archive.writer.flush_archive(SERVICE, "lounge")
    assert await store.count(SERVICE, "lounge") == 3
    await alice.plugin["xep_0045"].destroy(SJID(ROOM), reason="done", timeout=5)
    for _ in range(50):
        if await store.count(SERVICE, "lounge") == 0:
            break
        await asyncio.sleep(0.05)
    assert await store.count(SERVICE, "lounge") == 0
    # A room of the same name starts with an empty archive.
    await create_instant(alice, ROOM, "Alice")
    assert await archive(alice) == []
    # A temporary room ends with its last occupant (§10.1): its archive too.
    await say(alice, "temporary")
    await mam.muc_archive.writer.flush_archive(SERVICE, "lounge")
    assert await store.count(SERVICE, "lounge") == 1
    alice.plugin["xep_0045"].leave_muc(SJID(ROOM), "Alice")
    for _ in range(50):
        if await store.count(SERVICE, "lounge") == 0:
            break
        await asyncio.sleep(0.05)
    assert await store.count(SERVICE, "lounge") == 0
    await disconnect(alice)


async def test_rooms_are_not_archived_without_the_muc_section(tmp_path: Path) -> None:
    modules = muc_toml() + "[modules.mod_mam]\n[modules.mod_mam.pm]\n"
    async with running_server(tmp_path, modules=modules) as srv:
        alice = await user(srv, "alice")
        await create_instant(alice, ROOM, "Alice")
        stanza_id = await say(alice, "not kept")
        assert not stanza_id.isdigit()  # not an archive id
        info = await alice.plugin["xep_0030"].get_info(jid=ROOM, timeout=5)
        assert MAM not in info["disco_info"]["features"]
        assert await condition_of(alice, f"<query xmlns='{MAM}'/>") == "service-unavailable"
        await disconnect(alice)


@pytest.mark.postgres
async def test_room_archive_on_postgresql(tmp_path: Path) -> None:
    import asyncpg

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres",
                                     database="postgres", timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    name = f"suricate_mucmam_{secrets.token_hex(5)}"
    try:
        await admin(f'CREATE DATABASE "{name}"')
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL not reachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable at 127.0.0.1:5432: {exc}")
    pool = f"""
[outgoing_pools.rdbms.default.connection]
driver = "pgsql"
host = "127.0.0.1"
database = "{name}"
username = "postgres"
password = ""
"""
    try:
        async with running_server(tmp_path, modules=muc_toml() + ARCHIVE_TOML,
                                  pool_toml=pool) as srv:
            alice, bob = await user(srv, "alice"), await user(srv, "bob")
            await create_instant(alice, ROOM, "Alice")
            await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob", timeout=5)
            ids = [await say(alice, f"pg{i}") for i in range(30)]
            results = await archive(bob)
            assert [str(m["mam_result"]["id"]) for m in results] == ids
            assert [body_of(m) for m in results] == [f"pg{i}" for i in range(30)]
            await alice.plugin["xep_0425"].moderate(SJID(ROOM), ids[0], timeout=5)
            for _ in range(50):
                first = (await archive(bob))[0]["mam_result"]["forwarded"]["stanza"]
                if first.xml.find("{jabber:client}body") is None:
                    break
                await asyncio.sleep(0.05)
            assert first.xml.find("{jabber:client}body") is None
            await disconnect(alice, bob)
    finally:
        await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
