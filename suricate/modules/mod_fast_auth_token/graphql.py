"""mod_fast_auth_token's `token` category of the GraphQL API (SDL next to this file,
collected through `ModFastAuthToken.graphql`): list and revoke FAST tokens (XEP-0484).

6.4's token category is mod_auth_token's (X-OAUTH access and refresh tokens): requestToken
issues a pair through mod_auth_token, and revokeToken revokes the tokens of whichever of the
two modules are enabled (``module_not_loaded`` when neither is)."""

from __future__ import annotations

import base64
from typing import Any

from suricate.admin.context import Context, as_me, enabled_module, fail, parse_jid, served_domain
from suricate.modules.mod_auth_token import ModAuthToken, TokenUnavailable
from suricate.modules.mod_fast_auth_token import ModFastAuthToken
from suricate.modules.mod_fast_auth_token.store import FastTokenStore


def _store(ctx: Context) -> FastTokenStore:
    # The category is mod_fast_auth_token's: without the module there is nothing to read or write.
    return enabled_module(ctx, ModFastAuthToken).store


async def list_tokens(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    user = parse_jid(a["user"], bare=True)
    served_domain(ctx, user.domain)
    tokens = await _store(ctx).list_fast_tokens(user.domain, user.local or "")
    # Never the secret: which client holds one, for what mechanism, until when.
    return [{"userAgentId": agent, "mechanism": t.mechanism, "expiresAt": int(t.expire)}
            for agent, t in tokens]


async def revoke_token(ctx: Context, a: dict[str, Any]) -> str:
    user = parse_jid(a["user"], bare=True)
    served_domain(ctx, user.domain)
    auth_token = ctx.server.modules.get(ModAuthToken.name)
    if not isinstance(auth_token, ModAuthToken):
        count = await _store(ctx).revoke_fast_tokens(user.domain, user.local or "")
        return f"Revoked the tokens of {count} clients"
    revoked = await auth_token.revoke_token(user)
    fast = ctx.server.modules.get(ModFastAuthToken.name)
    if isinstance(fast, ModFastAuthToken):
        count = await fast.store.revoke_fast_tokens(user.domain, user.local or "")
        return f"Revoked the refresh tokens and the FAST tokens of {count} clients"
    if not revoked:
        raise fail(f"{user} has no tokens to revoke", "not_found")
    return "Revoked"


async def request_token(ctx: Context, a: dict[str, Any]) -> dict[str, str]:
    """6.4's requestToken: an access and a refresh token (mod_auth_token, X-OAUTH), base64
    as the token IQ hands them out."""
    user = parse_jid(a["user"], bare=True)
    served_domain(ctx, user.domain)
    module = enabled_module(ctx, ModAuthToken)
    if not await ctx.server.user_exists(user):
        raise fail(f"{user} does not exist", "user_does_not_exist")
    try:
        access, refresh = await module.tokens_for(user)
    except TokenUnavailable:
        raise fail("mod_keystore has no token_secret key", "internal_server_error") from None
    return {"access": base64.b64encode(access).decode(),
            "refresh": base64.b64encode(refresh).decode()}


ADMIN_RESOLVERS = {
    ("TokenAdminQuery", "listTokens"): list_tokens,
    ("TokenAdminMutation", "revokeToken"): revoke_token,
    ("TokenAdminMutation", "requestToken"): request_token,
}
USER_RESOLVERS = {
    ("TokenUserQuery", "listTokens"): as_me(list_tokens),
    ("TokenUserMutation", "revokeToken"): as_me(revoke_token),
    ("TokenUserMutation", "requestToken"): as_me(request_token),
}
