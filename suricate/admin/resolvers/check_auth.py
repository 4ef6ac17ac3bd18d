"""checkAuth: who is calling (both admin endpoints)."""

from __future__ import annotations

from typing import Any

from suricate.admin.context import Context


async def check_auth(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    caller = ctx.caller
    kind = "ADMIN" if caller.kind == "admin" else "DOMAIN_ADMIN"
    return {"domain": caller.domain, "authType": kind, "authStatus": "AUTHORIZED"}


RESOLVERS = {("AdminQuery", "checkAuth"): check_auth}
