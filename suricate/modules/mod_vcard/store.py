"""mod_vcard's storage: one vCard (XEP-0054), serialized XML, per account."""

from __future__ import annotations

from suricate.storage.module_store import ModuleStore

__all__ = ["VcardStore"]


class VcardStore(ModuleStore):
    migrations = __package__
    user_tables = ("vcards",)

    async def set_vcard(self, server: str, user: str, xml: str) -> None:
        await self.execute(
            "INSERT INTO vcards (server, username, vcard) VALUES (?, ?, ?)"
            " ON CONFLICT (server, username) DO UPDATE SET vcard = excluded.vcard",
            server,
            user,
            xml,
        )

    async def get_vcard(self, server: str, user: str) -> str | None:
        row = await self.fetch_one(
            "SELECT vcard FROM vcards WHERE server = ? AND username = ?", server, user
        )
        return None if row is None else row[0]
