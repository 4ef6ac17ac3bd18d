"""mod_last's `last` category of the GraphQL API (SDL next to this file, collected through
`ModLast.graphql`). XEP-0012 last activity."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from suricate.admin.context import (
    Context,
    as_me,
    enabled_module,
    existing_user,
    fail,
    me,
    parse_jid,
    served_domain,
)
from suricate.admin.resolvers.session import user_infos
from suricate.jid import JID
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
    user = await existing_user(ctx, a["user"])
    stamp = int(a["timestamp"]) if a.get("timestamp") is not None else int(time.time())
    await _store(ctx).set_last(user.domain, user.local or "", stamp, a["status"])
    return {"user": str(user), "timestamp": stamp, "status": a["status"]}


async def count_active_users(ctx: Context, a: dict[str, Any]) -> int:
    return await _store(ctx).count_active_users(served_domain(ctx, a["domain"]),
                                                int(a["timestamp"]))


def _seconds(value: Any) -> int:
    """A DateTime argument (XEP-0082, as 6.4's DateTime scalar; Unix seconds also taken)."""
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        raise fail(f"timestamp: not a DateTime: {value!r}", "bad_timestamp") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


def _datetime(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _old_users(ctx: Context, a: dict[str, Any]) -> list[tuple[JID, int | None]]:
    """6.4's old users: accounts of the domain (of every served domain when none is named)
    with no last activity, or one before `timestamp`; an account with a session is not
    old, whatever its stored activity."""
    store = _store(ctx)
    before = _seconds(a["timestamp"])
    if a.get("domain"):
        domains = [served_domain(ctx, a["domain"])]
    else:
        domains = sorted(d.name for d in ctx.server.domains.all() if d.enabled)
    old: list[tuple[JID, int | None]] = []
    for domain in domains:
        activity = await store.activity_of_domain(domain)
        for username in await ctx.server.storage.list_users(domain):
            seconds = activity.get(username)
            if seconds is not None and seconds >= before:
                continue
            jid = JID(username, domain, None)
            if await user_infos(ctx, str(jid)):
                continue
            old.append((jid, seconds))
    return old


def _old_out(old: list[tuple[JID, int | None]]) -> list[dict[str, Any]]:
    return [{"jid": str(jid), "timestamp": None if s is None else _datetime(s)}
            for jid, s in old]


async def list_old_users(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    return _old_out(await _old_users(ctx, a))


async def remove_old_users(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    """Remove the accounts listOldUsers lists, with all their data (as removeUser)."""
    removed = []
    for jid, seconds in await _old_users(ctx, a):
        # The removal ends the account's sessions on every node (Server.account_removed).
        if await ctx.server.auth.remove(jid):
            removed.append((jid, seconds))
    return _old_out(removed)


ADMIN_RESOLVERS = {
    ("LastAdminQuery", "getLast"): get_last,
    ("LastAdminQuery", "countActiveUsers"): count_active_users,
    ("LastAdminMutation", "setLast"): set_last,
    ("LastAdminQuery", "listOldUsers"): list_old_users,
    ("LastAdminMutation", "removeOldUsers"): remove_old_users,
}
async def user_get_last(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    """A user reads their own last activity, or that of an account whose presence they may see:
    the rule mod_last applies to an iq:last over XMPP (XEP-0012 §3, §8), so that the API tells a
    stranger neither when the account left nor its last status text."""
    caller = me(ctx)
    user = parse_jid(a["user"], bare=True) if a.get("user") else caller
    if not await enabled_module(ctx, ModLast).may_see_presence(caller, user):
        raise fail(f"{caller} may not see the presence of {user}, nor its last activity",
                   "no_permissions")
    return await get_last(ctx, {**a, "user": str(user)})


USER_RESOLVERS = {
    ("LastUserQuery", "getLast"): user_get_last,
    ("LastUserMutation", "setLast"): as_me(set_last),
}
