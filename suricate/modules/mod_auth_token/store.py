"""mod_auth_token's storage: the valid refresh-token sequence number of each account."""

from __future__ import annotations

import time

from suricate.storage.module_store import ModuleStore

__all__ = ["AuthTokenStore"]


class AuthTokenStore(ModuleStore):
    migrations = __package__
    user_tables = ("auth_token",)

    async def get_seq_no(self, server: str, user: str) -> int | None:
        """The account's valid sequence number, None when no refresh token was ever issued
        (or the account was removed since)."""
        row = await self.fetch_one(
            "SELECT seq_no FROM auth_token WHERE server = ? AND username = ?", server, user)
        return None if row is None else int(row[0])

    async def current_seq_no(self, server: str, user: str) -> int:
        """The number to put in a new refresh token: the stored one; the first time, the
        time in milliseconds, so that a refresh token of a removed account of the same name
        (whose row went with it) stays below the new account's number: refused."""
        first = int(time.time() * 1000)
        await self.execute(
            "INSERT INTO auth_token (server, username, seq_no) VALUES (?, ?, ?)"
            " ON CONFLICT (server, username) DO NOTHING", server, user, first)
        seq = await self.get_seq_no(server, user)
        return first if seq is None else seq

    async def revoke(self, server: str, user: str) -> bool:
        """Invalidate every refresh token issued so far. False: none was ever issued."""
        count = await self.execute(
            "UPDATE auth_token SET seq_no = seq_no + 1 WHERE server = ? AND username = ?",
            server, user)
        return count > 0
