"""mod_inbox's `inbox` category of the GraphQL API (SDL next to this file): emptying the bin,
for an account, a domain or every domain of a host type, as MongooseIM 6.4's
flushUserBin / flushDomainBin / flushGlobalBin."""

from __future__ import annotations

from typing import Any

from suricate.admin.context import (
    Context,
    as_me,
    enabled_module,
    existing_user,
    fail,
    served_domain,
)
from suricate.modules.mod_inbox import ModInbox


def _days(a: dict[str, Any]) -> int | None:
    days = a.get("days")
    if days is None or days == 0:
        return None  # every entry of the bin, whatever its age
    if days < 0:
        raise fail("days: give a non-negative number of days", "bad_days")
    return int(days)


def _bound(module: ModInbox, days: int | None) -> int | None:
    return None if days is None else module.bin_bound(days)


async def flush_user_bin(ctx: Context, a: dict[str, Any]) -> int:
    module = enabled_module(ctx, ModInbox)
    # 6.4's mod_inbox_api: an account that does not exist is user_does_not_exist, not "0
    # removed" (a mistyped name must not look like an empty bin).
    user = await existing_user(ctx, a["user"])
    await module.flush()
    return await module.store.empty_user_bin(user.domain, user.local or "",
                                             _bound(module, _days(a)))


async def flush_domain_bin(ctx: Context, a: dict[str, Any]) -> int:
    module = enabled_module(ctx, ModInbox)
    domain = served_domain(ctx, a["domain"])
    await module.flush()
    return await module.store.empty_domain_bin(domain, _bound(module, _days(a)))


async def flush_global_bin(ctx: Context, a: dict[str, Any]) -> int:
    module = enabled_module(ctx, ModInbox)
    registry = ctx.server.domains
    host_type = a["hostType"]
    if host_type not in registry.host_types and host_type not in registry.static:
        raise fail(f"unknown host type {host_type!r}", "unknown_host_type")
    days = _days(a)
    await module.flush()
    removed = 0
    for domain in registry.by_host_type(host_type):
        removed += await module.store.empty_domain_bin(domain, _bound(module, days))
    return removed


ADMIN_RESOLVERS = {
    ("InboxAdminMutation", "flushUserBin"): flush_user_bin,
    ("InboxAdminMutation", "flushDomainBin"): flush_domain_bin,
    ("InboxAdminMutation", "flushGlobalBin"): flush_global_bin,
}
USER_RESOLVERS = {
    ("InboxUserMutation", "flushBin"): as_me(flush_user_bin),
}
