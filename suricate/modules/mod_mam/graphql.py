"""The queries of the `stanza` category of the GraphQL API, which read mod_mam's one-to-one
archive (SDL next to this file): MongooseIM 6.4's ``getLastMessages``."""

from __future__ import annotations

from typing import Any

from suricate.admin.context import Context, as_me, enabled_module, fail, known_user, parse_jid
from suricate.jid import JID, InvalidJID
from suricate.modules.mod_mam import ModMam
from suricate.modules.mod_mam.query import Query, id_to_text, parse_stamp, stamp_of
from suricate.protocol.errors import StanzaError


async def get_last_messages(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    module = enabled_module(ctx, ModMam)
    # 6.4 answers unknown_user for an account that does not exist, rather than an empty page.
    caller = await known_user(ctx, parse_jid(a["caller"], "caller", bare=True))
    q = Query(last_page=True)
    if a.get("with"):
        try:
            q.with_jid = JID.parse(str(a["with"]))
        except (InvalidJID, ValueError) as exc:
            raise fail(f"with: invalid JID {a['with']!r} ({exc})", "bad_jid") from None
    if a.get("before"):
        try:
            q.end = parse_stamp(str(a["before"])) - 1  # strictly before
        except StanzaError:
            raise fail(f"before: not an XEP-0082 DateTime: {a['before']!r}",
                       "bad_timestamp") from None
    limit = a.get("limit")
    limit = 50 if limit is None else int(limit)
    if limit < 0:
        raise fail("limit: give a non-negative number", "bad_limit")
    limit = min(limit, module.max_limit)
    assert module.writer is not None and caller.local is not None
    await module.writer.flush_archive(caller.domain, caller.local)
    page = await module.store.lookup(caller.domain, caller.local, q, limit, True)
    return {
        "stanzas": [{"sender": m.from_jid, "timestamp": stamp_of(m.id),
                     "stanza_id": id_to_text(m.id), "stanza": m.message}
                    for m in page.messages],
        "limit": limit,
    }


async def _user_last_messages(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    return await get_last_messages(ctx, {**a, "caller": a["user"]})


ADMIN_RESOLVERS = {("StanzaAdminQuery", "getLastMessages"): get_last_messages}
USER_RESOLVERS = {("StanzaUserQuery", "getLastMessages"): as_me(_user_last_messages)}
