"""The user endpoint: the same operations, on the logged-in account only."""

from __future__ import annotations

from typing import Any

from suricate.admin.context import Context, fail, parse_jid
from suricate.admin.context import me as _me
from suricate.admin.resolvers import session, stanza
from suricate.jid import JID


async def check_auth(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    return {"username": str(_me(ctx)), "authStatus": "AUTHORIZED"}


async def unregister(ctx: Context, a: dict[str, Any]) -> str:
    # The removal ends the account's sessions on every node (Server.account_removed).
    await ctx.server.auth.remove(_me(ctx))
    return "Your account has been removed"


async def change_password(ctx: Context, a: dict[str, Any]) -> str:
    if not a["newPassword"]:
        raise fail("the password must not be empty", "bad_password")
    await ctx.server.auth.set_password(_me(ctx), a["newPassword"])
    return "Password changed"


# The account's sessions on every node of a cluster (sm_backend = "redis"), as the admin
# endpoint's listUserSessions.
async def list_resources(ctx: Context, a: dict[str, Any]) -> list[str]:
    return [JID.parse(i["user"]).resource or ""
            for i in await session.user_infos(ctx, str(_me(ctx)))]


async def count_resources(ctx: Context, a: dict[str, Any]) -> int:
    return len(await session.user_infos(ctx, str(_me(ctx))))


async def list_sessions(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    return await session.user_infos(ctx, str(_me(ctx)))


def _mine(ctx: Context, value: Any) -> JID:
    """The sender a user names (``from``), which must be the caller's account (6.4's code and
    message, so a script written for 6.4 recognises the refusal)."""
    me = _me(ctx)
    frm = parse_jid(value, "from") if value else me
    if frm.bare != me:
        raise fail("Sender's JID is different from the user's JID", "invalid_sender")
    return frm


async def send_message(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    frm = _mine(ctx, a.get("from"))
    return await stanza.send_message(ctx, {"from": str(frm), "to": a["to"], "body": a["body"]})


async def send_message_headline(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    return await stanza.send_message_headline(ctx, {**a, "from": str(_mine(ctx, a.get("from")))})


async def send_stanza(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    """6.4: any stanza, from the caller's account (its bare JID when `from` is absent)."""
    element = stanza.parse_stanza(a["stanza"])
    element.attrs["from"] = str(_mine(ctx, element.attrs.get("from")))
    if not element.attrs.get("to"):
        raise fail("stanza: 'to' is required", "bad_stanza")
    return stanza.route_stanza(ctx, element)



async def subscribe_for_messages(ctx: Context, a: dict[str, Any]) -> dict[str, Any] | None:
    """The caller's own messages (6.4: an authenticated account, not checked again)."""
    return await stanza.subscribe(ctx, _me(ctx), check_user=False)


RESOLVERS = {
    ("UserQuery", "checkAuth"): check_auth,
    ("AccountUserMutation", "unregister"): unregister,
    ("AccountUserMutation", "changePassword"): change_password,
    ("SessionUserQuery", "listResources"): list_resources,
    ("SessionUserQuery", "countResources"): count_resources,
    ("SessionUserQuery", "listSessions"): list_sessions,
    ("StanzaUserMutation", "sendMessage"): send_message,
    ("StanzaUserMutation", "sendMessageHeadLine"): send_message_headline,
    ("StanzaUserMutation", "sendStanza"): send_stanza,
    ("StanzaUserSubscription", "subscribeForMessages"): subscribe_for_messages,
}
