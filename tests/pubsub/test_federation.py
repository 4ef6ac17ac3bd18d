"""PEP across servers: a contact on another Suricate (s2s over loopback) whose client asked for
the node with +notify gets the notification; its caps were learnt from the presence it sent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from slixmpp.plugins.xep_0004 import Form

from suricate.jid import JID
from suricate.modules.mod_caps import ModCaps
from suricate.modules.mod_roster.store import RosterItem
from tests.e2e.harness import connect, disconnect
from tests.pubsub.conftest import PLUGINS, Events, payload
from tests.s2s.harness import register, two_servers

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TUNE = "http://jabber.org/protocol/tune"
PEP = {"extra": "[modules.mod_caps]\n[modules.mod_pubsub]\n"}


async def test_pep_notification_reaches_a_contact_on_another_server(tmp_path: Path) -> None:
    async with two_servers(tmp_path, "dialback", **{"alpha.test": PEP,
                                                    "beta.test": PEP}) as (alpha, beta):
        await register(alpha, "alice")
        await register(beta, "bob")
        await alpha.modules["mod_roster"].store.put_roster_item("alpha.test", "alice", RosterItem(
            "bob@beta.test", subscription="both"))
        await beta.modules["mod_roster"].store.put_roster_item("beta.test", "bob", RosterItem(
            "alice@alpha.test", subscription="both"))
        alice = await connect(alpha, "alice@alpha.test/a", "pass", plugins=PLUGINS)
        bob = await connect(beta, "bob@beta.test/b", "pass", plugins=PLUGINS)
        bob_events = Events(bob)
        bob.plugin["xep_0030"].add_feature(f"{TUNE}+notify")
        await bob.plugin["xep_0115"].update_caps(broadcast=False)
        alice.send_presence()
        bob.send_presence()  # to alice@alpha.test, through s2s, with caps
        caps = alpha.modules["mod_caps"]
        assert isinstance(caps, ModCaps)
        for _ in range(250):
            known = caps.remote_features(JID.parse("bob@beta.test"))
            if any(f"{TUNE}+notify" in features for _, features in known):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("alpha never learnt bob's caps")
        await alice.plugin["xep_0060"].publish("alice@alpha.test", TUNE, id="t1",
                                               payload=payload(f"<tune xmlns='{TUNE}'/>"))
        event = await bob_events.next("publish")
        assert str(event["from"]) == "alice@alpha.test"
        assert event["pubsub_event"]["items"]["item"]["id"] == "t1"
        await disconnect(alice, bob)


async def test_last_item_sent_when_a_remote_contacts_presence_arrives(tmp_path: Path) -> None:
    """XEP-0163 §4.3.4 across servers: alice published before bob (on beta) came online; his
    presence with +notify caps reaching alice makes alpha send him her last item."""
    async with two_servers(tmp_path, "dialback", **{"alpha.test": PEP,
                                                    "beta.test": PEP}) as (alpha, beta):
        await register(alpha, "alice")
        await register(beta, "bob")
        await alpha.modules["mod_roster"].store.put_roster_item("alpha.test", "alice", RosterItem(
            "bob@beta.test", subscription="both"))
        await beta.modules["mod_roster"].store.put_roster_item("beta.test", "bob", RosterItem(
            "alice@alpha.test", subscription="both"))
        alice = await connect(alpha, "alice@alpha.test/a", "pass", plugins=PLUGINS)
        alice.send_presence()
        # An open node (like OMEMO's): readable by anyone, pushed to subscribers only.
        open_node = Form()
        open_node["type"] = "submit"
        open_node.add_field(var="FORM_TYPE", ftype="hidden",
                            value="http://jabber.org/protocol/pubsub#publish-options")
        open_node.add_field(var="pubsub#access_model", value="open")
        await alice.plugin["xep_0060"].publish("alice@alpha.test", TUNE, id="before",
                                               payload=payload(f"<tune xmlns='{TUNE}'/>"),
                                               options=open_node)
        bob = await connect(beta, "bob@beta.test/b", "pass", plugins=PLUGINS)
        bob_events = Events(bob)
        bob.plugin["xep_0030"].add_feature(f"{TUNE}+notify")
        await bob.plugin["xep_0115"].update_caps(broadcast=False)
        bob.send_presence()
        event = await bob_events.next("publish", timeout=10)
        assert str(event["from"]) == "alice@alpha.test"
        assert event["pubsub_event"]["items"]["item"]["id"] == "before"
        assert event["delay"]["stamp"] is not None  # XEP-0203: an old item
        # Once per presence hash: a status change does not send it again.
        bob.send_presence(pstatus="busy")
        await bob_events.none("publish", wait=0.5)
        # A stranger's directed presence with the same caps gets nothing: only the owner's
        # presence subscribers do.
        await register(beta, "eve")
        eve = await connect(beta, "eve@beta.test/e", "pass", plugins=PLUGINS)
        eve_events = Events(eve)
        eve.plugin["xep_0030"].add_feature(f"{TUNE}+notify")
        await eve.plugin["xep_0115"].update_caps(broadcast=False)
        eve.send_presence(pto="alice@alpha.test")
        await eve_events.none("publish", wait=1.0)
        await disconnect(alice, bob, eve)
