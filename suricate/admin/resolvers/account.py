"""account: list, count, check, register, remove, ban, change password."""

from __future__ import annotations

import csv
import hashlib
import hmac
import secrets
from pathlib import Path
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


async def check_password_hash(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    """6.4's checkPasswordHash: the md5 or sha (SHA-1) hex digest of the password, compared
    with the stored password: only accounts kept in plain text (``password.format = "plain"``)
    have one to hash."""
    user = parse_jid(a["user"], bare=True)
    method = str(a["hashMethod"]).lower()
    if method not in ("md5", "sha"):
        raise fail(f"hashMethod: {method!r} is not md5 or sha", "not_allowed")
    record = await ctx.server.storage.get_user(user.domain, user.local or "")
    if record is None:
        return {"correct": False, "message": f"User {user} does not exist"}
    if record.password is None:
        raise fail("the password is not stored in plain text (password.format is not "
                   "\"plain\"): it cannot be hashed", "not_allowed")
    digest = (hashlib.md5 if method == "md5" else hashlib.sha1)(record.password.encode())
    correct = hmac.compare_digest(digest.hexdigest(), str(a["passwordHash"]).lower())
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
    # The removal ends the account's sessions on every node (Server.account_removed).
    if not await ctx.server.auth.remove(user):
        raise fail(f"User {user} does not exist", "user_does_not_exist")
    return {"jid": str(user), "message": f"User {user} successfully unregistered"}


async def ban(ctx: Context, user: JID, reason: str) -> int:
    """End ``user``'s sessions and lock it out; how many sessions ended. Shared by account
    banUser and spam banUser (mod_blocking)."""
    served_domain(ctx, user.domain)
    if not await ctx.server.auth.user_exists(user):
        raise fail(f"User {user} does not exist", "user_does_not_exist")
    # The sessions end first, with the ban's reason: the password change below would end
    # them too, as any change does, but as 'reset' and uncounted.
    kicked = await kick_everywhere(ctx, user, reason)
    # A random password nobody knows: the account stays (its data too), logins stop; a
    # session opened meanwhile with the old password ends with the change.
    if not await ctx.server.auth.set_password(user, secrets.token_urlsafe(32)):
        raise fail(f"User {user} does not exist", "user_does_not_exist")
    return kicked


async def ban_user(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    user = parse_jid(a["user"], bare=True)
    kicked = await ban(ctx, user, a.get("reason") or "banned")
    return {"jid": str(user), "message": f"User {user} banned ({kicked} sessions ended)"}


async def change_user_password(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    user = parse_jid(a["user"], bare=True)
    served_domain(ctx, user.domain)
    if not a["newPassword"]:
        raise fail("the password must not be empty", "bad_password")
    if not await ctx.server.auth.set_password(user, a["newPassword"]):
        raise fail(f"User {user} does not exist", "user_does_not_exist")
    return {"jid": str(user), "message": "Password changed"}


async def import_users(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    """6.4's importUsers: a CSV file on the server's machine, one ``username,domain,password``
    record a line, each registered as registerUser would. The answer sorts the records as 6.4
    does: created, existing, notAllowed (domain not served, or a limit refused it),
    invalidJID, emptyPassword, invalidRecord (not three fields)."""
    path = Path(str(a["filename"]))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise fail(f"File not found: {path}", "file_not_found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise fail(f"Cannot read {path}: {err}", "file_not_found") from None
    out: dict[str, Any] = {"status": "Completed", "created": [], "existing": [],
                           "notAllowed": [], "invalidJID": [], "emptyPassword": [],
                           "invalidRecord": []}
    for row in csv.reader(text.splitlines()):
        if not row:
            continue
        if len(row) != 3:
            out["invalidRecord"].append(",".join(row))
            continue
        username, domain, password = row
        try:
            jid = JID(username, domain.strip().lower(), None)
        except (InvalidJID, ValueError):
            out["invalidJID"].append(f"{username}@{domain}")
            continue
        if not password:
            out["emptyPassword"].append(str(jid))
            continue
        if not ctx.server.is_local_domain(jid.domain):
            out["notAllowed"].append(str(jid))
            continue
        try:
            created = await ctx.server.auth.register(jid, password)
        except TooManyUsers:
            out["notAllowed"].append(str(jid))
            continue
        out["created" if created else "existing"].append(str(jid))
    return out


RESOLVERS = {
    ("AccountAdminQuery", "listUsers"): list_users,
    ("AccountAdminQuery", "countUsers"): count_users,
    ("AccountAdminQuery", "checkPassword"): check_password,
    ("AccountAdminQuery", "checkUser"): check_user,
    ("AccountAdminQuery", "checkPasswordHash"): check_password_hash,
    ("AccountAdminMutation", "registerUser"): register_user,
    ("AccountAdminMutation", "removeUser"): remove_user,
    ("AccountAdminMutation", "banUser"): ban_user,
    ("AccountAdminMutation", "changeUserPassword"): change_user_password,
    ("AccountAdminMutation", "importUsers"): import_users,
}
