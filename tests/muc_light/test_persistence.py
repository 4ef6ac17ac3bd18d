"""MUC Light storage on SQLite and PostgreSQL: the store itself, rooms surviving a restart,
and an account's memberships and blocking list erased with it."""

from __future__ import annotations

from pathlib import Path

from suricate.core.module import open_module_store
from suricate.jid import JID
from suricate.modules.mod_muc_light.store import MucLightStore, Room
from suricate.storage.sql import SqlStorage
from tests.e2e.harness import disconnect, running_server
from tests.muc_light.conftest import (
    NS,
    SERVICE,
    PgDatabase,
    create_xml,
    iq,
    light_toml,
    next_message,
    pool_toml,
    user,
    users_of,
)

ROOM = f"keep@{SERVICE}"


async def test_store_round_trip(storage: SqlStorage) -> None:
    store = await open_module_store(storage, "mod_muc_light", MucLightStore)
    assert isinstance(store, MucLightStore)
    room = Room("v1", {"roomname": "Kept", "display_lines": 30},
                {"alice@localhost": "owner", "bob@localhost": "member"})
    assert await store.create_room(SERVICE, "keep", room)
    assert not await store.create_room(SERVICE, "keep", room)  # the name is taken
    assert await store.load_room(SERVICE, "keep") == room
    await store.set_affiliations(SERVICE, "keep", {"bob@localhost": "owner",
                                                   "alice@localhost": "none",
                                                   "carol@localhost": "member"}, "v2")
    await store.set_config(SERVICE, "keep", {"roomname": "Renamed"}, "v3")
    loaded = await store.load_room(SERVICE, "keep")
    assert loaded == Room("v3", {"roomname": "Renamed"},
                          {"bob@localhost": "owner", "carol@localhost": "member"})
    assert await store.user_rooms("carol@localhost") == [(SERVICE, "keep")]
    assert await store.count_user_rooms("alice@localhost") == 0
    await store.set_blocking("bob@localhost", SERVICE, [("user", "deny", "eve@localhost"),
                                                        ("room", "deny", f"x@{SERVICE}")])
    assert await store.blocks("bob@localhost", SERVICE, f"x@{SERVICE}", "alice@localhost")
    assert await store.blocks("bob@localhost", SERVICE, ROOM, "eve@localhost")
    assert not await store.blocks("bob@localhost", SERVICE, ROOM, "alice@localhost")
    await store.set_blocking("bob@localhost", SERVICE, [("user", "allow", "eve@localhost")])
    assert await store.get_blocking("bob@localhost", SERVICE) == [("room", f"x@{SERVICE}")]
    assert await store.destroy_room(SERVICE, "keep")
    assert await store.load_room(SERVICE, "keep") is None
    assert await store.count_rooms() == 0


async def test_rooms_survive_restart_and_accounts_leave_them(
        tmp_path: Path, backend: PgDatabase | None) -> None:
    pools = await pool_toml(backend)
    async with running_server(tmp_path, modules=light_toml(), pool_toml=pools) as server:
        alice, bob = await user(server, "alice"), await user(server, "bob")
        await iq(alice, ROOM, "set", create_xml(occupants={"bob@localhost": "member"},
                                                roomname="Kept"))
        await next_message(alice), await next_message(bob)
        await iq(bob, f"{SERVICE}", "set", f"<query xmlns='{NS}#blocking'>"
                 "<user action='deny'>eve@localhost</user></query>")
        await disconnect(alice, bob)
    async with running_server(tmp_path, modules=light_toml(), pool_toml=pools) as server:
        bob = await user(server, "bob")
        info = await iq(bob, ROOM, "get", f"<query xmlns='{NS}#info'/>")
        assert info is not None
        assert users_of(info.find(f"{{{NS}#info}}occupants"), f"{NS}#info") == {  # type: ignore[arg-type]
            "alice@localhost": "owner", "bob@localhost": "member"}
        # The owner's account goes: bob is told and inherits the room; then bob's account
        # goes and the room with it, and his blocking list.
        await server.auth.remove(JID.parse("alice@localhost"))
        msg = await next_message(bob)
        x = msg.xml.find(f"{{{NS}#affiliations}}x")
        assert users_of(x, f"{NS}#affiliations") == {"alice@localhost": "none",
                                                     "bob@localhost": "owner"}
        module = server.modules["mod_muc_light"]
        await disconnect(bob)
        await server.auth.remove(JID.parse("bob@localhost"))
        assert await module.store.load_room(SERVICE, "keep") is None
        assert await module.store.get_blocking("bob@localhost", SERVICE) == []
