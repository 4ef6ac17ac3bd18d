"""mod_last's storage: when and with which status an account last logged out (XEP-0012)."""

from __future__ import annotations

from suricate.storage.module_store import ModuleStore

__all__ = ["LastStore"]


class LastStore(ModuleStore):
    migrations = __package__
    user_tables = ("last_activity",)

    async def set_last(self, server: str, user: str, timestamp: int, status: str) -> None:
        await self.execute(
            "INSERT INTO last_activity (server, username, seconds, status) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (server, username) DO UPDATE SET"
            " seconds = excluded.seconds, status = excluded.status",
            server,
            user,
            int(timestamp),
            status,
        )

    async def get_last(self, server: str, user: str) -> tuple[int, str] | None:
        row = await self.fetch_one(
            "SELECT seconds, status FROM last_activity WHERE server = ? AND username = ?",
            server,
            user,
        )
        return None if row is None else (int(row[0]), row[1])

    async def count_active_users(self, server: str, since: int) -> int:
        """Accounts of `server` whose last activity (XEP-0012) is at or after `since`."""
        row = await self.fetch_one(
            "SELECT COUNT(*) FROM last_activity WHERE server = ? AND seconds >= ?",
            server,
            int(since),
        )
        return int(row[0]) if row else 0

    async def activity_of_domain(self, server: str) -> dict[str, int]:
        """Last activity of every account of `server` that has one: username -> seconds."""
        rows = await self.fetch(
            "SELECT username, seconds FROM last_activity WHERE server = ?", server)
        return {row[0]: int(row[1]) for row in rows}
