"""mod_muc's storage: persistent rooms (configuration, subject), their affiliations,
registered nicks and vCards (XEP-0486)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from suricate.storage.module_store import ModuleStore
from suricate.storage.sql import Executor


@dataclass(slots=True)
class StoredRoom:
    config: dict[str, Any]
    subject: str
    subject_author: str
    affiliations: dict[str, tuple[str, str]]  # bare JID -> (affiliation, reason)
    nicks: dict[str, str] = field(default_factory=dict)  # bare JID -> registered nick
    vcard: str | None = None  # the serialized room vCard (XEP-0486), None without one


class MucStore(ModuleStore):
    migrations = __package__
    # Rows are keyed by room, not by account: an account's affiliations go with the room.
    user_tables = ()

    async def load_room(self, muc_host: str, room: str) -> StoredRoom | None:
        async with self.session() as ex:
            rows = await ex.fetch(
                "SELECT config, subject, subject_author FROM muc_rooms"
                " WHERE muc_host = ? AND room = ?", muc_host, room)
            if not rows:
                return None
            affs = await ex.fetch(
                "SELECT jid, affiliation, reason FROM muc_affiliations"
                " WHERE muc_host = ? AND room = ?", muc_host, room)
            nicks = await ex.fetch(
                "SELECT jid, nick FROM muc_registered WHERE muc_host = ? AND room = ?",
                muc_host, room)
            vcards = await ex.fetch(
                "SELECT vcard FROM muc_vcards WHERE muc_host = ? AND room = ?", muc_host, room)
        config, subject, author = rows[0]
        return StoredRoom(json.loads(config), subject, author,
                          {jid: (aff, reason) for jid, aff, reason in affs},
                          {jid: nick for jid, nick in nicks},
                          vcards[0][0] if vcards else None)

    async def store_room(self, muc_host: str, room: str, config: dict[str, Any],
                         subject: str, subject_author: str,
                         affiliations: dict[str, tuple[str, str]],
                         nicks: dict[str, str] | None = None, vcard: str | None = None) -> None:
        """The whole room at once (it became persistent, or its configuration changed);
        ``vcard``: its serialized vCard, None without one."""
        async with self.session(transaction=True) as ex:
            await ex.execute(
                "INSERT INTO muc_rooms (muc_host, room, config, subject, subject_author)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (muc_host, room) DO UPDATE SET"
                " config = excluded.config, subject = excluded.subject,"
                " subject_author = excluded.subject_author",
                muc_host, room, json.dumps(config, sort_keys=True), subject, subject_author)
            await ex.execute("DELETE FROM muc_affiliations WHERE muc_host = ? AND room = ?",
                             muc_host, room)
            if affiliations:
                await ex.execute_many(
                    "INSERT INTO muc_affiliations (muc_host, room, jid, affiliation, reason)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(muc_host, room, jid, aff, reason)
                     for jid, (aff, reason) in sorted(affiliations.items())])
            await ex.execute("DELETE FROM muc_registered WHERE muc_host = ? AND room = ?",
                             muc_host, room)
            if nicks:
                await ex.execute_many(
                    "INSERT INTO muc_registered (muc_host, room, jid, nick) VALUES (?, ?, ?, ?)",
                    [(muc_host, room, jid, nick) for jid, nick in sorted(nicks.items())])
            await self._put_vcard(ex, muc_host, room, vcard)

    async def set_vcard(self, muc_host: str, room: str, vcard: str | None) -> None:
        """XEP-0486 §3.2: the room's vCard replaced (None: removed)."""
        async with self.session(transaction=True) as ex:
            await self._put_vcard(ex, muc_host, room, vcard)

    @staticmethod
    async def _put_vcard(ex: Executor, muc_host: str, room: str, vcard: str | None) -> None:
        await ex.execute("DELETE FROM muc_vcards WHERE muc_host = ? AND room = ?",
                         muc_host, room)
        if vcard is not None:
            await ex.execute("INSERT INTO muc_vcards (muc_host, room, vcard) VALUES (?, ?, ?)",
                             muc_host, room, vcard)

    async def set_subject(self, muc_host: str, room: str, subject: str, author: str) -> None:
        await self.execute(
            "UPDATE muc_rooms SET subject = ?, subject_author = ? WHERE muc_host = ? AND room = ?",
            subject, author, muc_host, room)

    async def set_affiliation(self, muc_host: str, room: str, jid: str, affiliation: str,
                              reason: str) -> None:
        if affiliation == "none":
            await self.execute(
                "DELETE FROM muc_affiliations WHERE muc_host = ? AND room = ? AND jid = ?",
                muc_host, room, jid)
            return
        await self.execute(
            "INSERT INTO muc_affiliations (muc_host, room, jid, affiliation, reason)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (muc_host, room, jid) DO UPDATE SET"
            " affiliation = excluded.affiliation, reason = excluded.reason",
            muc_host, room, jid, affiliation, reason)

    async def register_nick(self, muc_host: str, room: str, jid: str,
                            nick: str | None) -> None:
        """XEP-0045 §7.10: ``jid`` registers ``nick`` with the room (None: cancels)."""
        async with self.session(transaction=True) as ex:
            await ex.execute(
                "DELETE FROM muc_registered WHERE muc_host = ? AND room = ? AND jid = ?",
                muc_host, room, jid)
            if nick is not None:
                await ex.execute(
                    "INSERT INTO muc_registered (muc_host, room, jid, nick) VALUES (?, ?, ?, ?)",
                    muc_host, room, jid, nick)

    async def account_rooms(self, jid: str) -> list[tuple[str, str, str, str, str]]:
        """(muc_host, room, affiliation, reason, registered nick) of every stored room that
        names the account ``jid`` (bare): GDPR retrieval."""
        async with self.session() as ex:
            affs = await ex.fetch("SELECT muc_host, room, affiliation, reason"
                                  " FROM muc_affiliations WHERE jid = ?", jid)
            nicks = await ex.fetch(
                "SELECT muc_host, room, nick FROM muc_registered WHERE jid = ?", jid)
        rows: dict[tuple[str, str], list[str]] = {}
        for host, room, aff, reason in affs:
            rows[(host, room)] = [aff, reason, ""]
        for host, room, nick in nicks:
            rows.setdefault((host, room), ["", "", ""])[2] = nick
        return [(h, r, v[0], v[1], v[2]) for (h, r), v in sorted(rows.items())]

    async def remove_user(self, jid: str) -> None:
        """An account was removed: its affiliations and nicks go (a new account of the same
        name must not inherit ownership, a ban or a reserved nick)."""
        async with self.session(transaction=True) as ex:
            await ex.execute("DELETE FROM muc_affiliations WHERE jid = ?", jid)
            await ex.execute("DELETE FROM muc_registered WHERE jid = ?", jid)

    async def remove_account(self, bare: str) -> None:
        await self.remove_user(bare)

    async def delete_room(self, muc_host: str, room: str) -> None:
        async with self.session(transaction=True) as ex:
            await ex.execute("DELETE FROM muc_affiliations WHERE muc_host = ? AND room = ?",
                             muc_host, room)
            await ex.execute("DELETE FROM muc_registered WHERE muc_host = ? AND room = ?",
                             muc_host, room)
            await ex.execute("DELETE FROM muc_vcards WHERE muc_host = ? AND room = ?",
                             muc_host, room)
            await ex.execute("DELETE FROM muc_rooms WHERE muc_host = ? AND room = ?",
                             muc_host, room)

    async def delete_service(self, muc_host: str) -> None:
        """Every room of a service (its domain was removed)."""
        async with self.session(transaction=True) as ex:
            for table in ("muc_affiliations", "muc_registered", "muc_vcards", "muc_rooms"):
                await ex.execute(f"DELETE FROM {table} WHERE muc_host = ?", muc_host)

    async def list_rooms(self, muc_host: str) -> list[tuple[str, dict[str, Any]]]:
        """Every stored room of a service with its configuration (disco#items)."""
        rows = await self.fetch(
            "SELECT room, config FROM muc_rooms WHERE muc_host = ? ORDER BY room", muc_host)
        return [(room, json.loads(config)) for room, config in rows]

    async def all_rooms(self) -> list[tuple[str, str]]:
        """(service, room) of every stored room: what may be woken from hibernation."""
        rows = await self.fetch("SELECT muc_host, room FROM muc_rooms")
        return [(host, room) for host, room in rows]

    async def count_rooms(self) -> int:
        row = await self.fetch_one("SELECT COUNT(*) FROM muc_rooms")
        return int(row[0]) if row else 0
