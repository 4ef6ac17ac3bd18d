"""mod_blocking's `spam` category of the GraphQL API (SDL next to this file, collected through
`ModBlocking.graphql`): the XEP-0377 reports users attached to their blocks, and the
operator's one-command answer to a spammer of this server (docs/operations.md, "Spam and
abuse"). Admin only: a user sees its own blocklist over XMPP."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from suricate.admin.context import Context, enabled_module, fail, parse_jid, served_domain
from suricate.admin.resolvers.account import ban
from suricate.modules.mod_blocking import ModBlocking
from suricate.modules.mod_blocking.store import StoredReport

#: Reports one query answers at most (the newest first).
MAX_LIMIT = 500


def _limit(a: dict[str, Any]) -> int:
    limit = a.get("limit")
    if limit is None:
        return 50
    if limit < 1:
        raise fail("limit must be at least 1", "bad_request")
    return min(int(limit), MAX_LIMIT)


def _as_dict(r: StoredReport) -> dict[str, Any]:
    when = datetime.fromtimestamp(r.created_at, UTC).isoformat(timespec="seconds")
    return {"id": r.id, "reporter": r.reporter, "reported": r.reported, "reason": r.reason,
            "text": r.text, "stanzaIds": r.stanza_ids, "messages": r.messages,
            "processing": r.processing, "timestamp": when.replace("+00:00", "Z")}


async def list_reports(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    domain = served_domain(ctx, a["domain"])
    reported = a.get("reported")
    bare = None if reported is None else str(parse_jid(reported, "reported").bare)
    store = enabled_module(ctx, ModBlocking).store
    return [_as_dict(r) for r in await store.list_reports(domain=domain, reported=bare,
                                                          limit=_limit(a))]


async def reports_about(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    user = parse_jid(a["user"], bare=True)
    served_domain(ctx, user.domain)
    store = enabled_module(ctx, ModBlocking).store
    return [_as_dict(r) for r in await store.list_reports(reported=str(user),
                                                          limit=_limit(a))]


async def ban_user(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    """account banUser, then the offline messages: a spam wave sent to accounts that are
    offline would otherwise be delivered at their next login, after the ban."""
    enabled_module(ctx, ModBlocking)
    user = parse_jid(a["user"], bare=True)
    kicked = await ban(ctx, user, a.get("reason") or "banned")
    removed = 0
    offline = ctx.server.modules.get("mod_offline")
    if a.get("removeOfflineMessages", True) is not False and offline is not None:
        removed = await offline.store.remove_from_sender(str(user))
    return {"jid": str(user), "sessionsKicked": kicked, "offlineMessagesRemoved": removed,
            "message": f"User {user} banned ({kicked} sessions ended, {removed} offline "
                       "messages removed)"}


ADMIN_RESOLVERS = {
    ("SpamAdminQuery", "listReports"): list_reports,
    ("SpamAdminQuery", "reportsAbout"): reports_about,
    ("SpamAdminMutation", "banUser"): ban_user,
}
USER_RESOLVERS: dict[tuple[str, str], Any] = {}  # no user category
