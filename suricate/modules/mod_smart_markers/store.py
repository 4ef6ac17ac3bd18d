"""mod_smart_markers' storage: the latest XEP-0333 marker per (account, peer or room,
thread), SQLite and PostgreSQL with the same SQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from suricate.storage.module_store import ModuleStore


@dataclass(slots=True)
class Marker:
    server: str
    username: str
    to_jid: str  # the peer's or the room's bare JID
    thread: str  # '' for the main thread
    type: str  # received | displayed | acknowledged
    msg_id: str
    timestamp: int  # microseconds


_COLUMNS = "server, username, to_jid, thread, type, msg_id, timestamp"
_UPSERT = (
    f"INSERT INTO smart_markers ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (server, username, to_jid, thread, type) DO UPDATE SET"
    " msg_id = excluded.msg_id, timestamp = excluded.timestamp"
)


def _marker(row: Sequence[object]) -> Marker:
    return Marker(str(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]),
                  str(row[5]), int(row[6]))  # type: ignore[call-overload]


class SmartMarkersStore(ModuleStore):
    migrations = __package__
    user_tables = ("smart_markers",)

    async def save(self, markers: Sequence[Marker]) -> None:
        async with self.session(transaction=True) as ex:
            for m in markers:
                await ex.execute(_UPSERT, m.server, m.username, m.to_jid, m.thread, m.type,
                                 m.msg_id, m.timestamp)

    async def conversation(self, server: str, user: str, peer: str, thread: str,
                           after: int | None, *, room: bool, own_only: bool) -> list[Marker]:
        """The markers of a conversation's ``thread`` ('' the main one) sent at ``after`` or
        later: for a peer, the account's to the peer and the peer's to the account (when the
        peer is local); for a room, everyone's to the room. ``own_only`` (keep_private): the
        account's own markers only."""
        me = f"{user}@{server}"
        args: list[object]
        if own_only:
            where, args = "server = ? AND username = ? AND to_jid = ?", [server, user, peer]
        elif room:
            where, args = "to_jid = ?", [peer]
        else:
            local, _, domain = peer.partition("@")
            where = ("((server = ? AND username = ? AND to_jid = ?)"
                     " OR (server = ? AND username = ? AND to_jid = ?))")
            args = [server, user, peer, domain, local, me]
        where += " AND thread = ?"
        args.append(thread)
        if after is not None:
            where += " AND timestamp >= ?"
            args.append(after)
        rows = await self.fetch(f"SELECT {_COLUMNS} FROM smart_markers WHERE {where}"
                                " ORDER BY timestamp", *args)
        return [_marker(r) for r in rows]

    async def of_user(self, server: str, user: str) -> list[Marker]:
        rows = await self.fetch(f"SELECT {_COLUMNS} FROM smart_markers WHERE server = ?"
                                " AND username = ? ORDER BY timestamp", server, user)
        return [_marker(r) for r in rows]

    async def remove_user(self, server: str, user: str) -> None:
        await self.execute("DELETE FROM smart_markers WHERE server = ? AND username = ?",
                           server, user)

    async def remove_to(self, to_jid: str, server: str | None = None,
                        user: str | None = None) -> None:
        """The markers to ``to_jid`` (a room): everyone's, or one account's."""
        if user is None:
            await self.execute("DELETE FROM smart_markers WHERE to_jid = ?", to_jid)
        else:
            await self.execute("DELETE FROM smart_markers WHERE to_jid = ? AND server = ?"
                               " AND username = ?", to_jid, server, user)
