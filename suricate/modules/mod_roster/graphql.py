"""mod_roster's `roster` category of the GraphQL API (SDL next to this file, collected through
`ModRoster.graphql`). Read and edit contact lists through mod_roster, so that its locking,
caches and roster pushes apply as for a client's own roster set. Without mod_roster nobody has
a roster: the category answers ``module_not_loaded``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from suricate.admin.context import Context, as_me, enabled_module, fail, parse_jid, served_domain
from suricate.jid import JID
from suricate.modules.mod_roster import ModRoster
from suricate.modules.mod_roster.store import RosterItem
from suricate.protocol.errors import StanzaError


def contact_out(item: RosterItem) -> dict[str, Any]:
    return {"jid": item.jid, "name": item.name, "groups": list(item.groups),
            "subscription": item.subscription, "ask": item.ask}


def _user(ctx: Context, value: Any) -> JID:
    user = parse_jid(value, bare=True)
    served_domain(ctx, user.domain)
    return user


async def list_contacts(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    user = _user(ctx, a["user"])
    module = enabled_module(ctx, ModRoster)
    return [contact_out(i) for i in await module.get_roster(user)]


async def get_contact(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    user = _user(ctx, a["user"])
    contact = parse_jid(a["contact"], "contact").bare
    item = await enabled_module(ctx, ModRoster).get_roster_item(user, contact)
    if item is None:
        raise fail(f"{contact} is not in the roster of {user}", "contact_not_found")
    return contact_out(item)


async def add_contact(ctx: Context, a: dict[str, Any]) -> str:
    user = _user(ctx, a["user"])
    contact = parse_jid(a["contact"], "contact").bare
    groups = tuple(dict.fromkeys(a.get("groups") or ()))
    module = enabled_module(ctx, ModRoster)
    async with module.locked(user):
        # The stored item (not the shown one, get_roster_item): only name and groups change.
        old = await module.store.get_roster_item(user.domain, user.local or "", str(contact))
        new = replace(old or RosterItem(jid=str(contact)), name=a.get("name"), groups=groups)
        await module._save(user, contact, old, new, force_push=True)
    return "Contact added successfully"


async def delete_contact(ctx: Context, a: dict[str, Any]) -> str:
    user = _user(ctx, a["user"])
    contact = parse_jid(a["contact"], "contact").bare
    module = enabled_module(ctx, ModRoster)
    try:
        # As a client's remove (RFC 6121 §2.5.2): subscriptions end in both directions.
        await module._remove(user, contact)
    except StanzaError:
        raise fail(f"{contact} is not in the roster of {user}", "contact_not_found") from None
    return "Contact deleted successfully"


ADMIN_RESOLVERS = {
    ("RosterAdminQuery", "listContacts"): list_contacts,
    ("RosterAdminQuery", "getContact"): get_contact,
    ("RosterAdminMutation", "addContact"): add_contact,
    ("RosterAdminMutation", "deleteContact"): delete_contact,
}
USER_RESOLVERS = {
    ("RosterUserQuery", "listContacts"): as_me(list_contacts),
    ("RosterUserQuery", "getContact"): as_me(get_contact),
    ("RosterUserMutation", "addContact"): as_me(add_contact),
    ("RosterUserMutation", "deleteContact"): as_me(delete_contact),
}
