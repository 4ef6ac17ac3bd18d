"""mod_roster's storage: roster items (RFC 6121 §2.1.2), their groups and the roster version
(XEP-0237)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from suricate.storage.module_store import ModuleStore
from suricate.storage.sql import Row

__all__ = ["ASK_STATES", "SUBSCRIPTION_STATES", "RosterItem", "RosterStore"]

# RFC 6121 §2.1.2.5: the four subscription states a roster item can be in.
SUBSCRIPTION_STATES: frozenset[str] = frozenset({"none", "to", "from", "both"})
# Pending requests: 'out' = we asked the contact (RFC 6121 §2.1.2.2 ask='subscribe'),
# 'in' = the contact asked us and we have not answered yet (not sent to clients, but the
# server must remember it, RFC 6121 §3.1.3), 'both' = each side asked the other.
ASK_STATES: frozenset[str] = frozenset({"none", "out", "in", "both"})


@dataclass(frozen=True, slots=True)
class RosterItem:
    jid: str  # bare JID of the contact
    name: str | None = None
    subscription: str = "none"
    ask: str = "none"
    groups: tuple[str, ...] = ()
    # RFC 6121 §3.4: the user pre-approved a subscription request from this contact.
    approved: bool = False
    # The status text that came with a pending inbound subscription request, so it can be
    # shown to the user when they come online (RFC 6121 §3.1.3).
    ask_message: str | None = None

    def __post_init__(self) -> None:
        # Reject nonsense at construction rather than as an opaque database CHECK failure.
        if self.subscription not in SUBSCRIPTION_STATES:
            raise ValueError(f"invalid roster subscription {self.subscription!r}")
        if self.ask not in ASK_STATES:
            raise ValueError(f"invalid roster ask {self.ask!r}")


_ROSTER_SELECT = (
    "SELECT i.jid, i.name, i.subscription, i.ask, i.approved, i.ask_message, g.grp"
    " FROM roster_items i LEFT JOIN roster_groups g"
    " ON g.server = i.server AND g.username = i.username AND g.jid = i.jid"
    " WHERE i.server = ? AND i.username = ?"
)


def _roster_items(rows: Iterable[Row]) -> list[RosterItem]:
    """Fold the one-row-per-group join (ordered by jid, position) into items.

    One joined statement instead of two queries: a single round trip, and one snapshot so
    a concurrent put cannot pair old items with new groups.
    """
    items: list[RosterItem] = []
    current: Row | None = None
    groups: list[str] = []
    for row in rows:
        if current is None or row[0] != current[0]:
            if current is not None:
                items.append(_roster_item(current, groups))
            current, groups = row, []
        if row[6] is not None:
            groups.append(row[6])
    if current is not None:
        items.append(_roster_item(current, groups))
    return items


def _roster_item(row: Row, groups: list[str]) -> RosterItem:
    return RosterItem(
        jid=row[0],
        name=row[1],
        subscription=row[2],
        ask=row[3],
        groups=tuple(groups),
        approved=bool(row[4]),  # SQLite hands back 0/1
        ask_message=row[5],
    )


class RosterStore(ModuleStore):
    migrations = __package__
    # roster_groups before roster_items so the delete works even without FK cascades.
    user_tables = ("roster_groups", "roster_items", "roster_versions")

    async def get_roster(self, server: str, user: str) -> list[RosterItem]:
        """All items, sorted by JID."""
        rows = await self.fetch(_ROSTER_SELECT + " ORDER BY i.jid, g.position", server, user)
        return _roster_items(rows)

    async def get_roster_item(self, server: str, user: str, jid: str) -> RosterItem | None:
        rows = await self.fetch(
            _ROSTER_SELECT + " AND i.jid = ? ORDER BY g.position", server, user, jid
        )
        items = _roster_items(rows)
        return items[0] if items else None

    async def put_roster_item(self, server: str, user: str, item: RosterItem) -> None:
        """Insert or replace the item (groups included)."""
        async with self.session(transaction=True) as ex:
            await ex.execute(
                "INSERT INTO roster_items"
                " (server, username, jid, name, subscription, ask, approved, ask_message)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (server, username, jid) DO UPDATE SET"
                " name = excluded.name, subscription = excluded.subscription,"
                " ask = excluded.ask, approved = excluded.approved,"
                " ask_message = excluded.ask_message",
                server,
                user,
                item.jid,
                item.name,
                item.subscription,
                item.ask,
                item.approved,
                item.ask_message,
            )
            # Replacing the groups wholesale is simpler than diffing and rosters are small.
            await ex.execute(
                "DELETE FROM roster_groups WHERE server = ? AND username = ? AND jid = ?",
                server,
                user,
                item.jid,
            )
            # Drop repeats, keep first-seen order (a client may list a group twice).
            groups = list(dict.fromkeys(item.groups))
            if groups:
                # `position` keeps the client's group order across a round trip.
                await ex.execute_many(
                    "INSERT INTO roster_groups (server, username, jid, position, grp)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(server, user, item.jid, pos, grp) for pos, grp in enumerate(groups)],
                )

    async def delete_roster_item(self, server: str, user: str, jid: str) -> bool:
        # The groups go with the item through ON DELETE CASCADE.
        changed = await self.execute(
            "DELETE FROM roster_items WHERE server = ? AND username = ? AND jid = ?",
            server,
            user,
            jid,
        )
        return changed > 0

    async def get_roster_version(self, server: str, user: str) -> str | None:
        row = await self.fetch_one(
            "SELECT version FROM roster_versions WHERE server = ? AND username = ?",
            server,
            user,
        )
        return None if row is None else row[0]

    async def set_roster_version(self, server: str, user: str, version: str) -> None:
        await self.execute(
            "INSERT INTO roster_versions (server, username, version) VALUES (?, ?, ?)"
            " ON CONFLICT (server, username) DO UPDATE SET version = excluded.version",
            server,
            user,
            version,
        )
