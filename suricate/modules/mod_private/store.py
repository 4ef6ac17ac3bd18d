"""mod_private's storage: one XML string per (account, namespace)."""

from __future__ import annotations

from suricate.storage.module_store import ModuleStore


class PrivateStore(ModuleStore):
    migrations = __package__
    user_tables = ("private_storage",)

    async def set_private(self, server: str, user: str, namespace: str, xml: str) -> None:
        await self.execute(
            "INSERT INTO private_storage (server, username, namespace, data) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (server, username, namespace) DO UPDATE SET data = excluded.data",
            server, user, namespace, xml)

    async def get_private(self, server: str, user: str, namespace: str) -> str | None:
        row = await self.fetch_one(
            "SELECT data FROM private_storage WHERE server = ? AND username = ? AND namespace = ?",
            server, user, namespace)
        return None if row is None else row[0]
