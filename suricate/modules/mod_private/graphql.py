"""mod_private's `private` category of the GraphQL API (SDL next to this file, collected through
`ModPrivate.graphql`). XEP-0049 private XML storage, one element per namespace."""

from __future__ import annotations

from typing import Any

from suricate.admin.context import Context, as_me, enabled_module, existing_user, fail
from suricate.modules.mod_private import ModPrivate
from suricate.xml.element import Element
from suricate.xml.parser import XMLStreamError, parse_fragment


def _store(ctx: Context) -> Any:
    # The category is mod_private's: without the module there is nothing to read or write.
    return enabled_module(ctx, ModPrivate).store


async def get_private(ctx: Context, a: dict[str, Any]) -> str:
    user = await existing_user(ctx, a["user"])
    xml = await _store(ctx).get_private(user.domain, user.local or "", a["nameSpace"])
    # XEP-0049 §3.2: nothing stored reads as the empty element that was asked for.
    return xml if xml is not None else Element(a["element"], a["nameSpace"]).serialize()


async def set_private(ctx: Context, a: dict[str, Any]) -> str:
    user = await existing_user(ctx, a["user"])
    try:
        elements = parse_fragment(a["elementString"])
    except XMLStreamError as err:
        raise fail(f"elementString: not well-formed XML ({err})", "bad_element") from None
    if len(elements) != 1 or not elements[0].xmlns:
        raise fail("elementString: give one element with its namespace", "bad_element")
    element = elements[0]
    await _store(ctx).set_private(user.domain, user.local or "", element.xmlns,
                                  element.serialize())
    return "Private data stored successfully"


ADMIN_RESOLVERS = {
    ("PrivateAdminQuery", "getPrivate"): get_private,
    ("PrivateAdminMutation", "setPrivate"): set_private,
}
USER_RESOLVERS = {
    ("PrivateUserQuery", "getPrivate"): as_me(get_private),
    ("PrivateUserMutation", "setPrivate"): as_me(set_private),
}
