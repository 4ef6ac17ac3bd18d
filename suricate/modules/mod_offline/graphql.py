"""mod_offline's `offline` category of the GraphQL API (SDL next to this file, collected through
`ModOffline.graphql`). Maintenance of stored offline messages (XEP-0160)."""

from __future__ import annotations

import time
from typing import Any

from suricate.admin.context import Context, enabled_module, fail, served_domain
from suricate.modules.mod_offline import ModOffline
from suricate.modules.mod_offline.store import OfflineStore


def _store(ctx: Context) -> OfflineStore:
    # The category is mod_offline's: without the module there is nothing to read or write.
    return enabled_module(ctx, ModOffline).store


async def delete_expired_messages(ctx: Context, a: dict[str, Any]) -> str:
    domain = served_domain(ctx, a["domain"])
    # The domain's messages only, as MongooseIM 6.4: a domain admin neither touches nor
    # counts another domain's.
    removed = await _store(ctx).remove_expired_offline(time.time(), domain)
    return f"Removed {removed} messages"


async def delete_old_messages(ctx: Context, a: dict[str, Any]) -> str:
    domain = served_domain(ctx, a["domain"])
    days = int(a["days"])
    if days < 0:
        raise fail("days must not be negative", "bad_request")
    removed = await _store(ctx).remove_old_offline(domain, time.time() - days * 86400)
    return f"Removed {removed} messages"


ADMIN_RESOLVERS = {
    ("OfflineAdminMutation", "deleteExpiredMessages"): delete_expired_messages,
    ("OfflineAdminMutation", "deleteOldMessages"): delete_old_messages,
}
USER_RESOLVERS: dict[tuple[str, str], Any] = {}  # no user category (as MongooseIM)
