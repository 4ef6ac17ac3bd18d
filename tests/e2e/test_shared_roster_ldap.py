"""mod_shared_roster_ldap against a real slapd (tests/auth/slapd.py) with slixmpp clients:
members of one directory group find each other in their rosters with subscription both and
get each other's presence without subscribing, a user in no group sees nobody, a removal is
answered as MongooseIM 6.4 does (result, and the push shows the shared item again), members
held as DNs (groupOfNames) are found through memberattr_format, and a directory that is down
leaves the roster without its shared items."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from suricate.core import hooks as H
from suricate.jid import JID
from suricate.modules.mod_shared_roster_ldap import UNCHANGED
from suricate.xml import ns
from suricate.xml.element import Element
from tests.auth.slapd import ROOTDN, ROOTPW, SUFFIX, Slapd, person, running_slapd
from tests.e2e.harness import MODULES_TOML, connect, disconnect, eventually, running_server

pytestmark = [pytest.mark.timeout(60), pytest.mark.filterwarnings("ignore::DeprecationWarning")]

PEOPLE = f"ou=people,{SUFFIX}"

DIRECTORY = (
    person("alice", "x", displayName="Alice Liddell")
    + person("bob", "x", displayName="Bob Builder")
    + person("carol", "x", displayName="Carol Danvers")
    + person("dave", "x", displayName="Dave (no account)")
    + f"dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n"
    # posixGroup: members by username (memberUid), 6.4's defaults
    + f"dn: cn=devs,ou=groups,{SUFFIX}\nobjectClass: posixGroup\ncn: devs\n"
      "gidNumber: 1000\ndescription: Developers\n"
      "memberUid: alice\nmemberUid: bob\nmemberUid: dave\n\n"
    # groupOfNames: members by DN
    + f"dn: cn=ops,ou=groups,{SUFFIX}\nobjectClass: groupOfNames\ncn: ops\n"
      f"description: Operations\nmember: uid=alice,{PEOPLE}\nmember: uid=carol,{PEOPLE}\n\n"
)


@pytest.fixture(scope="module")
def slapd() -> Iterator[Slapd]:
    with running_slapd() as server:
        server.add(DIRECTORY)
        yield server


def config(port: int, module: str) -> tuple[str, str]:
    """(the extra TOML: the pool; the modules TOML: the defaults plus this module)."""
    pool = f"""
[outgoing_pools.ldap.default]
connection.servers = ["127.0.0.1"]
connection.port = {port}
connection.rootdn = "{ROOTDN}"
connection.password = "{ROOTPW}"
connection.connect_interval = 200
"""
    return pool, MODULES_TOML + f"""
[modules.mod_shared_roster_ldap]
base = "{SUFFIX}"
userdesc = "displayName"
useruid = "uid"
ufilter = "(&(objectClass=inetOrgPerson)(uid=%u))"
group_cache_validity = 1
user_cache_validity = 1
{module}
"""


POSIX = """
groupdesc = "description"
rfilter = "(&(objectClass=posixGroup)(memberUid=%u))"
gfilter = "(&(objectClass=posixGroup)(cn=%g))"
"""

DN_MEMBERS = f"""
groupdesc = "description"
memberattr = "member"
memberattr_format = "uid=%u,{PEOPLE}"
rfilter = "(&(objectClass=groupOfNames)(member=uid=%u,{PEOPLE}))"
gfilter = "(&(objectClass=groupOfNames)(cn=%g))"
"""


async def register(server: Any, *names: str) -> None:
    for name in names:
        await server.auth.register(JID.parse(f"{name}@localhost"), f"{name}-pw")


async def login(server: Any, name: str) -> Any:
    client = await connect(server, f"{name}@localhost/r", f"{name}-pw")
    client.auto_authorize = None  # the test sees every subscription stanza
    client.auto_subscribe = False
    return client


async def fetch(client: Any) -> dict[str, dict[str, Any]]:
    """A roster get (RFC 6121 §2.1.3): bare JID -> subscription, name, groups."""
    result = await client.get_roster()
    return {str(jid): {"subscription": item["subscription"], "name": item["name"],
                       "groups": sorted(item["groups"])}
            for jid, item in result["roster"]["items"].items()}


def roster(client: Any) -> dict[str, dict[str, Any]]:
    """The client's roster as slixmpp keeps it from the gets and the pushes (it also lists
    the account itself once its presence went out)."""
    found = client.client_roster
    return {jid: {"subscription": found[jid]["subscription"], "name": found[jid]["name"],
                  "groups": sorted(found[jid]["groups"])}
            for jid in found
            if found[jid]["subscription"] != "remove" and jid != client.boundjid.bare}


async def presence_from(client: Any, frm: str) -> Any:
    while True:
        pres = await client.next_presence()
        if pres["from"].bare == frm and pres["type"] in ("available", "away", "chat", "dnd",
                                                         "xa"):
            return pres


async def test_group_members_share_rosters_and_presence(tmp_path: Path, slapd: Slapd,
                                                        caplog: pytest.LogCaptureFixture
                                                        ) -> None:
    pool, modules = config(slapd.port, POSIX)
    async with running_server(tmp_path, extra=pool, modules=modules) as server:
        # dave is in the group but has no account here (auth_check).
        await register(server, "alice", "bob", "carol")
        alice, bob, carol = [await login(server, n) for n in ("alice", "bob", "carol")]
        both = {"subscription": "both", "groups": ["Developers"]}
        assert await fetch(alice) == {"bob@localhost": {**both, "name": "Bob Builder"}}
        assert await fetch(bob) == {"alice@localhost": {**both, "name": "Alice Liddell"}}
        assert await fetch(carol) == {}

        # No subscription asked: each gets the other's presence; carol gets neither.
        alice.send_presence()
        bob.send_presence()
        carol.send_presence()
        assert (await presence_from(alice, "bob@localhost"))["from"].bare == "bob@localhost"
        assert (await presence_from(bob, "alice@localhost"))["from"].bare == "alice@localhost"
        with pytest.raises(TimeoutError):
            while True:
                pres = await carol.next_presence(timeout=0.5)
                assert pres["from"].bare == "carol@localhost", pres

        # A stored item for a shared contact keeps its name and groups and gains the shared
        # group; subscription stays both.
        await alice.update_roster("bob@localhost", name="Bobby", groups=["Friends"])
        await eventually(lambda: roster(alice)["bob@localhost"]["name"] == "Bobby")
        assert roster(alice)["bob@localhost"] == {
            "subscription": "both", "name": "Bobby", "groups": ["Developers", "Friends"]}

        # Removal (RFC 6121 §2.5): answered with a result as 6.4 does, and the push shows the
        # shared item again; nothing ends on bob's side.
        await alice.del_roster_item("bob@localhost")
        await eventually(lambda: roster(alice).get("bob@localhost", {}).get("name")
                         == "Bob Builder")
        assert roster(alice)["bob@localhost"] == {**both, "name": "Bob Builder"}
        stored = await server.modules["mod_roster"].store.get_roster("localhost", "alice")
        assert stored == []
        assert await fetch(alice) == {"bob@localhost": {**both, "name": "Bob Builder"}}

        # A subscription stanza between shared contacts changes nothing and goes nowhere.
        unsubscribe = Element("presence", ns.CLIENT, {"type": "unsubscribed"})
        for hook in (H.ROSTER_OUT_SUBSCRIPTION, H.ROSTER_IN_SUBSCRIPTION):
            outcome = await server.hooks.fold_async(
                hook, None, JID.parse("alice@localhost"), JID.parse("bob@localhost"),
                "unsubscribed", unsubscribe)
            assert outcome is UNCHANGED

        # The directory goes away: a roster get still answers, without the shared items.
        slapd.stop()
        try:
            await asyncio.sleep(1.1)  # group_cache_validity
            caplog.set_level(logging.WARNING, "suricate.mod_shared_roster_ldap")
            assert await fetch(alice) == {}
            assert "shared_roster_ldap_unavailable" in caplog.text
        finally:
            slapd.start()
        await disconnect(alice, bob, carol)


async def test_members_held_as_dns(tmp_path: Path, slapd: Slapd) -> None:
    pool, modules = config(slapd.port, DN_MEMBERS)
    async with running_server(tmp_path, extra=pool, modules=modules) as server:
        await register(server, "alice", "bob", "carol")
        alice = await login(server, "alice")
        assert await fetch(alice) == {"carol@localhost": {
            "subscription": "both", "name": "Carol Danvers", "groups": ["Operations"]}}
        shown = await server.modules["mod_roster"].get_roster_item(
            JID.parse("carol@localhost"), "alice@localhost")
        assert shown is not None and shown.subscription == "both"
        assert await server.modules["mod_roster"].get_roster_item(
            JID.parse("bob@localhost"), "alice@localhost") is None
        await disconnect(alice)
