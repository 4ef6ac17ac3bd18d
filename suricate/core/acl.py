"""ACL and access rule evaluation (MongooseIM `[acl]` / `[access]` semantics).

An access class (ACL) is a list of patterns; a JID belongs to the class when it matches any
pattern, and matches a pattern when every condition of the pattern holds. An access rule is
an ordered list of `{acl, value}` clauses; the first clause whose class contains the JID
gives the rule's value.

Deliberately independent of the rest of Suricate: it takes the normalized `cfg["acl"]` and
`cfg["access"]` dicts and plain strings, so it can be used (and tested) anywhere.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

_NO_DEFAULT: Any = object()

#: Rule value returned when no clause matches or the rule is unknown (MongooseIM does the same).
DENY = "deny"
ALLOW = "allow"


def allowed(value: Any) -> bool:
    """Whether a rule value or a policy (``[s2s] default_policy``, ``mod_register``'s
    ``ip_access``) grants. The one place "allow" is read: every access decision ends here,
    through ``AccessControl.allows`` for access rules."""
    return value == ALLOW


def _glob(pattern: str, flags: int = 0) -> re.Pattern[str]:
    # fnmatchcase semantics (whole value), compiled once instead of per call.
    return re.compile(fnmatch.translate(pattern), flags)


class _Condition:
    """One condition on one part of a JID (user, server or resource)."""

    __slots__ = ("part", "exact", "regexp", "whole")

    def __init__(
        self,
        part: int,
        exact: str | None = None,
        regexp: re.Pattern[str] | None = None,
        whole: bool = False,
    ) -> None:
        self.part, self.exact, self.regexp, self.whole = part, exact, regexp, whole

    def holds(self, value: str) -> bool:
        if self.exact is not None:
            return value == self.exact
        assert self.regexp is not None
        # Regexps are searched anywhere, like Erlang's re:run in MongooseIM ({user_regexp = ""}
        # matches every user); globs must match the whole value.
        if self.whole:
            return self.regexp.fullmatch(value) is not None
        return self.regexp.search(value) is not None


_PARTS = {"user": 0, "server": 1, "resource": 2}
#: User parts and domains of prepared JIDs are lowercase (RFC 7622 §3.2, §3.3), and 6.4
#: lowercases (nodepreps) every ACL condition: ``user_regexp = "^Admin"`` matches admin.
#: Ignoring case does that without lowercasing the pattern itself (``\D`` stays \D);
#: resources keep their case (§3.4) and are compared as written.
_FLAGS = {"user": re.IGNORECASE, "server": re.IGNORECASE, "resource": 0}


class _Pattern:
    __slots__ = ("match", "conditions")

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.match: str = spec.get("match") or "current_domain"
        self.conditions: list[_Condition] = []
        for part, index in _PARTS.items():
            exact = spec.get(part)
            if exact is not None:
                # User parts and domains compare case-insensitively; the loader lowercases
                # them (``config.spec.LocalPart``, ``Domain``), and the JIDs passed in are
                # prepared (lowercase) too.
                if _FLAGS[part]:
                    exact = exact.lower()  # a dict that did not come through the loader
                self.conditions.append(_Condition(index, exact=exact))
            regexp = spec.get(f"{part}_regexp")
            if regexp is not None:
                self.conditions.append(_Condition(index, regexp=re.compile(regexp, _FLAGS[part])))
            glob = spec.get(f"{part}_glob")
            if glob is not None:
                self.conditions.append(
                    _Condition(index, regexp=_glob(glob, _FLAGS[part]), whole=True)
                )

    def matches(
        self, parts: tuple[str, str, str], current_domain: str, hosts: frozenset[str]
    ) -> bool:
        server = parts[1]
        if self.match == "none":
            return False
        if self.match == "current_domain" and server != current_domain:
            return False
        if self.match == "any_hosted_domain" and server not in hosts:
            return False
        return all(c.holds(parts[c.part]) for c in self.conditions)


class AccessControl:
    """Evaluates `[acl]` classes and `[access]` rules for one configuration.

    `hosts` are the served domains, used by `match = "any_hosted_domain"`; replace them with
    `set_hosts` when domains are added or removed at run time.
    """

    def __init__(
        self,
        acl: Mapping[str, Sequence[Mapping[str, Any]]],
        access: Mapping[str, Sequence[Mapping[str, Any]]],
        hosts: Iterable[str],
    ) -> None:
        self._acl: dict[str, list[_Pattern]] = {
            name: [_Pattern(p) for p in patterns] for name, patterns in acl.items()
        }
        self._access: dict[str, list[tuple[str, Any]]] = {
            name: [(c["acl"], c["value"]) for c in clauses] for name, clauses in access.items()
        }
        #: ``[[host_config]]`` views (their acl/access merged with the top level), by host
        #: type; ``host_type_of`` maps the current domain to its host type.
        self.by_host_type: dict[str, AccessControl] = {}
        self.host_type_of: Callable[[str], str] = str
        self.set_hosts(hosts)

    def set_hosts(self, hosts: Iterable[str]) -> None:
        self._hosts = frozenset(h.lower() for h in hosts)
        for view in self.by_host_type.values():
            view.set_hosts(self._hosts)

    def match_acl(
        self,
        name: str,
        user: str | None,
        server: str,
        resource: str | None,
        current_domain: str,
    ) -> bool:
        """Whether the JID user@server/resource belongs to access class `name`.

        `current_domain` is the domain the check is made for (usually the served domain the
        stanza is handled by). "all" and "none" are always defined; an unknown class
        matches nothing.
        """
        if name == "all":
            return True
        if name == "none":
            return False
        patterns = self._acl.get(name)
        if not patterns:
            return False
        # A domain JID has no user/resource; match them as empty strings like MongooseIM
        # (whose JIDs carry <<>> there), so {user_regexp = ""} still matches it.
        parts = (user or "", server.lower(), resource or "")
        domain = current_domain.lower()
        return any(p.matches(parts, domain, self._hosts) for p in patterns)

    def evaluate(
        self,
        rule: str,
        user: str | None,
        server: str,
        resource: str | None,
        current_domain: str,
        default: Any = _NO_DEFAULT,
    ) -> Any:
        """Value of access rule `rule` for the JID: the value of the first matching clause.

        The rule names "all" and "none" mean allow and deny. When the rule is unknown or no
        clause matches, the result is `default` if given, else "deny".
        """
        if self.by_host_type:
            view = self.by_host_type.get(self.host_type_of(current_domain.lower()))
            if view is not None:
                return view.evaluate(rule, user, server, resource, current_domain, default)
        if rule == "all":
            return ALLOW
        if rule == "none":
            return DENY
        for acl_name, value in self._access.get(rule, ()):
            if self.match_acl(acl_name, user, server, resource, current_domain):
                return value
        return DENY if default is _NO_DEFAULT else default

    def allows(
        self,
        rule: str,
        user: str | None,
        server: str,
        resource: str | None,
        current_domain: str,
    ) -> bool:
        """The access decision: whether rule `rule` (values "allow"/"deny"; "all" and "none"
        are always defined) lets the JID user@server/resource through."""
        return allowed(self.evaluate(rule, user, server, resource, current_domain))
