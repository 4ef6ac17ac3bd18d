"""mod_privacy's storage: an account's named privacy lists (XEP-0016 §2.1), their ordered
items and which one is the default list (§2.5)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from suricate.storage.module_store import ModuleStore

__all__ = ["PrivacyItem", "PrivacyStore", "MESSAGE", "IQ", "PRESENCE_IN", "PRESENCE_OUT"]

# The kinds of stanza an item names with its child elements (§2.1), as bits; an item with
# none (``stanzas == 0``) applies to every stanza.
MESSAGE = 1
IQ = 2
PRESENCE_IN = 4
PRESENCE_OUT = 8


@dataclass(frozen=True, slots=True)
class PrivacyItem:
    """One ``<item/>`` as the client wrote it (§2.1); ``type`` None is the fall-through."""

    order: int
    action: str  # "allow" or "deny"
    type: str | None = None  # "jid", "group", "subscription" or None
    value: str | None = None
    stanzas: int = 0


class PrivacyStore(ModuleStore):
    migrations = __package__
    user_tables = ("privacy_lists", "privacy_list_items")

    async def list_names(self, server: str, user: str) -> tuple[list[str], str | None]:
        """The account's list names, sorted, and the name of its default list (or None)."""
        rows = await self.fetch(
            "SELECT name, is_default FROM privacy_lists WHERE server = ? AND username = ?"
            " ORDER BY name",
            server,
            user,
        )
        default = next((row[0] for row in rows if row[1]), None)
        return [row[0] for row in rows], default

    async def get_list(self, server: str, user: str, name: str) -> list[PrivacyItem] | None:
        """The items of list ``name`` in ascending order (§2.2 rule 5), None if no such list."""
        if await self.fetch_one(
            "SELECT 1 FROM privacy_lists WHERE server = ? AND username = ? AND name = ?",
            server, user, name,
        ) is None:
            return None
        return await self._items(server, user, name)

    async def get_default(self, server: str, user: str
                          ) -> tuple[str, list[PrivacyItem]] | None:
        """The default list's name and items, None when the account has none."""
        row = await self.fetch_one(
            "SELECT name FROM privacy_lists WHERE server = ? AND username = ? AND is_default",
            server, user,
        )
        if row is None:
            return None
        return row[0], await self._items(server, user, row[0])

    async def _items(self, server: str, user: str, name: str) -> list[PrivacyItem]:
        rows = await self.fetch(
            "SELECT ord, action, type, value, stanzas FROM privacy_list_items"
            " WHERE server = ? AND username = ? AND name = ? ORDER BY ord",
            server, user, name,
        )
        return [PrivacyItem(int(r[0]), r[1], r[2], r[3], int(r[4])) for r in rows]

    async def set_list(self, server: str, user: str, name: str,
                       items: Sequence[PrivacyItem]) -> None:
        """Create list ``name`` or replace all its items (§2.6: never a delta); a list that
        was the default stays the default."""
        async with self.session(transaction=True) as ex:
            await ex.execute(
                "INSERT INTO privacy_lists (server, username, name) VALUES (?, ?, ?)"
                " ON CONFLICT (server, username, name) DO NOTHING",
                server, user, name,
            )
            await ex.execute(
                "DELETE FROM privacy_list_items WHERE server = ? AND username = ? AND name = ?",
                server, user, name,
            )
            for item in items:
                await ex.execute(
                    "INSERT INTO privacy_list_items (server, username, name, ord, type, value,"
                    " action, stanzas) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    server, user, name, item.order, item.type, item.value, item.action,
                    item.stanzas,
                )

    async def remove_list(self, server: str, user: str, name: str) -> bool:
        """Remove list ``name`` (and with it the default, if it was); False if none."""
        async with self.session(transaction=True) as ex:
            await ex.execute(
                "DELETE FROM privacy_list_items WHERE server = ? AND username = ? AND name = ?",
                server, user, name,
            )
            return bool(await ex.execute(
                "DELETE FROM privacy_lists WHERE server = ? AND username = ? AND name = ?",
                server, user, name,
            ))

    async def set_default(self, server: str, user: str, name: str | None) -> bool:
        """Make ``name`` the default list, or decline any default with None (§2.5). False
        (and nothing changed) when no list has that name."""
        async with self.session(transaction=True) as ex:
            if name is not None and not await ex.fetch(
                "SELECT 1 FROM privacy_lists WHERE server = ? AND username = ? AND name = ?",
                server, user, name,
            ):
                return False
            await ex.execute(
                "UPDATE privacy_lists SET is_default = (name = ?)"
                " WHERE server = ? AND username = ?",
                name or "", server, user,
            )
        return True
