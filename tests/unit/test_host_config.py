"""[[host_config]] merging as MongooseIM 6.4 documents it (doc/configuration/host_config.md):
auth's grouped replacement, modules replaced whole, acl unions, access clauses before the
catch-all, s2s host_policy host by host; and the server objects that use the views."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from suricate.config.host_config import host_view
from suricate.config.loader import parse_config
from suricate.core.acl import AccessControl

BASE = """
[general]
hosts = ["one.example", "two.example"]
default_server_domain = "one.example"
host_types = ["guests"]

[outgoing_pools.rdbms.default.connection]
driver = "sqlite"
database = "x.db"

[auth]
methods = ["rdbms"]
password.hash = ["sha256"]
password.scram_iterations = 20000
sasl_mechanisms = ["scram_sha256", "plain"]

[modules.mod_ping]
[modules.mod_version]

[acl]
blocked = [{user = "spammer"}]

[access]
c2s = [{acl = "blocked", value = "deny"}, {acl = "all", value = "allow"}]
max_user_sessions = [{acl = "all", value = 10}]

[s2s]
default_policy = "deny"
host_policy = [{host = "good.example", policy = "allow"}, {host = "bad.example", policy = "deny"}]
"""


def parse(extra: str, tmp: Path) -> dict[str, Any]:
    return parse_config(BASE + extra, tmp)


def test_auth_options_replaced_as_a_group_or_one_by_one(tmp_path: Path) -> None:
    cfg = parse("""
[[host_config]]
host = "two.example"
[host_config.auth]
methods = ["rdbms", "anonymous"]
password.format = "plain"

[[host_config]]
host_type = "guests"
[host_config.auth]
sasl_mechanisms = ["plain"]
""", tmp_path)
    two = host_view(cfg, "two.example")["auth"]
    # password.* given: the group is replaced, so the hash and iterations are the defaults.
    assert two["methods"] == ["rdbms", "anonymous"]
    assert two["password"]["format"] == "plain"
    assert two["password"]["scram_iterations"] == 10000
    assert two["sasl_mechanisms"] == ["scram_sha256", "plain"]  # not given: kept
    guests = host_view(cfg, "guests")["auth"]
    # Only sasl_mechanisms given: everything else is the top level's.
    assert guests["sasl_mechanisms"] == ["plain"]
    assert guests["password"]["hash"] == ["sha256"]
    assert guests["password"]["scram_iterations"] == 20000
    assert host_view(cfg, "one.example")["auth"] is cfg["auth"]


def test_modules_replaced_acl_united_access_before_catch_all_s2s_merged(tmp_path: Path) -> None:
    cfg = parse("""
[[host_config]]
host = "two.example"
[host_config.modules.mod_version]
os_info = true
[host_config.acl]
blocked = [{user = "troll"}]
[host_config.access]
c2s = [{acl = "blocked", value = "deny"}]
register = [{acl = "all", value = "deny"}]
[host_config.s2s]
host_policy = [{host = "bad.example", policy = "allow"}, {host = "evil.example", policy = "deny"}]
""", tmp_path)
    view = host_view(cfg, "two.example")
    assert set(view["modules"]) == {"mod_version"} and view["modules"]["mod_version"]["os_info"]
    assert [p["user"] for p in view["acl"]["blocked"]] == ["spammer", "troll"]
    assert view["access"]["c2s"] == [{"acl": "blocked", "value": "deny"},
                                     {"acl": "blocked", "value": "deny"},
                                     {"acl": "all", "value": "allow"}]
    # register exists at the top level too (a default rule ending with {acl = "all"}): the
    # host's clause goes before that catch-all.
    assert view["access"]["register"] == [{"acl": "all", "value": "deny"},
                                          {"acl": "all", "value": "allow"}]
    assert view["s2s"]["default_policy"] == "deny"
    assert {p["host"]: p["policy"] for p in view["s2s"]["host_policy"]} == {
        "good.example": "allow", "bad.example": "allow", "evil.example": "deny"}

    # The access view: troll is blocked on two.example only.
    access = AccessControl(cfg["acl"], cfg["access"], ["one.example", "two.example"])
    access.by_host_type["two.example"] = AccessControl(view["acl"], view["access"],
                                                       ["one.example", "two.example"])
    assert access.allows("c2s", "troll", "one.example", None, "one.example")
    assert not access.allows("c2s", "troll", "two.example", None, "two.example")
    assert not access.allows("c2s", "spammer", "two.example", None, "two.example")
    assert access.allows("register", "x", "one.example", None, "one.example")
    assert not access.allows("register", "x", "two.example", None, "two.example")


def test_s2s_policy_and_dialback_secret_of_the_local_domain(tmp_path: Path) -> None:
    from suricate.core.s2s import S2SService
    from suricate.core.server import Server

    cfg = parse("""
[[host_config]]
host = "two.example"
[host_config.s2s]
default_policy = "allow"
shared = "two-secret"
host_policy = [{host = "good.example", policy = "deny"}]
""", tmp_path)
    s2s = S2SService(Server(cfg, tmp_path, {}))
    # one.example: the top level (deny by default, good.example allowed).
    assert s2s.allows("good.example", "one.example")
    assert not s2s.allows("other.example", "one.example")
    # two.example: its own default and its override of good.example.
    assert not s2s.allows("good.example", "two.example")
    assert s2s.allows("other.example", "two.example")
    assert not s2s.allows("bad.example", "two.example")  # the top level's entry still holds
    assert s2s.secret_for("two.example") == "two-secret"
    assert s2s.secret_for("one.example") == s2s.secret != "two-secret"
