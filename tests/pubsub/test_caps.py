"""XEP-0115 §5 verification strings, with the examples of the specification."""

from __future__ import annotations

import re

from suricate.core.server import Server
from suricate.modules.mod_caps import caps_hash
from suricate.xml.parser import parse_fragment
from tests.e2e.harness import disconnect
from tests.e2e.test_roster_presence import raw_session
from tests.pubsub.conftest import accounts, friends, online, payload

SIMPLE = """<query xmlns='http://jabber.org/protocol/disco#info'>
<identity category='client' name='Exodus 0.9.1' type='pc'/>
<feature var='http://jabber.org/protocol/caps'/>
<feature var='http://jabber.org/protocol/disco#info'/>
<feature var='http://jabber.org/protocol/disco#items'/>
<feature var='http://jabber.org/protocol/muc'/>
</query>"""

COMPLEX = """<query xmlns='http://jabber.org/protocol/disco#info'>
<identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
<identity xml:lang='el' category='client' name='Ψ 0.11' type='pc'/>
<feature var='http://jabber.org/protocol/caps'/>
<feature var='http://jabber.org/protocol/disco#info'/>
<feature var='http://jabber.org/protocol/disco#items'/>
<feature var='http://jabber.org/protocol/muc'/>
<x xmlns='jabber:x:data' type='result'>
<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:dataforms:softwareinfo</value></field>
<field var='ip_version' type='text-multi'><value>ipv4</value><value>ipv6</value></field>
<field var='os'><value>Mac</value></field>
<field var='os_version'><value>10.5.1</value></field>
<field var='software'><value>Psi</value></field>
<field var='software_version'><value>0.11</value></field>
</x>
</query>"""


def test_simple_example() -> None:  # XEP-0115 §5.2
    assert caps_hash(parse_fragment(SIMPLE)[0], "sha-1") == "QgayPKawpkPSDYmwT/WM94uAlu0="


def test_complex_example() -> None:  # XEP-0115 §5.3: languages and an extended form
    assert caps_hash(parse_fragment(COMPLEX)[0], "sha-1") == "q07IKJEyjvHSyhy//CH0CxmKi8w="


def test_a_changed_feature_changes_the_hash() -> None:
    changed = SIMPLE.replace("muc", "muc#user")
    assert caps_hash(parse_fragment(changed)[0], "sha-1") != "QgayPKawpkPSDYmwT/WM94uAlu0="


async def test_server_announces_its_caps_and_answers_for_them(server: Server) -> None:
    await accounts(server, "alice")
    raw = await raw_session(server, "alice", "alice-pw", "r")
    c = re.search(r"<c [^>]*xmlns=.http://jabber.org/protocol/caps.[^>]*/>", raw.features)
    assert c is not None, raw.features
    node = re.search(r"node=.([^'\"]+).", c.group(0)).group(1)  # type: ignore[union-attr]
    ver = re.search(r"ver=.([^'\"]+).", c.group(0)).group(1)  # type: ignore[union-attr]
    await raw.send(f"<iq type='get' id='d1' to='localhost'><query "
                   f"xmlns='http://jabber.org/protocol/disco#info' node='{node}#{ver}'/></iq>")
    answer = await raw.expect(r"<iq[^>]*id=.d1.*?</iq>")
    query = parse_fragment(answer)[0].find("query", "http://jabber.org/protocol/disco#info")
    assert query is not None and caps_hash(query, "sha-1") == ver  # XEP-0115 §5.4


TUNE = "http://jabber.org/protocol/tune"
MOOD = "http://jabber.org/protocol/mood"


async def test_a_client_that_changes_its_caps_gets_its_new_interests(server: Server) -> None:
    """A client adds a +notify interest mid-session: its presence carries a hash the server
    does not know, which it learns by asking (XEP-0115 §6.2) and then uses, sending the last
    item of the new node (XEP-0163 §4.3.4) and its notifications from then on."""
    await accounts(server, "alice", "bob")
    await friends(server, "alice", "bob")
    alice, _ = await online(server, "alice")
    await alice.plugin["xep_0060"].publish(
        "alice@localhost", MOOD, id="m1", payload=payload(f"<mood xmlns='{MOOD}'><happy/></mood>"))
    bob, bob_events = await online(server, "bob", (TUNE,))
    bob.plugin["xep_0030"].add_feature(f"{MOOD}+notify")
    await bob.plugin["xep_0115"].update_caps(broadcast=False)
    bob.send_presence()
    event = await bob_events.next("publish")
    assert event["pubsub_event"]["items"]["node"] == MOOD
    await alice.plugin["xep_0060"].publish(
        "alice@localhost", MOOD, id="m2", payload=payload(f"<mood xmlns='{MOOD}'><sad/></mood>"))
    assert (await bob_events.next("publish"))["pubsub_event"]["items"]["item"]["id"] == "m2"
    await disconnect(alice, bob)


async def test_available_again_is_an_initial_presence(server: Server) -> None:
    """XEP-0163 §4.3.3.2: the last item goes to a resource at its initial presence, and an
    available presence after an unavailable one is initial again (RFC 6121 §4.2), with the
    same caps: what was published meanwhile reaches it."""
    await accounts(server, "alice", "bob")
    await friends(server, "alice", "bob")
    alice, _ = await online(server, "alice")
    bob, bob_events = await online(server, "bob", (TUNE,))
    bob.send_presence(ptype="unavailable")
    await alice.next_presence(type_="unavailable")
    await alice.plugin["xep_0060"].publish(
        "alice@localhost", TUNE, id="t1", payload=payload(f"<tune xmlns='{TUNE}'/>"))
    await bob_events.none("publish")  # unavailable: not notified
    bob.send_presence()
    event = await bob_events.next("publish")
    assert event["pubsub_event"]["items"]["item"]["id"] == "t1"
    assert event["delay"]["stamp"] is not None
    await disconnect(alice, bob)
