"""Persistent rooms: the store on SQLite and PostgreSQL, a room surviving a server restart,
and hibernation (an idle persistent room dropped from memory and rebuilt on its next
stanza), driven by real slixmpp clients over TLS."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from slixmpp import JID as SJID
from slixmpp.exceptions import IqError

from suricate.core.module import open_module_store
from suricate.jid import JID
from suricate.modules.mod_muc.store import MucStore
from suricate.storage.sql import SqlStorage
from tests.e2e.harness import disconnect, eventually, running_server
from tests.muc.conftest import (
    SERVICE,
    MyDatabase,
    PgDatabase,
    create_room,
    muc_toml,
    next_groupchat,
    pool_toml,
    presence_from,
    user,
)

ROOM = f"keep@{SERVICE}"


async def test_store_round_trip(storage: SqlStorage) -> None:
    store = await open_module_store(storage, "mod_muc", MucStore)
    assert isinstance(store, MucStore)
    await store.store_room(SERVICE, "keep", {"title": "Kept", "persistent": True}, "topic",
                           "Alice", {"alice@localhost": ("owner", ""),
                                     "bob@localhost": ("member", "friend")})
    room = await store.load_room(SERVICE, "keep")
    assert room is not None
    assert room.config == {"title": "Kept", "persistent": True}
    assert (room.subject, room.subject_author) == ("topic", "Alice")
    assert room.affiliations == {"alice@localhost": ("owner", ""),
                                 "bob@localhost": ("member", "friend")}
    await store.set_affiliation(SERVICE, "keep", "bob@localhost", "outcast", "spam")
    await store.set_affiliation(SERVICE, "keep", "carol@localhost", "admin", "")
    await store.set_affiliation(SERVICE, "keep", "alice@localhost", "none", "")
    await store.set_subject(SERVICE, "keep", "new topic", "Carol")
    room = await store.load_room(SERVICE, "keep")
    assert room is not None and room.subject == "new topic"
    assert room.affiliations == {"bob@localhost": ("outcast", "spam"),
                                 "carol@localhost": ("admin", "")}
    assert await store.all_rooms() == [(SERVICE, "keep")]
    await store.remove_user("carol@localhost")  # an account removed
    room = await store.load_room(SERVICE, "keep")
    assert room is not None and "carol@localhost" not in room.affiliations
    assert [name for name, _ in await store.list_rooms(SERVICE)] == ["keep"]
    await store.delete_room(SERVICE, "keep")
    assert await store.load_room(SERVICE, "keep") is None
    assert await store.count_rooms() == 0


async def test_room_survives_restart(tmp_path: Path, backend: PgDatabase | MyDatabase | None) -> None:
    pool = await pool_toml(backend)
    async with running_server(tmp_path, modules=muc_toml(), pool_toml=pool) as server:
        alice, bob = await user(server, "alice"), await user(server, "bob")
        await create_room(alice, ROOM, "Alice", {"muc#roomconfig_persistentroom": True,
                                                 "muc#roomconfig_roomname": "Kept room"})
        alice.plugin["xep_0045"].set_subject(SJID(ROOM), "still here")
        await alice.plugin["xep_0045"].set_affiliation(SJID(ROOM), "member",
                                                       jid="bob@localhost", timeout=5)
        alice.make_message(mto=ROOM, mbody="before restart", mtype="groupchat").send()
        await next_groupchat(alice)
        await disconnect(alice, bob)
    async with running_server(tmp_path, modules=muc_toml(), pool_toml=pool) as server:
        bob = await user(server, "bob")
        items = await bob.plugin["xep_0030"].get_items(jid=SERVICE, timeout=5)
        assert (ROOM, None, "Kept room") in items["disco_items"]["items"]
        pres, subject, _, _ = await bob.plugin["xep_0045"].join_muc_wait(
            SJID(ROOM), "Bob", timeout=5)
        assert pres["muc"]["affiliation"] == "member"
        assert subject["subject"] == "still here"
        info = await bob.plugin["xep_0030"].get_info(jid=ROOM, timeout=5)
        assert "muc_persistent" in info["disco_info"]["features"]
        # The owner is still the owner.
        alice = await user(server, "alice")
        pres, _, _, _ = await alice.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Alice",
                                                                     timeout=5)
        assert pres["muc"]["affiliation"] == "owner"
        await disconnect(alice, bob)


def _metrics(server: object) -> dict[str, float]:
    handler = server.handlers[0]  # type: ignore[attr-defined]
    return {s.name: s.value for family in text_string_to_metric_families(
        handler.render().decode()) for s in family.samples
        if s.labels.get("host_type") == "localhost"}


async def test_hibernation_and_wake_up(tmp_path: Path) -> None:
    options = "hibernate_timeout = 100\n"
    extra = "[instrumentation]\n[instrumentation.prometheus]\n"
    async with running_server(tmp_path, extra=extra, modules=muc_toml(options)) as server:
        muc = server.modules["mod_muc"]
        alice, bob = await user(server, "alice"), await user(server, "bob")
        await create_room(alice, ROOM, "Alice", {"muc#roomconfig_persistentroom": True,
                                                 "muc#roomconfig_roomname": "Sleepy"})
        alice.make_message(mto=ROOM, mbody="good night", mtype="groupchat").send()
        first = await next_groupchat(alice)
        first_id = first.xml.find("{urn:xmpp:occupant-id:0}occupant-id").get("id")
        alice.plugin["xep_0045"].leave_muc(SJID(ROOM), "Alice")
        await presence_from(alice, f"{ROOM}/Alice", "unavailable")
        # Empty and idle for hibernate_timeout: the room's state leaves memory.
        await eventually(lambda: JID.parse(ROOM) not in muc.rooms)  # type: ignore[attr-defined]
        assert muc.hibernations == 1  # type: ignore[attr-defined]
        assert muc.counts() == (0, 1)  # type: ignore[attr-defined]
        # Instrumentation (MongooseIM 6.4 names): mod_muc_rooms online/hibernated gauges,
        # mod_muc_hibernations.
        metrics = _metrics(server)
        assert metrics["mod_muc_rooms_online"] == 0
        assert metrics["mod_muc_rooms_hibernated"] == 1
        assert metrics["mod_muc_hibernations_count_total"] == 1
        # The next stanza wakes it up from storage: configuration and owner kept.
        info = await bob.plugin["xep_0030"].get_info(jid=ROOM, timeout=5)
        assert ("conference", "text", None, "Sleepy") in info["disco_info"]["identities"]
        pres, _, _, _ = await alice.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Alice",
                                                                     timeout=5)
        assert pres["muc"]["affiliation"] == "owner"
        alice.make_message(mto=ROOM, mbody="good morning", mtype="groupchat").send()
        again = await next_groupchat(alice)
        assert _metrics(server)["mod_muc_rooms_online"] == 1
        # XEP-0421 §3: the occupant-id is stable across hibernation.
        assert again.xml.find("{urn:xmpp:occupant-id:0}occupant-id").get("id") == first_id
        await disconnect(alice, bob)


async def test_stanzas_for_a_room_gone_from_storage(tmp_path: Path) -> None:
    # A room believed stored but no longer in the database (deleted by another node or by
    # hand): the stanzas that waited for it meet a missing room, in order.
    async with running_server(tmp_path, modules=muc_toml()) as server:
        muc = server.modules["mod_muc"]
        muc.stored.add(JID.parse(ROOM))  # type: ignore[attr-defined]
        bob = await user(server, "bob")
        with pytest.raises(IqError) as err:
            await bob.plugin["xep_0030"].get_info(jid=ROOM, timeout=5)
        assert err.value.condition == "item-not-found"
        # The first presence then creates it as a new room.
        pres, _, _, _ = await bob.plugin["xep_0045"].join_muc_wait(SJID(ROOM), "Bob",
                                                                   timeout=5)
        assert "201" in {str(c) for c in pres["muc"]["status_codes"]}
        await disconnect(bob)


async def test_registered_nicks_round_trip(storage: SqlStorage) -> None:
    store = await open_module_store(storage, "mod_muc", MucStore)
    assert isinstance(store, MucStore)
    await store.store_room(SERVICE, "keep", {"persistent": True}, "", "",
                           {"alice@localhost": ("owner", "")}, {"bob@localhost": "Bob"})
    await store.register_nick(SERVICE, "keep", "carol@localhost", "Carol")
    await store.register_nick(SERVICE, "keep", "bob@localhost", "Robert")  # a new nick
    room = await store.load_room(SERVICE, "keep")
    assert room is not None
    assert room.nicks == {"bob@localhost": "Robert", "carol@localhost": "Carol"}
    await store.register_nick(SERVICE, "keep", "bob@localhost", None)  # cancelled
    await store.remove_user("carol@localhost")  # the account went
    room = await store.load_room(SERVICE, "keep")
    assert room is not None and room.nicks == {}
    await store.register_nick(SERVICE, "keep", "dan@localhost", "Dan")
    await store.delete_room(SERVICE, "keep")
    await store.store_room(SERVICE, "keep", {"persistent": True}, "", "", {})
    room = await store.load_room(SERVICE, "keep")
    assert room is not None and room.nicks == {}  # a new room of the same name


async def test_room_archive_store(storage: SqlStorage) -> None:
    from suricate.modules.mod_mam.muc.store import MucArchiveStore
    from suricate.modules.mod_mam.query import Query

    store = await open_module_store(storage, "mod_mam_muc", MucArchiveStore)
    assert isinstance(store, MucArchiveStore)
    rows = [((1000 + i) << 8, SERVICE, "keep", "alice@localhost" if i % 2 else "bob@localhost",
             "Alice" if i % 2 else "Bob", "G", f"keep@{SERVICE}/x", f"o{i}", f"word{i}",
             f"<message><body>m{i}</body></message>") for i in range(300)]
    await store.insert_many(rows)
    await store.insert_many(rows[:5])  # a batch written twice changes nothing
    assert await store.count(SERVICE, "keep") == 300
    page = await store.lookup(SERVICE, "keep", Query(last_page=True), 10, False)
    assert [m.id for m in page.messages] == [r[0] for r in rows[-10:]]
    assert (page.count, page.first_index) == (300, 290)
    bob = await store.lookup(SERVICE, "keep", Query(), 500, True, sender="bob@localhost")
    assert len(bob.messages) == 150 and bob.complete
    found = await store.lookup(SERVICE, "keep", Query(full_text="WORD123"), 50, False)
    assert [m.message for m in found.messages] == ["<message><body>m123</body></message>"]
    await store.replace_message(SERVICE, "keep", rows[0][0], "<message/>")
    assert await store.find(SERVICE, "keep", rows[0][0]) == ("bob@localhost", "<message/>")
    assert await store.remove_room(SERVICE, "keep") == 300
    assert await store.bounds(SERVICE, "keep") is None
