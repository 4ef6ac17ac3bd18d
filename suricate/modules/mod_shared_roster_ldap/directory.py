"""What mod_shared_roster_ldap asks the directory, and what it remembers of the answers.

Three searches, all under ``base`` through the ``pool_tag`` pool (MongooseIM 6.4's meaning of
each option):

- the groups a user is shown: ``rfilter`` with ``%u`` the user's name; each entry found names
  one group by its ``groupattr`` value;
- one group: ``gfilter`` with ``%g`` the group's name, reading ``groupattr``, ``groupdesc``
  (the roster group the members are put in) and ``memberattr`` (who the members are; a value
  becomes a username through ``memberattr_format`` or ``memberattr_format_re``);
- one member's display name: ``ufilter`` with ``%u`` the member's name, reading ``userdesc``
  from the first entry that has ``useruid``.

Without ``gfilter`` / ``ufilter`` 6.4 searches ``(&(MEMBERATTR=FORMAT)(GROUPATTR=%g))`` with
``%u``, respectively ``%g``, as a wildcard; ``filter`` is ANDed to both (not to ``rfilter``).
Substituted values are escaped (RFC 4515 §3), so a name cannot widen a filter.

The answers are kept in two caches as 6.4's: the group cache (a user's groups, a group's
description and members; ``group_cache_validity`` seconds, ``group_cache_size`` entries) and
the user cache (display names; ``user_cache_*``). A failed search is never kept: the next
request asks again (the pool itself fails fast for ``connect_interval`` after an error).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from suricate.auth.ldap import DEREF, LdapPool, escape_value, search, template_user

K = TypeVar("K")
V = TypeVar("V")


def substitute(template: str, **values: str) -> str:
    """``template`` with each ``%x`` of ``values`` replaced by the value, escaped (RFC 4515
    §3). The wildcards of 6.4's default filters are written into the template beforehand
    (``filters``), never substituted here, where a ``*`` would be escaped."""
    for key, value in values.items():
        template = template.replace(f"%{key}", escape_value(value))
    return template


@dataclass(frozen=True, slots=True)
class Filters:
    """The three filters searched, with ``%u`` / ``%g`` still to be substituted."""

    roster: str   # rfilter: the groups shown to %u
    group: str    # a group's entries: %g
    user: str     # a member's entries: %u


def filters(opts: Mapping[str, Any]) -> Filters:
    """6.4's filters from the options (see the module docstring)."""
    membership = (f"(&({opts['memberattr']}={opts['memberattr_format']})"
                  f"({opts['groupattr']}=%g))")
    group = opts["gfilter"] or membership.replace("%u", "*")
    user = opts["ufilter"] or membership.replace("%g", "*")
    extra = opts["filter"]
    if extra:
        group, user = f"(&{group}{extra})", f"(&{user}{extra})"
    return Filters(roster=opts["rfilter"], group=group, user=user)


def member_name(value: str, fmt: str, fmt_re: re.Pattern[str] | None) -> str | None:
    """The username in a ``memberattr`` value: the first group of ``fmt_re`` when given
    (searched anywhere in the value), else the ``%u`` part of ``fmt`` (``uid=%u,ou=people,
    dc=example,dc=com``), the rest matching without regard to case as DNs compare."""
    if fmt_re is not None:
        match = fmt_re.search(value)
        if match is None or not match.groups() or match.group(1) is None:
            return None
        return match.group(1) or None
    return template_user(value, fmt)


class ExpiringCache(Generic[K, V]):
    """At most ``size`` entries, each kept ``validity`` seconds after it was stored; the
    oldest goes first when full (6.4's caches are not LRU either). Concurrent loads of one
    key share one search."""

    def __init__(self, size: int, validity: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.validity = validity
        self.clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._loading: dict[K, asyncio.Future[V]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()

    async def get(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        entry = self._entries.get(key)
        if entry is not None:
            if entry[0] > self.clock():
                return entry[1]
            del self._entries[key]
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            value = await load()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # marked as retrieved: nobody else may be waiting
            raise
        finally:
            del self._loading[key]
        future.set_result(value)
        self._entries[key] = (self.clock() + self.validity, value)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return value


@dataclass(frozen=True, slots=True)
class Group:
    """One shared roster group: the roster group its members are put in, and who they are."""

    description: str
    members: tuple[str, ...]   # usernames, as the directory gives them (not yet prepared)


class Directory:
    """The searches of the module docstring over one pool. Every method may raise
    ``AuthUnavailable`` (the directory cannot be reached or failed the request)."""

    def __init__(self, pool: LdapPool, opts: Mapping[str, Any]) -> None:
        self.pool = pool
        self.base = str(opts["base"])
        self.deref = DEREF[str(opts["deref"])]
        self.filters = filters(opts)
        self.groupattr = str(opts["groupattr"])
        self.groupdesc = str(opts["groupdesc"])
        self.userdesc = str(opts["userdesc"])
        self.useruid = str(opts["useruid"])
        self.memberattr = str(opts["memberattr"])
        self.memberattr_format = str(opts["memberattr_format"])
        pattern = str(opts["memberattr_format_re"])
        self.memberattr_re = re.compile(pattern) if pattern else None

    async def _search(self, filter_: str, attributes: list[str]
                      ) -> list[tuple[str, dict[str, list[str]]]]:
        return await self.pool.run(
            lambda conn: search(conn, self.base, filter_, self.deref, attributes))

    async def groups_of(self, username: str) -> tuple[str, ...]:
        """The names of the groups shown to ``username`` (rfilter), sorted, each once."""
        if not self.filters.roster:
            return ()  # 6.4: an empty rfilter finds nothing
        entries = await self._search(substitute(self.filters.roster, u=username),
                                     [self.groupattr])
        names = {values[0] for _, attrs in entries
                 if (values := attrs.get(self.groupattr.lower()))}
        return tuple(sorted(names))

    async def group(self, name: str) -> Group | None:
        """The group called ``name`` (gfilter), None when no entry has it. Its description
        is the ``groupdesc`` of the entries (the group's name when none has one); its members
        are every ``memberattr`` value of every entry, as usernames."""
        wanted = [self.groupattr, self.groupdesc, self.memberattr]
        entries = await self._search(substitute(self.filters.group, g=name),
                                     list(dict.fromkeys(wanted)))
        if not entries:
            return None
        description = name
        members: dict[str, None] = {}
        for _, attrs in entries:
            if not attrs.get(self.groupattr.lower()):
                continue
            desc = attrs.get(self.groupdesc.lower())
            if desc:
                description = desc[0]
            for value in attrs.get(self.memberattr.lower(), ()):
                member = member_name(value, self.memberattr_format, self.memberattr_re)
                if member:
                    members[member] = None
        return Group(description, tuple(members))

    async def display_name(self, username: str) -> str | None:
        """``userdesc`` of the first entry ufilter finds for ``username`` with a ``useruid``;
        None when there is none."""
        entries = await self._search(substitute(self.filters.user, u=username),
                                     list(dict.fromkeys([self.userdesc, self.useruid])))
        for _, attrs in entries:
            if attrs.get(self.useruid.lower()):
                desc = attrs.get(self.userdesc.lower())
                return desc[0] if desc else None
        return None
