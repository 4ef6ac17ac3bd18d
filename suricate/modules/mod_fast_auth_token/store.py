"""mod_fast_auth_token's storage: two token slots per account and client (XEP-0484 §5)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from suricate.storage.module_store import ModuleStore

__all__ = ["FastToken", "FastTokenSlots", "FastTokenStore"]


@dataclass(frozen=True, slots=True)
class FastToken:
    """One XEP-0484 token slot: the seed the token is derived from (never the token)."""

    seed: str
    expire: float  # Unix time
    mechanism: str  # the HT-* mechanism the token is bound to (XEP-0484 §3.4)
    count: int | None = None  # highest replay counter accepted so far


@dataclass(frozen=True, slots=True)
class FastTokenSlots:
    current: FastToken | None
    new: FastToken | None


class FastTokenStore(ModuleStore):
    migrations = __package__
    user_tables = ("fast_auth_token",)

    async def get_fast_tokens(self, server: str, user: str, agent_id: str
                              ) -> FastTokenSlots | None:
        """Both slots of the user's client `agent_id`, None if it has none."""
        row = await self.fetch_one(
            "SELECT current_seed, current_expire, current_mech, current_count,"
            " new_seed, new_expire, new_mech, new_count FROM fast_auth_token"
            " WHERE server = ? AND username = ? AND user_agent_id = ?",
            server,
            user,
            agent_id,
        )
        if row is None:
            return None
        return FastTokenSlots(_fast_token(row[0:4]), _fast_token(row[4:8]))

    async def store_fast_token(self, server: str, user: str, agent_id: str,
                               token: FastToken) -> None:
        """Put `token` in the 'new' slot, replacing an unused one (XEP-0484 §3.5)."""
        await self.execute(
            "INSERT INTO fast_auth_token (server, username, user_agent_id,"
            " new_seed, new_expire, new_mech, new_count) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (server, username, user_agent_id) DO UPDATE SET"
            " new_seed = excluded.new_seed, new_expire = excluded.new_expire,"
            " new_mech = excluded.new_mech, new_count = excluded.new_count",
            server,
            user,
            agent_id,
            token.seed,
            float(token.expire),
            token.mechanism,
            token.count,
        )

    async def use_fast_token(self, server: str, user: str, agent_id: str, slot: str,
                             seed: str, count: int | None) -> bool:
        """Record a successful login with the token of `slot` ('new' or 'current') whose
        seed is `seed`, atomically: a 'new' token moves to 'current' (XEP-0484 §5), and a
        `count` must exceed the one last accepted (XEP-0484 §3.4 replay protection).
        False when the slot no longer holds that token or the count was seen already."""
        # One conditional UPDATE is the check and the write: two logins racing with the
        # same counter (a replayed 0-RTT flight) cannot both see the old value.
        if slot not in ("new", "current"):
            raise ValueError(f"no FAST token slot {slot!r}")
        where = (f" WHERE server = ? AND username = ? AND user_agent_id = ? AND {slot}_seed = ?"
                 f" AND (CAST(? AS BIGINT) IS NULL OR {slot}_count IS NULL"
                 f" OR {slot}_count < ?)")
        if slot == "new":
            sql = ("UPDATE fast_auth_token SET current_seed = new_seed,"
                   " current_expire = new_expire, current_mech = new_mech,"
                   " current_count = COALESCE(?, new_count), new_seed = NULL,"
                   " new_expire = NULL, new_mech = NULL, new_count = NULL" + where)
        else:
            sql = ("UPDATE fast_auth_token SET current_count = COALESCE(?, current_count)"
                   + where)
        changed = await self.execute(sql, count, server, user, agent_id, seed, count, count)
        return changed > 0

    async def remove_fast_tokens(self, server: str, user: str, agent_id: str) -> None:
        """Invalidate both slots (XEP-0484 §3.6)."""
        await self.execute(
            "DELETE FROM fast_auth_token WHERE server = ? AND username = ? AND user_agent_id = ?",
            server,
            user,
            agent_id,
        )

    async def list_fast_tokens(self, server: str, user: str) -> list[tuple[str, FastToken]]:
        """Every live token slot of an account as (user agent id, token), for the admin API."""
        rows = await self.fetch(
            "SELECT user_agent_id, current_seed, current_expire, current_mech, current_count,"
            " new_seed, new_expire, new_mech, new_count FROM fast_auth_token"
            " WHERE server = ? AND username = ? ORDER BY user_agent_id",
            server,
            user,
        )
        found: list[tuple[str, FastToken]] = []
        for row in rows:
            for cols in (row[1:5], row[5:9]):
                token = _fast_token(cols)
                if token is not None:
                    found.append((row[0], token))
        return found

    async def revoke_fast_tokens(self, server: str, user: str) -> int:
        """Forget every FAST token of an account; return how many clients had some."""
        return await self.execute(
            "DELETE FROM fast_auth_token WHERE server = ? AND username = ?", server, user
        )


def _fast_token(cols: Sequence[Any]) -> FastToken | None:
    seed, expire, mech, count = cols
    if seed is None:
        return None
    return FastToken(seed, float(expire), mech, None if count is None else int(count))
