"""mod_offline's storage: messages kept for an account until it comes online (XEP-0160)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from suricate.storage.module_store import ModuleStore

__all__ = ["OfflineMessage", "OfflineStore"]

#: Rows per INSERT of ``store_offline_many``: 7 parameters each, under SQLite's oldest
#: limit of 999 parameters a statement.
_ROWS_PER_INSERT = 100


@dataclass(frozen=True, slots=True)
class OfflineMessage:
    timestamp: float  # Unix time the message was stored (XEP-0203 delay stamp)
    from_jid: str
    to_jid: str
    packet: str  # the stanza, serialized XML
    expire: float | None = None  # Unix time after which it must not be delivered (XEP-0079)


class OfflineStore(ModuleStore):
    migrations = __package__
    user_tables = ("offline_messages",)

    async def store_offline(self, server: str, user: str, msg: OfflineMessage) -> None:
        await self.execute(
            "INSERT INTO offline_messages"
            " (server, username, stamp, expire, from_jid, to_jid, packet)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            server,
            user,
            float(msg.timestamp),
            None if msg.expire is None else float(msg.expire),
            msg.from_jid,
            msg.to_jid,
            msg.packet,
        )

    async def store_offline_many(self, server: str, user: str,
                                 msgs: Sequence[OfflineMessage]) -> None:
        """``msgs``, in their order, in one statement (per ``_ROWS_PER_INSERT``; several in
        one transaction): the ids ``pop_offline`` sorts on follow the order of the VALUES
        rows. One statement is atomic by itself: no BEGIN and COMMIT round trips."""
        if len(msgs) == 1:
            await self.store_offline(server, user, msgs[0])
            return
        async with self.session(transaction=len(msgs) > _ROWS_PER_INSERT) as ex:
            for start in range(0, len(msgs), _ROWS_PER_INSERT):
                chunk = msgs[start:start + _ROWS_PER_INSERT]
                args: list[Any] = []
                for msg in chunk:
                    args += (server, user, float(msg.timestamp),
                             None if msg.expire is None else float(msg.expire),
                             msg.from_jid, msg.to_jid, msg.packet)
                await ex.execute(
                    "INSERT INTO offline_messages"
                    " (server, username, stamp, expire, from_jid, to_jid, packet) VALUES "
                    + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(chunk)), *args)

    async def count_offline(self, server: str, user: str) -> int:
        row = await self.fetch_one(
            "SELECT COUNT(*) FROM offline_messages WHERE server = ? AND username = ?",
            server,
            user,
        )
        return int(row[0]) if row else 0

    async def pop_offline(
        self, server: str, user: str, now: float | None = None
    ) -> list[OfflineMessage]:
        """Remove and return the user's messages in arrival order, atomically.

        Messages whose `expire` is before `now` (default: the current time) are deleted
        but not returned (XEP-0079: an expired message is not delivered).
        """
        # One DELETE ... RETURNING is the fetch and the delete at once: two sessions popping
        # together each get a disjoint set (PostgreSQL row locks, SQLite's writer lock),
        # so a message is never delivered twice, and nothing arrives between a SELECT and a
        # DELETE to be lost. RETURNING has no ORDER BY, hence the sort on the serial id.
        rows = await self.fetch(
            "DELETE FROM offline_messages WHERE server = ? AND username = ?"
            " RETURNING id, stamp, expire, from_jid, to_jid, packet",
            server,
            user,
        )
        rows = sorted(rows, key=lambda row: row[0])
        cutoff = time.time() if now is None else now
        return [
            OfflineMessage(float(row[1]), row[3], row[4], row[5], _float_or_none(row[2]))
            for row in rows
            if row[2] is None or row[2] >= cutoff
        ]

    async def remove_expired_offline(self, now: float, server: str | None = None) -> int:
        """Delete messages whose `expire` is before `now`, of `server`'s users (every user's
        when None); return how many."""
        if server is None:
            return await self.execute(
                "DELETE FROM offline_messages WHERE expire IS NOT NULL AND expire < ?",
                float(now),
            )
        return await self.execute(
            "DELETE FROM offline_messages WHERE expire IS NOT NULL AND expire < ? AND server = ?",
            float(now),
            server,
        )

    async def remove_old_offline(self, server: str, before: float) -> int:
        """Delete offline messages of `server` stored before `before`; return how many."""
        return await self.execute(
            "DELETE FROM offline_messages WHERE server = ? AND stamp < ?", server, float(before)
        )

    async def remove_from_sender(self, sender: str) -> int:
        """Delete the stored messages the account ``sender`` (a bare JID) sent, from any of
        its resources, to anyone (a banned spammer's, docs/operations.md "Spam and abuse");
        return how many. substr, not LIKE: '_' and '%' are common in JIDs."""
        return await self.execute(
            "DELETE FROM offline_messages WHERE from_jid = ? OR substr(from_jid, 1, ?) = ?",
            sender, len(sender) + 1, sender + "/")


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
