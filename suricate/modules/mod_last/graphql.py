"""mod_last's `last` category of the GraphQL API (SDL next to this file, collected through
`ModLast.graphql`). XEP-0012 last activity."""

from __future__ import annotations

import time
from typing import Any

from suricate.admin.context import (
    Context,
    as_me,
    enabled_module,
    fail,
    parse_jid,
    served_domain,
    user_or_me,
)
from suricate.modules.mod_last import ModLast
from suricate.modules.mod_last.store import LastStore


def _store(ctx: Context) -> LastStore:
    # The category is mod_last's: without the module there is nothing to read or write.
    return enabled_module(ctx, ModLast).store


async def get_last(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    user = parse_jid(a["user"], bare=True)
    served_domain(ctx, user.domain)
    found = await _store(ctx).get_last(user.domain, user.local or "")
    if found is None:
        raise fail(f"no last activity for {user}", "not_found")
    return {"user": str(user), "timestamp": found[0], "status": found[1]}


async def set_last(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    user = parse_jid(a["user"], bare=True)
    served_domain(ctx, user.domain)
    stamp = int(a["timestamp"]) if a.get("timestamp") is not None else int(time.time())
    await _store(ctx).set_last(user.domain, user.local or "", stamp, a["status"])
    return {"user": str(user), "timestamp": stamp, "status": a["status"]}


async def count_active_users(ctx: Context, a: dict[str, Any]) -> int:
    return await _store(ctx).count_active_users(served_domain(ctx, a["domain"]),
                                                int(a["timestamp"]))


ADMIN_RESOLVERS = {
    ("LastAdminQuery", "getLast"): get_last,
    ("LastAdminQuery", "countActiveUsers"): count_active_users,
    ("LastAdminMutation", "setLast"): set_last,
}
USER_RESOLVERS = {
    ("LastUserQuery", "getLast"): user_or_me(get_last),
    ("LastUserMutation", "setLast"): as_me(set_last),
}
