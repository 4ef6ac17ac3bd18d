"""mod_blocking's storage: the account's blocklist (XEP-0191), one row per blocked JID."""

from __future__ import annotations

from collections.abc import Sequence

from suricate.storage.module_store import ModuleStore

__all__ = ["BlockingStore"]


class BlockingStore(ModuleStore):
    migrations = __package__
    user_tables = ("blocklist",)

    async def get_blocklist(self, server: str, user: str) -> list[str]:
        """Blocked JIDs, sorted."""
        rows = await self.fetch(
            "SELECT jid FROM blocklist WHERE server = ? AND username = ? ORDER BY jid",
            server,
            user,
        )
        return [row[0] for row in rows]

    async def block(self, server: str, user: str, jids: Sequence[str]) -> list[str]:
        """Add `jids`; return those that were not blocked before, in request order."""
        # XEP-0191 §3.3: the server pushes only the JIDs that changed, so report those.
        added: list[str] = []
        async with self.session(transaction=True) as ex:
            for jid in dict.fromkeys(jids):  # a client may list a JID twice
                if await ex.execute(
                    "INSERT INTO blocklist (server, username, jid) VALUES (?, ?, ?)"
                    " ON CONFLICT (server, username, jid) DO NOTHING",
                    server,
                    user,
                    jid,
                ):
                    added.append(jid)
        return added

    async def unblock(self, server: str, user: str, jids: Sequence[str]) -> list[str]:
        """Remove `jids`; return those that were blocked, in request order."""
        removed: list[str] = []
        async with self.session(transaction=True) as ex:
            for jid in dict.fromkeys(jids):
                if await ex.execute(
                    "DELETE FROM blocklist WHERE server = ? AND username = ? AND jid = ?",
                    server,
                    user,
                    jid,
                ):
                    removed.append(jid)
        return removed

    async def unblock_all(self, server: str, user: str) -> list[str]:
        """Empty the blocklist; return what it held, sorted."""
        rows = await self.fetch(
            "DELETE FROM blocklist WHERE server = ? AND username = ? RETURNING jid",
            server,
            user,
        )
        return sorted(row[0] for row in rows)
