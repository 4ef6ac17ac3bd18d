"""mod_vcard's `vcard` category of the GraphQL API (SDL next to this file, collected through
`ModVcard.graphql`). An account's vCard (XEP-0054) as XML."""

from __future__ import annotations

from typing import Any

from suricate.admin.context import (
    Context,
    as_me,
    enabled_module,
    existing_user,
    fail,
    parse_jid,
    served_domain,
    user_or_me,
)
from suricate.auth.methods import AuthUnavailable
from suricate.modules.mod_vcard import ModVcard
from suricate.modules.mod_vcard.store import VcardStore
from suricate.xml import ns
from suricate.xml.parser import XMLStreamError, parse_fragment


def _store(ctx: Context) -> VcardStore:
    # The category is mod_vcard's: without the module there is nothing to read or write.
    return enabled_module(ctx, ModVcard).store


async def get_vcard(ctx: Context, a: dict[str, Any]) -> str:
    user = parse_jid(a["user"], bare=True)
    served_domain(ctx, user.domain)
    module = enabled_module(ctx, ModVcard)
    if module.directory is not None:
        # The ldap backend: the vCard is the directory's entry.
        try:
            vcard = await module.get_vcard(user)
        except AuthUnavailable:
            raise fail("the LDAP directory cannot be reached now", "internal_error") from None
        if vcard is None:
            raise fail(f"{user} has no vCard", "vcard_not_found")
        return vcard.serialize()
    xml = await _store(ctx).get_vcard(user.domain, user.local or "")
    if xml is None:
        raise fail(f"{user} has no vCard", "vcard_not_found")
    return xml


async def set_vcard(ctx: Context, a: dict[str, Any]) -> str:
    user = await existing_user(ctx, a["user"])
    try:
        elements = parse_fragment(a["vcard"])
    except XMLStreamError as err:
        raise fail(f"vcard: not well-formed XML ({err})", "bad_vcard") from None
    if len(elements) != 1 or elements[0].name != "vCard" or elements[0].xmlns != ns.VCARD:
        raise fail("vcard: give one <vCard xmlns='vcard-temp'> element", "bad_vcard")
    module = enabled_module(ctx, ModVcard)
    if module.directory is not None:
        raise fail("vCards are read from the LDAP directory (backend ldap, read-only)",
                   "read_only")
    # Through the module, not the store: the avatar hash online sessions announce
    # (XEP-0153) and the PEP avatar (XEP-0398) follow the new vCard.
    await module.set_vcard(user, elements[0])
    return "vCard stored successfully"


ADMIN_RESOLVERS = {
    ("VcardAdminQuery", "getVcard"): get_vcard,
    ("VcardAdminMutation", "setVcard"): set_vcard,
}
USER_RESOLVERS = {
    ("VcardUserQuery", "getVcard"): user_or_me(get_vcard),
    ("VcardUserMutation", "setVcard"): as_me(set_vcard),
}
