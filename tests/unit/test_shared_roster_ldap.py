"""mod_shared_roster_ldap without a directory: its configuration (6.4's names and defaults,
each refusal naming its TOML path), the filters it builds, how a member's username is read
from a memberattr value, and its caches. The searches themselves run against a real slapd in
tests/e2e/test_shared_roster_ldap.py."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from suricate.config.loader import parse_config_with_warnings
from suricate.modules.mod_shared_roster_ldap.directory import (
    ExpiringCache,
    filters,
    member_name,
    substitute,
)
from tests.unit.test_config import GENERAL, parse, refused

POOL = "[outgoing_pools.ldap.default]\n"
SECTION = POOL + '[modules.mod_shared_roster_ldap]\nbase = "dc=example,dc=com"\n'


def test_defaults_are_64s() -> None:
    opts = parse(SECTION + 'rfilter = "(memberUid=%u)"\n')["modules"]["mod_shared_roster_ldap"]
    assert opts == {
        "pool_tag": "default", "base": "dc=example,dc=com", "deref": "never",
        "groupattr": "cn", "groupdesc": "cn", "userdesc": "cn", "useruid": "cn",
        "memberattr": "memberUid", "memberattr_format": "%u", "memberattr_format_re": "",
        "auth_check": True, "user_cache_validity": 300, "group_cache_validity": 300,
        "user_cache_size": 1000, "group_cache_size": 1000,
        "rfilter": "(memberUid=%u)", "gfilter": "", "ufilter": "", "filter": "",
    }
    # groupdesc follows groupattr unless given
    assert parse(SECTION + 'groupattr = "ou"\n')["modules"]["mod_shared_roster_ldap"][
        "groupdesc"] == "ou"


def test_an_empty_rfilter_is_a_warning() -> None:
    _, warnings = parse_config_with_warnings(GENERAL + SECTION, Path("/nonexistent"))
    assert [str(w) for w in warnings] == [
        "modules.mod_shared_roster_ldap.rfilter: empty: no user is shown a shared roster group"]


@pytest.mark.parametrize(("line", "expected"), [
    ('base = "dc=x"\nrfilter = "(cn=%u"', "modules.mod_shared_roster_ldap.rfilter: not an LDAP "
     'filter: expected "(...)" with balanced parentheses (RFC 4515)'),
    ('base = "dc=x"\nfilter = "objectClass=person"', "modules.mod_shared_roster_ldap.filter: "
     "not an LDAP filter: unbalanced parentheses (RFC 4515)"),
    ('base = "dc=x"\ngfilter = "(cn=%g))("', "modules.mod_shared_roster_ldap.gfilter: not an "
     "LDAP filter: unbalanced parentheses (RFC 4515)"),
    ('base = "dc=x"\nmemberattr_format = "uid=x"',
     'modules.mod_shared_roster_ldap.memberattr_format: must contain "%u" exactly once'),
    ('base = "dc=x"\nmemberattr_format_re = "uid=[a-z]+"', "modules.mod_shared_roster_ldap."
     "memberattr_format_re: needs a group, (...), that captures the username"),
    ('base = "dc=x"\nmemberattr_format_re = "uid=(["', "modules.mod_shared_roster_ldap."
     "memberattr_format_re: invalid regular expression: unterminated character set at "
     "position 5"),
    ('base = "dc=x"\ngroup_cache_validity = 0', "modules.mod_shared_roster_ldap."
     "group_cache_validity: expected a positive integer (seconds), got 0"),
    ('base = "dc=x"\nuser_cache_size = -1', "modules.mod_shared_roster_ldap.user_cache_size: "
     "expected a positive integer, got -1"),
    ('base = "dc=x"\nauth_check = "on"', "modules.mod_shared_roster_ldap.auth_check: expected "
     "a boolean, got a string"),
    ('base = "dc=x"\nderef = "sometimes"', "modules.mod_shared_roster_ldap.deref: expected one "
     "of never, always, finding, searching"),
    ('rfilter = "(cn=%u)"', "modules.mod_shared_roster_ldap.base: missing required option"),
    ('base = "dc=x"\nldap_base = "dc=x"', "modules.mod_shared_roster_ldap.ldap_base: unknown "
     "option"),
])
def test_bad_values_are_refused_with_their_path(line: str, expected: str) -> None:
    refused(POOL + "[modules.mod_shared_roster_ldap]\n" + line + "\n", expected)


def test_pool_tag_names_a_pool() -> None:
    refused(SECTION.replace(POOL, ""), "modules.mod_shared_roster_ldap.pool_tag: pool "
            "'default' is not defined in [outgoing_pools.ldap]")
    refused(SECTION + 'pool_tag = "directory"\n', "modules.mod_shared_roster_ldap.pool_tag: "
            "pool 'directory' is not defined in [outgoing_pools.ldap]")


def test_filters_built_as_64_does() -> None:
    base = {"memberattr": "memberUid", "memberattr_format": "%u", "groupattr": "cn",
            "rfilter": "(memberUid=%u)", "gfilter": "", "ufilter": "", "filter": ""}
    built = filters(base)
    assert built.roster == "(memberUid=%u)"
    assert built.group == "(&(memberUid=*)(cn=%g))"
    assert built.user == "(&(memberUid=%u)(cn=*))"
    # filter is ANDed with the group and user filters, given or not, never with rfilter
    built = filters({**base, "filter": "(objectClass=posixGroup)",
                     "ufilter": "(&(objectClass=person)(uid=%u))"})
    assert built.roster == "(memberUid=%u)"
    assert built.group == "(&(&(memberUid=*)(cn=%g))(objectClass=posixGroup))"
    assert built.user == "(&(&(objectClass=person)(uid=%u))(objectClass=posixGroup))"


def test_substituted_values_are_escaped() -> None:
    # RFC 4515 §3: a name cannot widen or break the filter
    assert substitute("(memberUid=%u)", u="a*)(uid=*") == r"(memberUid=a\2a\29\28uid=\2a)"
    assert substitute("(cn=%g)", g="x\\y") == r"(cn=x\5cy)"


@pytest.mark.parametrize(("value", "fmt", "pattern", "expected"), [
    ("alice", "%u", None, "alice"),
    ("uid=alice,ou=people,dc=example,dc=com", "uid=%u,ou=people,dc=example,dc=com", None,
     "alice"),
    # DNs compare without regard to case (RFC 4517 §4.2.15's caseIgnoreMatch of the RDNs)
    ("UID=Alice,OU=People,DC=example,DC=com", "uid=%u,ou=people,dc=example,dc=com", None,
     "Alice"),
    ("uid=alice,ou=other,dc=example,dc=com", "uid=%u,ou=people,dc=example,dc=com", None, None),
    ("uid=,ou=people,dc=example,dc=com", "uid=%u,ou=people,dc=example,dc=com", None, None),
    ("alice@corp.example", "%u@corp.example", None, "alice"),
    ("uid=alice,ou=people,dc=example,dc=com", "%u", r"^uid=([^,]+),", "alice"),
    ("cn=Alice,ou=people", "%u", r"^uid=([^,]+),", None),
])
def test_member_names(value: str, fmt: str, pattern: str | None, expected: str | None) -> None:
    assert member_name(value, fmt, re.compile(pattern) if pattern else None) == expected


async def test_cache_keeps_answers_for_their_validity_and_size() -> None:
    now = [0.0]
    cache: ExpiringCache[str, int] = ExpiringCache(2, 10, clock=lambda: now[0])
    loads: list[str] = []

    async def load(key: str, value: int) -> int:
        loads.append(key)
        return value

    assert await cache.get("a", lambda: load("a", 1)) == 1
    assert await cache.get("a", lambda: load("a", 2)) == 1          # kept
    now[0] = 10.5
    assert await cache.get("a", lambda: load("a", 3)) == 3          # expired: asked again
    await cache.get("b", lambda: load("b", 4))
    await cache.get("c", lambda: load("c", 5))                      # full: "a" goes first
    assert len(cache) == 2
    assert await cache.get("a", lambda: load("a", 6)) == 6
    assert loads == ["a", "a", "b", "c", "a"]


async def test_cache_shares_one_load_and_never_keeps_a_failure() -> None:
    cache: ExpiringCache[str, int] = ExpiringCache(10, 60)
    started = 0
    gate = asyncio.Event()

    async def slow() -> int:
        nonlocal started
        started += 1
        await gate.wait()
        return 7

    waiting = [asyncio.create_task(cache.get("k", slow)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiting) == [7, 7, 7]
    assert started == 1

    async def failing() -> int:
        raise ConnectionError("directory down")

    with pytest.raises(ConnectionError):
        await cache.get("x", failing)
    assert await cache.get("x", lambda: asyncio.sleep(0, result=8)) == 8
