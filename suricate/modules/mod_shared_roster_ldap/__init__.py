"""mod_shared_roster_ldap: roster entries from LDAP groups (MongooseIM 6.4's module of that
name; docs/shared_roster_ldap.md).

A user's roster holds, besides the contacts it stored, the members of the directory groups it
is shown (``rfilter``), each in the roster group named by its group's description, with
subscription "both": members of one group see each other's presence without ever subscribing.
The directory is asked through ``directory.Directory``; its answers are cached.

How it plugs into mod_roster (the hooks it handles, none of them on the stanza path):

- ``roster_items`` (priority 70, 6.4's ``roster_get``): the roster a client gets and a new
  session caches for presence broadcast and probes (mod_presence reads that cache) is the
  stored one plus the shared contacts; a contact that is in both keeps its stored name and
  groups, gains the shared groups, and has subscription "both";
- ``roster_get_jid_info`` (70): the same for one contact, which mod_roster uses for what a
  roster set or removal pushes and caches, and the other modules (privacy lists, MAM
  preferences, PEP access, last activity, probes of an offline user) read through
  ``ModRoster.get_roster_item``;
- ``roster_in_subscription`` / ``roster_out_subscription`` (30, before mod_roster's 50): a
  subscription stanza between two members of the user's shared groups changes nothing and
  goes nowhere (6.4 stops both hooks the same way): their subscription is the directory's.

A roster removal of a shared contact deletes only what the user stored about it: the answer
is a result and the push shows the shared item again (6.4's ``roster_process_item`` turns the
removal into the shared item). A directory that cannot be reached leaves the rosters without
their shared contacts, logged once until it answers again; nothing fails for it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from suricate.auth.ldap import LdapPool
from suricate.auth.methods import AuthUnavailable
from suricate.config.loader import References
from suricate.config.schema import ldap_filter_problem
from suricate.config.spec import (
    OMIT,
    REQUIRED,
    Bool,
    Context,
    Int,
    OneOf,
    Option,
    Regexp,
    Section,
    Str,
    join,
)
from suricate.core import hooks as H
from suricate.core.hooks import Stop
from suricate.core.module import Module
from suricate.jid import JID, InvalidJID
from suricate.modules.mod_roster.store import RosterItem
from suricate.modules.mod_shared_roster_ldap.directory import Directory, ExpiringCache, Group
from suricate.protocol import subscription as sub
from suricate.storage.base import StorageError

if TYPE_CHECKING:
    from suricate.core.server import Server
    from suricate.xml.element import Element

log = logging.getLogger("suricate.mod_shared_roster_ldap")

#: What a subscription stanza between shared contacts does: nothing, and it is not passed on.
UNCHANGED = sub.Transition(sub.BOTH, sub.BOTH, False, False, forward=False)


def _format_problem(value: Any) -> str | None:
    # 6.4 extracts the username around the one %u of the format.
    return None if str(value).count("%u") == 1 else 'must contain "%u" exactly once'


def _regexp_problem(value: Any) -> str | None:
    # The username is the first group of the expression.
    if value and re.compile(str(value)).groups < 1:
        return "needs a group, (...), that captures the username"
    return None


def _post(out: dict[str, Any], raw: Mapping[str, Any], path: str, ctx: Context) -> None:
    out.setdefault("groupdesc", out["groupattr"])  # 6.4: groupdesc defaults to groupattr
    if not out["rfilter"]:
        ctx.warn(join(path, "rfilter"), "empty: no user is shown a shared roster group")


def _filter_option(doc: str, example: str) -> Option:
    return Option(Str(nonempty=False), "", f"{doc} Example: `{example}`.",
                  validators=(ldap_filter_problem,))


class ModSharedRosterLdap(Module):
    name = "mod_shared_roster_ldap"
    deps = ("mod_roster",)
    options = Section(
        {
            "pool_tag": Option(Str(), "default",
                               "The `[outgoing_pools.ldap.TAG]` pool the searches use."),
            "base": Option(Str(), REQUIRED, "Base DN under which everything is searched."),
            "deref": Option(OneOf(["never", "always", "finding", "searching"]), "never",
                            "Alias dereferencing during searches (RFC 4511 §4.5.1.3)."),
            "groupattr": Option(Str(), "cn", "Attribute holding a group's name."),
            "groupdesc": Option(Str(), OMIT, "Attribute holding a group's description: "
                                "the roster group its members are shown in.",
                                default_doc="the value of `groupattr`"),
            "userdesc": Option(Str(), "cn", "Attribute holding a member's display name (the "
                               "roster item's name)."),
            "useruid": Option(Str(), "cn", "Attribute a member's entry must have for "
                              "`userdesc` to be read from it."),
            "memberattr": Option(Str(), "memberUid",
                                 "Attribute of a group's entries holding its members (every "
                                 "value is one member)."),
            "memberattr_format": Option(Str(), "%u",
                                        'How `memberattr` holds a username, e.g. '
                                        '"uid=%u,ou=people,dc=example,dc=com".',
                                        validators=(_format_problem,)),
            "memberattr_format_re": Option(Regexp(), "",
                                           "A regular expression whose first group is the "
                                           "username in `memberattr`; replaces "
                                           "`memberattr_format` when not empty.",
                                           validators=(_regexp_problem,)),
            "auth_check": Option(Bool(), True, "Only members that have an account here "
                                 "(`Server.user_exists`) are shown."),
            "user_cache_validity": Option(Int(min=1, unit="seconds"), 300,
                                          "How long a display name is kept."),
            "group_cache_validity": Option(Int(min=1, unit="seconds"), 300,
                                           "How long a user's groups and a group's members are "
                                           "kept."),
            "user_cache_size": Option(Int(min=1), 1000, "Display names kept at most."),
            "group_cache_size": Option(Int(min=1), 1000,
                                       "Users' group lists and groups kept at most."),
            "rfilter": _filter_option("Finds the groups shown to a user (`%u`: the "
                                      "username); each entry found names one group by its "
                                      "`groupattr`. Empty: nobody is shown a group.",
                                      '(&(objectClass=posixGroup)(memberUid=%u))'),
            "gfilter": _filter_option("Finds a group's entries (`%g`: its name). Empty: "
                                      "`(&(MEMBERATTR=*)(GROUPATTR=%g))`.",
                                      '(&(objectClass=posixGroup)(cn=%g))'),
            "ufilter": _filter_option("Finds a member's entry for its display name (`%u`: "
                                      "the username). Empty: `(&(MEMBERATTR=FORMAT)"
                                      "(GROUPATTR=*))`.",
                                      '(&(objectClass=inetOrgPerson)(uid=%u))'),
            "filter": _filter_option("ANDed with `gfilter` and `ufilter` (not `rfilter`).",
                                     '(objectClass=inetOrgPerson)'),
        },
        post=_post,
        doc="Roster entries from LDAP groups: members of a group see each other with "
        "subscription both. See [shared_roster_ldap.md](shared_roster_ldap.md).",
    )
    hooks = (
        (H.ROSTER_ITEMS, "roster_items", 70),
        (H.ROSTER_GET_JID_INFO, "jid_info", 70),
        (H.ROSTER_IN_SUBSCRIPTION, "subscription", 30),
        (H.ROSTER_OUT_SUBSCRIPTION, "subscription", 30),
    )

    @classmethod
    def check_config(cls, opts: Mapping[str, Any], path: str, refs: References) -> None:
        refs.pool_defined(f"{path}.pool_tag", "ldap", opts.get("pool_tag"))

    def __init__(self, server: Server, opts: Mapping[str, Any]) -> None:
        super().__init__(server, opts)
        # The group cache: ("member", user) -> the names of the groups shown to the user,
        # ("group", domain, name) -> the Group (None: no such group).
        self.groups: ExpiringCache[tuple[str, ...], Any] = ExpiringCache(
            int(opts["group_cache_size"]), int(opts["group_cache_validity"]))
        # The user cache: a member's bare JID -> its display name.
        self.names: ExpiringCache[JID, str | None] = ExpiringCache(
            int(opts["user_cache_size"]), int(opts["user_cache_validity"]))
        self.auth_check = bool(opts["auth_check"])
        self.pool: LdapPool | None = None
        self.directory: Directory | None = None
        self._down = False

    async def start(self) -> None:
        tag = str(self.opts["pool_tag"])
        self.pool = LdapPool(tag, self.server.cfg["outgoing_pools"]["ldap"][tag])
        self.directory = Directory(self.pool, self.opts)

    async def stop(self) -> None:
        if self.pool is not None:
            self.pool.close()

    # -- what the directory says, cached ----------------------------------------------------
    async def shared_contacts(self, user: JID) -> dict[JID, tuple[str, ...]]:
        """The user's shared contacts (bare JIDs, the user left out) and the roster groups
        each is in; empty when the directory cannot say (logged)."""
        try:
            contacts = await self._contacts(user.bare)
        except (AuthUnavailable, StorageError) as exc:
            if not self._down:
                self._down = True
                log.warning("shared_roster_ldap_unavailable user=%s error=%s", user, exc)
            return {}
        if self._down:
            self._down = False
            log.info("shared_roster_ldap_available")
        return contacts

    async def _contacts(self, user: JID) -> dict[JID, tuple[str, ...]]:
        assert self.directory is not None
        directory = self.directory
        names = await self.groups.get(("member", str(user)),
                                      lambda: directory.groups_of(user.local or ""))
        contacts: dict[JID, list[str]] = {}
        for name in names:
            found: tuple[str, tuple[JID, ...]] | None = await self.groups.get(
                ("group", user.domain, name), functools.partial(self._group, user.domain, name))
            if found is None:
                continue
            description, members = found
            for member in members:
                if member != user:
                    groups = contacts.setdefault(member, [])
                    if description not in groups:
                        groups.append(description)
        return {member: tuple(groups) for member, groups in contacts.items()}

    async def _group(self, domain: str, name: str) -> tuple[str, tuple[JID, ...]] | None:
        """A group's description and its members as JIDs of ``domain`` (6.4: the members of
        a shared group are accounts of the user's own domain), those without an account left
        out when ``auth_check`` is on."""
        assert self.directory is not None
        group: Group | None = await self.directory.group(name)
        if group is None:
            return None
        members: list[JID] = []
        for username in group.members:
            try:
                members.append(JID.parse(f"{username}@{domain}"))
            except (InvalidJID, ValueError):
                log.debug("shared_roster_ldap_bad_member group=%s member=%r", name, username)
        if self.auth_check:
            exists = await asyncio.gather(*(self.server.user_exists(m) for m in members))
            members = [m for m, ok in zip(members, exists, strict=True) if ok]
        return group.description, tuple(dict.fromkeys(members))

    async def display_name(self, contact: JID) -> str:
        """``userdesc`` of the contact's entry, its username when the directory has none
        (or cannot say now: that answer is not kept)."""
        assert self.directory is not None
        directory = self.directory
        try:
            name = await self.names.get(contact, lambda: directory.display_name(
                contact.local or ""))
        except AuthUnavailable:
            name = None
        return name or contact.local or str(contact)

    async def _as_shared(self, stored: RosterItem | None, contact: JID,
                         groups: tuple[str, ...]) -> RosterItem:
        """How a shared contact is shown: subscription both; a stored item keeps its name and
        groups and gains the shared groups, a contact not stored has its display name."""
        if stored is None:
            return RosterItem(jid=str(contact), name=await self.display_name(contact),
                              subscription="both", groups=groups)
        extra = tuple(g for g in groups if g not in stored.groups)
        # Shown even if the stored record only held the contact's request (``hidden``).
        return replace(stored, subscription="both", ask="none", approved=False,
                       ask_message=None, groups=stored.groups + extra, hidden=False)

    # -- hooks --------------------------------------------------------------------------------
    async def roster_items(self, items: list[RosterItem], user: JID) -> list[RosterItem]:
        shared = await self.shared_contacts(user)
        if not shared:
            return items
        shown: list[RosterItem] = []
        for item in items:
            try:
                contact = JID.parse(item.jid)
            except (InvalidJID, ValueError):
                shown.append(item)
                continue
            groups = shared.pop(contact, None)
            shown.append(item if groups is None else await self._as_shared(item, contact,
                                                                           groups))
        for contact, groups in shared.items():
            shown.append(await self._as_shared(None, contact, groups))
        shown.sort(key=lambda i: i.jid)
        return shown

    async def jid_info(self, item: RosterItem | None, user: JID,
                       contact: JID) -> RosterItem | None:
        groups = (await self.shared_contacts(user)).get(contact.bare)
        if groups is None:
            return item
        return await self._as_shared(item, contact.bare, groups)

    async def subscription(self, acc: sub.Transition | None, user: JID, contact: JID,
                           type_: str, stanza: Element) -> sub.Transition | None | Stop:
        """Either direction: between shared contacts the subscription is the directory's, so
        the stanza neither changes the roster nor reaches anyone (6.4 stops the roster's
        subscription hooks for them)."""
        if contact.bare in await self.shared_contacts(user):
            log.debug("shared_roster_ldap_subscription_ignored user=%s contact=%s type=%s",
                      user, contact, type_)
            return Stop(UNCHANGED)
        return acc

