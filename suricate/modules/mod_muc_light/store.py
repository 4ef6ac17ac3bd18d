"""mod_muc_light's storage: rooms (version, configuration), their members and the users'
blocking lists. Members are bare JID strings ``user@server`` here and in ``Room``."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from suricate.storage.module_store import ModuleStore


@dataclass(slots=True)
class Room:
    version: str
    config: dict[str, Any]  # internal key -> value
    affiliations: dict[str, str] = field(default_factory=dict)  # bare JID -> owner|member


def _split(member: str) -> tuple[str, str]:
    user, _, server = member.partition("@")
    return server, user


class MucLightStore(ModuleStore):
    migrations = __package__
    # The blocking lists belong to the account; its memberships are taken out of the rooms
    # by the remove_user hook, which also tells the remaining members (and may end a room).
    user_tables = ("muc_light_blocking",)

    async def create_room(self, service: str, room: str, new: Room) -> bool:
        """Store a new room with its members; False if the name is taken."""
        async with self.session(transaction=True) as ex:
            taken = await ex.fetch(
                "SELECT 1 FROM muc_light_rooms WHERE service = ? AND room = ?", service, room)
            if taken:
                return False
            await ex.execute(
                "INSERT INTO muc_light_rooms (service, room, version, config) VALUES (?, ?, ?, ?)",
                service, room, new.version, json.dumps(new.config, sort_keys=True))
            await ex.execute_many(
                "INSERT INTO muc_light_occupants (service, room, server, username, affiliation)"
                " VALUES (?, ?, ?, ?, ?)",
                [(service, room, *_split(m), aff) for m, aff in sorted(new.affiliations.items())])
        return True

    async def load_room(self, service: str, room: str) -> Room | None:
        async with self.session() as ex:
            rows = await ex.fetch(
                "SELECT version, config FROM muc_light_rooms WHERE service = ? AND room = ?",
                service, room)
            if not rows:
                return None
            affs = await ex.fetch(
                "SELECT server, username, affiliation FROM muc_light_occupants"
                " WHERE service = ? AND room = ?", service, room)
        version, config = rows[0]
        return Room(version, json.loads(config),
                    {f"{user}@{server}": aff for server, user, aff in affs})

    async def room_exists(self, service: str, room: str) -> bool:
        return await self.fetch_one(
            "SELECT 1 FROM muc_light_rooms WHERE service = ? AND room = ?", service, room) \
            is not None

    async def set_config(self, service: str, room: str, config: Mapping[str, Any],
                         version: str) -> None:
        await self.execute(
            "UPDATE muc_light_rooms SET config = ?, version = ? WHERE service = ? AND room = ?",
            json.dumps(dict(config), sort_keys=True), version, service, room)

    async def set_affiliations(self, service: str, room: str, changes: Mapping[str, str],
                               version: str) -> None:
        """Apply ``changes`` (bare JID -> owner, member or none) and the new version at once."""
        async with self.session(transaction=True) as ex:
            for member, aff in sorted(changes.items()):
                server, user = _split(member)
                if aff == "none":
                    await ex.execute(
                        "DELETE FROM muc_light_occupants WHERE service = ? AND room = ?"
                        " AND server = ? AND username = ?", service, room, server, user)
                else:
                    await ex.execute(
                        "INSERT INTO muc_light_occupants"
                        " (service, room, server, username, affiliation) VALUES (?, ?, ?, ?, ?)"
                        " ON CONFLICT (service, room, server, username)"
                        " DO UPDATE SET affiliation = excluded.affiliation",
                        service, room, server, user, aff)
            await ex.execute(
                "UPDATE muc_light_rooms SET version = ? WHERE service = ? AND room = ?",
                version, service, room)

    async def destroy_room(self, service: str, room: str) -> bool:
        async with self.session(transaction=True) as ex:
            await ex.execute("DELETE FROM muc_light_occupants WHERE service = ? AND room = ?",
                             service, room)
            return await ex.execute(
                "DELETE FROM muc_light_rooms WHERE service = ? AND room = ?", service, room) > 0

    async def delete_service(self, service: str) -> None:
        """Every room of a service, with its members (its domain was removed)."""
        async with self.session(transaction=True) as ex:
            await ex.execute("DELETE FROM muc_light_occupants WHERE service = ?", service)
            await ex.execute("DELETE FROM muc_light_rooms WHERE service = ?", service)

    async def user_rooms(self, member: str, service: str | None = None) -> list[tuple[str, str]]:
        """(service, room) of every room ``member`` belongs to, sorted."""
        server, user = _split(member)
        if service is None:
            rows = await self.fetch(
                "SELECT service, room FROM muc_light_occupants WHERE server = ? AND username = ?"
                " ORDER BY service, room", server, user)
        else:
            rows = await self.fetch(
                "SELECT service, room FROM muc_light_occupants WHERE server = ? AND username = ?"
                " AND service = ? ORDER BY room", server, user, service)
        return [(s, r) for s, r in rows]

    async def count_user_rooms(self, member: str) -> int:
        server, user = _split(member)
        row = await self.fetch_one(
            "SELECT COUNT(*) FROM muc_light_occupants WHERE server = ? AND username = ?",
            server, user)
        return int(row[0]) if row else 0

    async def room_infos(self, service: str, rooms: list[str]) -> dict[str, Room]:
        """Version and configuration of several rooms of one service (disco#items)."""
        out: dict[str, Room] = {}
        for room in rooms:
            row = await self.fetch_one(
                "SELECT version, config FROM muc_light_rooms WHERE service = ? AND room = ?",
                service, room)
            if row is not None:
                out[room] = Room(row[0], json.loads(row[1]))
        return out

    # -- blocking ---------------------------------------------------------------------------
    async def remove_account(self, bare: str) -> None:
        """As ModMucLight.remove_user, without telling the rooms (nobody is connected): the
        account leaves each of its rooms, an owner hands the room on (§5.4), a room left
        empty ends (§5.2)."""
        from suricate.modules.mod_muc_light import rules

        for service, room in await self.user_rooms(bare):
            found = await self.load_room(service, room)
            if found is None:
                continue
            after, changed = rules.apply(found.affiliations, [(bare, "none")], False)
            if after:
                version = f"{time.time_ns() // 1000}-{secrets.token_hex(4)}"
                await self.set_affiliations(service, room, changed, version)
            else:
                await self.destroy_room(service, room)

    async def member_rows(self, member: str) -> list[tuple[str, str]]:
        """(room JID, affiliation) of every room ``member`` belongs to (GDPR retrieval)."""
        server, user = _split(member)
        rows = await self.fetch(
            "SELECT service, room, affiliation FROM muc_light_occupants"
            " WHERE server = ? AND username = ? ORDER BY service, room", server, user)
        return [(f"{r}@{s}", a) for s, r, a in rows]

    async def get_blocking(self, member: str, service: str) -> list[tuple[str, str]]:
        """(what, who) denied by ``member`` on ``service``: what is room or user."""
        server, user = _split(member)
        rows = await self.fetch(
            "SELECT what, who FROM muc_light_blocking WHERE server = ? AND username = ?"
            " AND service = ? ORDER BY what, who", server, user, service)
        return [(w, j) for w, j in rows]

    async def set_blocking(self, member: str, service: str,
                           items: list[tuple[str, str, str]]) -> None:
        """Apply (what, action, who) items: deny adds, allow removes."""
        server, user = _split(member)
        async with self.session(transaction=True) as ex:
            for what, action, who in items:
                await ex.execute(
                    "DELETE FROM muc_light_blocking WHERE server = ? AND username = ?"
                    " AND service = ? AND what = ? AND who = ?", server, user, service, what, who)
                if action == "deny":
                    await ex.execute(
                        "INSERT INTO muc_light_blocking (server, username, service, what, who)"
                        " VALUES (?, ?, ?, ?, ?)", server, user, service, what, who)

    async def blocks(self, member: str, service: str, room: str, by: str) -> bool:
        """Whether ``member`` denies being added to ``room`` (a bare JID) or by ``by``."""
        server, user = _split(member)
        row = await self.fetch_one(
            "SELECT 1 FROM muc_light_blocking WHERE server = ? AND username = ? AND service = ?"
            " AND ((what = 'room' AND who = ?) OR (what = 'user' AND who = ?))",
            server, user, service, room, by)
        return row is not None

    async def count_rooms(self) -> int:
        row = await self.fetch_one("SELECT COUNT(*) FROM muc_light_rooms")
        return int(row[0]) if row else 0
