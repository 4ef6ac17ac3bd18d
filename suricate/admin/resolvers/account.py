"""account: list, count, check, register, remove, ban, change password."""

from __future__ import annotations

import secrets
from typing import Any

from suricate.admin.context import Context, fail, parse_jid, served_domain
from suricate.admin.resolvers.session import kick_everywhere
from suricate.auth.service import TooManyUsers
from suricate.jid import JID, InvalidJID


async def list_users(ctx: Context, a: dict[str, Any]) -> list[str]:
    domain = served_domain(ctx, a["domain"])
    return [f"{u}@{domain}" for u in await ctx.server.storage.list_users(domain)]


async def count_users(ctx: Context, a: dict[str, Any]) -> int:
    return await ctx.server.storage.count_users(served_domain(ctx, a["domain"]))


async def check_password(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    user = parse_jid(a["user"], bare=True)
    if not await ctx.server.auth.user_exists(user):
        return {"correct": False, "message": f"User {user} does not exist"}
    correct = await ctx.server.auth.check_password(user, a["password"])
    return {"correct": correct, "message": "Password is correct" if correct
            else "Password is not correct"}


async def check_user(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    user = parse_jid(a["user"], bare=True)
    exists = await ctx.server.auth.user_exists(user)
    return {"exist": exists, "message": f"User {user} {'exists' if exists else 'does not exist'}"}


async def register_user(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    domain = served_domain(ctx, a["domain"])
    if not a["password"]:
        raise fail("the password must not be empty", "bad_password")
    username = a.get("username") or secrets.token_hex(8)
    try:
        jid = JID(username, domain, None)
    except (InvalidJID, ValueError) as exc:
        raise fail(f"invalid username {username!r}: {exc}", "bad_jid") from None
    try:
        created = await ctx.server.auth.register(jid, a["password"])
    except TooManyUsers:
        raise fail(f"domain {domain} has reached auth.max_users_per_domain",
                   "too_many_users") from None
    if not created:
        raise fail(f"User {jid} already exists", "user_exists")
    return {"jid": str(jid), "message": f"User {jid} successfully registered"}


async def remove_user(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    user = parse_jid(a["user"], bare=True)
    served_domain(ctx, user.domain)
    await kick_everywhere(ctx, user, "account removed")
    if not await ctx.server.auth.remove(user):
        raise fail(f"User {user} does not exist", "user_does_not_exist")
    return {"jid": str(user), "message": f"User {user} successfully unregistered"}


async def ban_user(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    user = parse_jid(a["user"], bare=True)
    served_domain(ctx, user.domain)
    # A random password nobody knows: the account stays (its data too), logins stop.
    if not await ctx.server.auth.set_password(user, secrets.token_urlsafe(32)):
        raise fail(f"User {user} does not exist", "user_does_not_exist")
    kicked = await kick_everywhere(ctx, user, a.get("reason") or "banned")
    return {"jid": str(user), "message": f"User {user} banned ({kicked} sessions ended)"}


async def change_user_password(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    user = parse_jid(a["user"], bare=True)
    served_domain(ctx, user.domain)
    if not a["newPassword"]:
        raise fail("the password must not be empty", "bad_password")
    if not await ctx.server.auth.set_password(user, a["newPassword"]):
        raise fail(f"User {user} does not exist", "user_does_not_exist")
    return {"jid": str(user), "message": "Password changed"}


RESOLVERS = {
    ("AccountAdminQuery", "listUsers"): list_users,
    ("AccountAdminQuery", "countUsers"): count_users,
    ("AccountAdminQuery", "checkPassword"): check_password,
    ("AccountAdminQuery", "checkUser"): check_user,
    ("AccountAdminMutation", "registerUser"): register_user,
    ("AccountAdminMutation", "removeUser"): remove_user,
    ("AccountAdminMutation", "banUser"): ban_user,
    ("AccountAdminMutation", "changeUserPassword"): change_user_password,
}
