"""ACL classes and access rules, with configs taken through the real loader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from suricate.config import parse_config
from suricate.core.acl import AccessControl

CONFIG = """
[general]
hosts = ["localhost", "example.com"]
default_server_domain = "localhost"

[acl]
local = [{}]
admin = [{user = "alice", server = "localhost"}, {user = "root", match = "any_hosted_domain"}]
anyhost = [{match = "any_hosted_domain"}]
everyone = [{match = "all"}]
nobody = [{match = "none"}]
bots = [{user_regexp = "^bot[0-9]+$", match = "all"}]
mobiles = [{resource_glob = "mobile-*", match = "all"}]
remote_glob = [{server_glob = "*.org", match = "all"}]
srv_re = [{server_regexp = "example", match = "all"}]
res = [{resource = "desk"}]
any_user = [{user_regexp = ""}]
blocked = [{user = "mallory"}]
# 6.4 nodepreps the conditions: written with capitals, they still match prepared JIDs
boss = [{user = "Boss"}]
admins_re = [{user_regexp = "^Admin[0-9]", match = "all"}]
ops_glob = [{user_glob = "Ops-*", server_glob = "*.ORG", match = "all"}]
desk_re = [{resource_regexp = "^Desk$"}]

[access]
c2s = [{acl = "blocked", value = "deny"}, {acl = "all", value = "allow"}]
max_user_sessions = [{acl = "admin", value = 100}, {acl = "all", value = 10}]
c2s_shaper = [{acl = "admin", value = "none"}, {acl = "all", value = "normal"}]
only_admins = [{acl = "admin", value = "allow"}]
"""


@pytest.fixture(scope="module")
def ac() -> AccessControl:
    cfg = parse_config(CONFIG, Path("."))
    return AccessControl(cfg["acl"], cfg["access"], cfg["general"]["hosts"])


# (acl, user, server, resource, current_domain, expected)
ACL_CASES: list[tuple[str, str | None, str, str | None, str, bool]] = [
    ("all", "x", "anywhere.net", None, "localhost", True),
    ("none", "x", "localhost", None, "localhost", False),
    ("undefined_acl", "x", "localhost", None, "localhost", False),
    ("local", "bob", "localhost", "r", "localhost", True),
    ("local", "bob", "example.com", "r", "localhost", False),
    ("local", "bob", "LOCALHOST", "r", "localhost", True),
    ("admin", "alice", "localhost", None, "localhost", True),
    ("admin", "alice", "example.com", None, "example.com", False),
    ("admin", "root", "example.com", None, "localhost", True),
    ("admin", "root", "remote.org", None, "localhost", False),
    ("admin", "bob", "localhost", None, "localhost", False),
    ("anyhost", "x", "example.com", None, "localhost", True),
    ("anyhost", "x", "remote.org", None, "localhost", False),
    ("everyone", "x", "remote.org", None, "localhost", True),
    ("nobody", "x", "localhost", None, "localhost", False),
    ("bots", "bot42", "remote.org", None, "localhost", True),
    ("bots", "bot42x", "remote.org", None, "localhost", False),
    ("bots", None, "remote.org", None, "localhost", False),
    ("mobiles", "x", "remote.org", "mobile-1", "localhost", True),
    ("mobiles", "x", "remote.org", "desktop", "localhost", False),
    ("mobiles", "x", "remote.org", None, "localhost", False),
    ("remote_glob", "x", "jabber.org", None, "localhost", True),
    ("remote_glob", "x", "jabber.org.uk", None, "localhost", False),
    ("srv_re", "x", "my.example.net", None, "localhost", True),
    ("srv_re", "x", "localhost", None, "localhost", False),
    ("res", "x", "localhost", "desk", "localhost", True),
    ("res", "x", "localhost", "desk2", "localhost", False),
    ("any_user", None, "localhost", None, "localhost", True),
    ("any_user", "x", "remote.org", None, "localhost", False),
    ("boss", "boss", "localhost", None, "localhost", True),
    ("admins_re", "admin1", "remote.org", None, "localhost", True),
    ("admins_re", "admin", "remote.org", None, "localhost", False),
    ("ops_glob", "ops-1", "jabber.org", None, "localhost", True),
    ("desk_re", "x", "localhost", "Desk", "localhost", True),
    ("desk_re", "x", "localhost", "desk", "localhost", False),  # resources keep their case
]


@pytest.mark.parametrize(("acl", "user", "server", "resource", "domain", "expected"), ACL_CASES)
def test_match_acl(
    ac: AccessControl,
    acl: str,
    user: str | None,
    server: str,
    resource: str | None,
    domain: str,
    expected: bool,
) -> None:
    assert ac.match_acl(acl, user, server, resource, domain) is expected


# (rule, user, server, expected)
RULE_CASES: list[tuple[str, str, str, Any]] = [
    ("c2s", "bob", "localhost", "allow"),
    ("c2s", "mallory", "localhost", "deny"),
    ("c2s", "mallory", "example.com", "allow"),  # "blocked" only covers the current domain
    ("max_user_sessions", "alice", "localhost", 100),
    ("max_user_sessions", "bob", "localhost", 10),
    ("c2s_shaper", "alice", "localhost", "none"),
    ("c2s_shaper", "bob", "localhost", "normal"),
    ("only_admins", "bob", "localhost", "deny"),
    ("only_admins", "alice", "localhost", "allow"),
    ("register", "bob", "localhost", "allow"),  # built-in default rule
    ("max_user_offline_messages", "bob", "localhost", 100),
    ("no_such_rule", "bob", "localhost", "deny"),
    ("all", "bob", "localhost", "allow"),
    ("none", "bob", "localhost", "deny"),
]


@pytest.mark.parametrize(("rule", "user", "server", "expected"), RULE_CASES)
def test_evaluate(ac: AccessControl, rule: str, user: str, server: str, expected: Any) -> None:
    assert ac.evaluate(rule, user, server, "res", "localhost") == expected


def test_default_for_unknown_rule_or_no_match(ac: AccessControl) -> None:
    assert ac.evaluate("no_such_rule", "bob", "localhost", None, "localhost", default=5) == 5
    assert ac.evaluate("only_admins", "bob", "localhost", None, "localhost", default=None) is None
    assert ac.evaluate("only_admins", "alice", "localhost", None, "localhost", default=0) == "allow"


def test_allows(ac: AccessControl) -> None:
    assert ac.allows("c2s", "bob", "localhost", None, "localhost")
    assert not ac.allows("c2s", "mallory", "localhost", None, "localhost")


def test_hosts_can_change_at_run_time() -> None:
    ac = AccessControl({"h": [{"match": "any_hosted_domain"}]}, {}, ["a.com"])
    assert not ac.match_acl("h", "u", "b.com", None, "a.com")
    ac.set_hosts(["a.com", "B.com"])
    assert ac.match_acl("h", "u", "b.com", None, "a.com")


def test_works_on_plain_dicts_without_the_loader() -> None:
    # Missing condition keys mean "no condition"; missing match means current_domain.
    ac = AccessControl({"x": [{"user": "u"}]}, {"r": [{"acl": "x", "value": "allow"}]}, ["d"])
    assert ac.evaluate("r", "u", "d", None, "d") == "allow"
    assert ac.evaluate("r", "u", "e", None, "d") == "deny"
