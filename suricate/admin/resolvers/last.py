"""last: XEP-0012 last activity."""

from __future__ import annotations

import time
from typing import Any

from suricate.admin.context import Context, enabled_module, fail, parse_jid, served_domain
from suricate.modules.mod_last import ModLast


async def get_last(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    user = parse_jid(a["user"], bare=True)
    served_domain(ctx, user.domain)
    found = await enabled_module(ctx, ModLast).store.get_last(user.domain, user.local or "")
    if found is None:
        raise fail(f"no last activity for {user}", "not_found")
    return {"user": str(user), "timestamp": found[0], "status": found[1]}


async def set_last(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    user = parse_jid(a["user"], bare=True)
    served_domain(ctx, user.domain)
    stamp = int(a["timestamp"]) if a.get("timestamp") is not None else int(time.time())
    await enabled_module(ctx, ModLast).store.set_last(user.domain, user.local or "", stamp, a["status"])
    return {"user": str(user), "timestamp": stamp, "status": a["status"]}


async def count_active_users(ctx: Context, a: dict[str, Any]) -> int:
    return await enabled_module(ctx, ModLast).store.count_active_users(served_domain(ctx, a["domain"]),
                                                       int(a["timestamp"]))


RESOLVERS = {
    ("LastAdminQuery", "getLast"): get_last,
    ("LastAdminQuery", "countActiveUsers"): count_active_users,
    ("LastAdminMutation", "setLast"): set_last,
}
