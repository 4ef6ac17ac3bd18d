"""vcard: an account's vCard (XEP-0054) as XML."""

from __future__ import annotations

from typing import Any

from suricate.admin.context import Context, enabled_module, fail, parse_jid, served_domain
from suricate.modules.mod_vcard import ModVcard
from suricate.xml import ns
from suricate.xml.parser import XMLStreamError, parse_fragment


async def get_vcard(ctx: Context, a: dict[str, Any]) -> str:
    user = parse_jid(a["user"], bare=True)
    served_domain(ctx, user.domain)
    xml = await enabled_module(ctx, ModVcard).store.get_vcard(user.domain, user.local or "")
    if xml is None:
        raise fail(f"{user} has no vCard", "vcard_not_found")
    return xml


async def set_vcard(ctx: Context, a: dict[str, Any]) -> str:
    user = parse_jid(a["user"], bare=True)
    served_domain(ctx, user.domain)
    try:
        elements = parse_fragment(a["vcard"])
    except XMLStreamError as err:
        raise fail(f"vcard: not well-formed XML ({err})", "bad_vcard") from None
    if len(elements) != 1 or elements[0].name != "vCard" or elements[0].xmlns != ns.VCARD:
        raise fail("vcard: give one <vCard xmlns='vcard-temp'> element", "bad_vcard")
    await enabled_module(ctx, ModVcard).store.set_vcard(user.domain, user.local or "",
                                       elements[0].serialize())
    return "vCard stored successfully"


RESOLVERS = {
    ("VcardAdminQuery", "getVcard"): get_vcard,
    ("VcardAdminMutation", "setVcard"): set_vcard,
}
