"""mod_http_upload's `httpUpload` category of the GraphQL API (SDL next to this file,
collected through `ModHttpUpload.graphql`): 6.4's getUrl, an upload slot (XEP-0363) made on a
user's behalf without an XMPP client."""

from __future__ import annotations

from typing import Any

from suricate.admin.context import Context, enabled_module, fail, me, served_domain
from suricate.modules.mod_http_upload import ModHttpUpload


async def get_url(ctx: Context, a: dict[str, Any], owner: str = "") -> dict[str, Any]:
    domain = served_domain(ctx, a["domain"])
    module = enabled_module(ctx, ModHttpUpload)
    if int(a["timeout"]) <= 0:
        raise fail("timeout: must be a positive number of seconds", "bad_request")
    try:
        slot = module.slot_for(domain, str(a["filename"]), int(a["size"]),
                               a.get("contentType") or None, int(a["timeout"]), owner)
    except ValueError as err:
        raise fail(str(err), "bad_request") from None
    return {"putUrl": slot.put, "getUrl": slot.get,
            "headers": [{"name": n, "value": v} for n, v in slot.put_headers]}


async def get_url_as_me(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    # The user's own slot: the file goes with the account (disk backend).
    return await get_url(ctx, {**a, "domain": me(ctx).domain}, str(me(ctx).bare))


ADMIN_RESOLVERS = {("HttpUploadAdminMutation", "getUrl"): get_url}
USER_RESOLVERS = {("HttpUploadUserMutation", "getUrl"): get_url_as_me}
