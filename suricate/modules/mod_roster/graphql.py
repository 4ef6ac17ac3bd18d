"""mod_roster's `roster` category of the GraphQL API (SDL next to this file, collected through
`ModRoster.graphql`). Read and edit contact lists through mod_roster, so that its locking,
caches and roster pushes apply as for a client's own roster set. Without mod_roster nobody has
a roster: the category answers ``module_not_loaded``."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

from graphql import GraphQLError

from suricate.admin.context import Context, as_me, enabled_module, fail, parse_jid, served_domain
from suricate.core import hooks as H
from suricate.jid import JID
from suricate.modules.mod_roster import ModRoster
from suricate.modules.mod_roster.store import RosterItem
from suricate.protocol.errors import StanzaError
from suricate.xml import ns
from suricate.xml.element import Element


def contact_out(item: RosterItem) -> dict[str, Any]:
    return {"jid": item.jid, "name": item.name, "groups": list(item.groups),
            "subscription": item.subscription, "ask": item.ask}


async def _user(ctx: Context, value: Any) -> JID:
    """The roster's owner: an existing account. Without the check an added contact would be
    stored for nobody, and handed to whoever registers that name later."""
    return await _existing(ctx, value)


async def list_contacts(ctx: Context, a: dict[str, Any]) -> list[dict[str, Any]]:
    user = await _user(ctx, a["user"])
    module = enabled_module(ctx, ModRoster)
    return [contact_out(i) for i in await module.get_roster(user)]


async def get_contact(ctx: Context, a: dict[str, Any]) -> dict[str, Any]:
    user = await _user(ctx, a["user"])
    contact = parse_jid(a["contact"], "contact").bare
    item = await enabled_module(ctx, ModRoster).get_roster_item(user, contact)
    if item is None:
        raise fail(f"{contact} is not in the roster of {user}", "contact_not_found")
    return contact_out(item)


async def add_contact(ctx: Context, a: dict[str, Any]) -> str:
    user = await _user(ctx, a["user"])
    contact = parse_jid(a["contact"], "contact").bare
    groups = tuple(dict.fromkeys(a.get("groups") or ()))
    module = enabled_module(ctx, ModRoster)
    async with module.locked(user):
        # The stored item (not the shown one, get_roster_item): only name and groups change.
        old = await module.store.get_roster_item(user.domain, user.local or "", str(contact))
        new = replace(old or RosterItem(jid=str(contact)), name=a.get("name"), groups=groups,
                      hidden=False)
        await module._save(user, contact, old, new, force_push=True)
    return "Contact added successfully"


async def delete_contact(ctx: Context, a: dict[str, Any]) -> str:
    user = await _user(ctx, a["user"])
    contact = parse_jid(a["contact"], "contact").bare
    module = enabled_module(ctx, ModRoster)
    try:
        # As a client's remove (RFC 6121 §2.5.2): subscriptions end in both directions.
        await module._remove(user, contact)
    except StanzaError:
        raise fail(f"{contact} is not in the roster of {user}", "contact_not_found") from None
    return "Contact deleted successfully"


async def _existing(ctx: Context, value: Any, what: str = "user") -> JID:
    user = parse_jid(value, what, bare=True)
    served_domain(ctx, user.domain)
    if not await ctx.server.user_exists(user):
        raise fail(f"{what}: {user} does not exist", "user_does_not_exist")
    return user


async def subscription(ctx: Context, a: dict[str, Any]) -> str:
    """6.4's ``subscription``: the user sends subscribe (INVITE) or subscribed (ACCEPT) to the
    contact, as mod_presence handles one a client sends (RFC 6121 §3.1.2, §3.1.5): the roster
    owner updates the user's item, then the stanza goes to the contact. Unlike a client's,
    the user's current presence is not sent to a new subscriber (the user may be offline)."""
    user = await _existing(ctx, a["user"])
    contact = parse_jid(a["contact"], "contact").bare
    enabled_module(ctx, ModRoster)
    if contact == user:
        raise fail("contact: an account is not its own contact", "bad_jid")
    type_ = {"INVITE": "subscribe", "ACCEPT": "subscribed", "DECLINE": "unsubscribed",
             "CANCEL": "unsubscribe"}[str(a["action"])]
    stanza = Element("presence", ns.CLIENT, {"type": type_, "from": str(user),
                                              "to": str(contact)})
    outcome = await ctx.server.hooks.fold_async(
        H.ROSTER_OUT_SUBSCRIPTION, None, user, contact, type_, stanza)
    if outcome is None or outcome.forward:
        ctx.server.router.route(user, contact, stanza)
    return "Subscription stanza with type " + type_ + " sent successfully"


async def set_mutual_subscription(ctx: Context, a: dict[str, Any]) -> str:
    """6.4's ``setMutualSubscription``: CONNECT writes both items as subscribed both ways
    (pushed to connected clients); DISCONNECT removes both, as each user's own remove does
    (RFC 6121 §2.5.2)."""
    user_a = await _existing(ctx, a["userA"], "userA")
    user_b = await _existing(ctx, a["userB"], "userB")
    if user_a == user_b:
        raise fail("userB: an account is not its own contact", "bad_jid")
    module = enabled_module(ctx, ModRoster)
    pairs = ((user_a, user_b), (user_b, user_a))
    if str(a["action"]) == "CONNECT":
        for user, contact in pairs:
            async with module.locked(user):
                old = await module.store.get_roster_item(user.domain, user.local or "",
                                                         str(contact))
                new = replace(old or RosterItem(jid=str(contact)), subscription="both",
                              ask="none", approved=False, ask_message=None, hidden=False)
                await module._save(user, contact, old, new, force_push=True)
        return "Mutual subscription added successfully"
    for user, contact in pairs:
        # Not (or no longer) in this roster: nothing to remove.
        with contextlib.suppress(StanzaError):
            await module._remove(user, contact)
    return "Mutual subscription removed successfully"


async def _each(items: list[Any], one: Any) -> list[str | None]:
    """6.4's batch operations: one answer per item, the message of the single operation or
    the error it gave (the other items go on)."""
    answers: list[str | None] = []
    for item in items:
        try:
            answers.append(await one(item))
        except GraphQLError as err:
            answers.append(err.message)
    return answers


async def add_contacts(ctx: Context, a: dict[str, Any]) -> list[str | None]:
    async def one(c: dict[str, Any]) -> str:
        await add_contact(ctx, {"user": a["user"], "contact": c["jid"], "name": c.get("name"),
                                "groups": c.get("groups")})
        return f"Contact {c['jid']} added successfully"
    await _user(ctx, a["user"])
    enabled_module(ctx, ModRoster)
    return await _each(a["contacts"], one)


async def delete_contacts(ctx: Context, a: dict[str, Any]) -> list[str | None]:
    async def one(contact: Any) -> str:
        await delete_contact(ctx, {"user": a["user"], "contact": contact})
        return f"Contact {contact} deleted successfully"
    await _user(ctx, a["user"])
    enabled_module(ctx, ModRoster)
    return await _each(a["contacts"], one)


async def _connect(ctx: Context, a: dict[str, Any], b: dict[str, Any]) -> str:
    """Both accounts subscribed both ways, each item named and grouped as the other's
    ContactInput says (6.4's subscribeToAll)."""
    user_a = await _existing(ctx, a["jid"], "jid")
    user_b = await _existing(ctx, b["jid"], "jid")
    if user_a == user_b:
        raise fail(f"{user_a} is not its own contact", "bad_jid")
    module = enabled_module(ctx, ModRoster)
    for user, contact, input_ in ((user_a, user_b, b), (user_b, user_a, a)):
        async with module.locked(user):
            old = await module.store.get_roster_item(user.domain, user.local or "", str(contact))
            new = replace(old or RosterItem(jid=str(contact)), name=input_.get("name"),
                          groups=tuple(dict.fromkeys(input_.get("groups") or ())),
                          subscription="both", ask="none", approved=False, ask_message=None,
                          hidden=False)
            await module._save(user, contact, old, new, force_push=True)
    return f"Subscription between {user_a} and {user_b} set successfully"


async def subscribe_to_all(ctx: Context, a: dict[str, Any]) -> list[str | None]:
    enabled_module(ctx, ModRoster)
    return await _each(a["contacts"], lambda c: _connect(ctx, a["user"], c))


async def subscribe_all_to_all(ctx: Context, a: dict[str, Any]) -> list[str | None]:
    enabled_module(ctx, ModRoster)
    contacts = a["contacts"]
    pairs = [(x, y) for i, x in enumerate(contacts) for y in contacts[i + 1:]]
    return await _each(pairs, lambda pair: _connect(ctx, *pair))


ADMIN_RESOLVERS = {
    ("RosterAdminQuery", "listContacts"): list_contacts,
    ("RosterAdminQuery", "getContact"): get_contact,
    ("RosterAdminMutation", "addContact"): add_contact,
    ("RosterAdminMutation", "deleteContact"): delete_contact,
    ("RosterAdminMutation", "subscription"): subscription,
    ("RosterAdminMutation", "setMutualSubscription"): set_mutual_subscription,
    ("RosterAdminMutation", "addContacts"): add_contacts,
    ("RosterAdminMutation", "deleteContacts"): delete_contacts,
    ("RosterAdminMutation", "subscribeToAll"): subscribe_to_all,
    ("RosterAdminMutation", "subscribeAllToAll"): subscribe_all_to_all,
}
USER_RESOLVERS = {
    ("RosterUserQuery", "listContacts"): as_me(list_contacts),
    ("RosterUserQuery", "getContact"): as_me(get_contact),
    ("RosterUserMutation", "addContact"): as_me(add_contact),
    ("RosterUserMutation", "deleteContact"): as_me(delete_contact),
    ("RosterUserMutation", "subscription"): as_me(subscription),
    ("RosterUserMutation", "addContacts"): as_me(add_contacts),
    ("RosterUserMutation", "deleteContacts"): as_me(delete_contacts),
}
