"""XEP-0115 §5 verification strings, with the examples of the specification."""

from __future__ import annotations

import base64
import hashlib
import re

from suricate.core.server import Server
from suricate.jid import JID
from suricate.modules.mod_caps import ModCaps, caps_hash, session_features
from suricate.xml.parser import parse_fragment
from tests.e2e.harness import RawClient, disconnect, eventually
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


DISCO_INFO = "http://jabber.org/protocol/disco#info"
CLIENT_NODE = "urn:example:client"
ID = "<identity category='client' type='pc' name='T'/>"
FEATURES = "<feature var='http://jabber.org/protocol/caps'/><feature var='urn:example:a'/>"
S_BASE = "client/pc//T<http://jabber.org/protocol/caps<urn:example:a<"


def form(form_type: str, field_type: str = "hidden", value: str = "1") -> str:
    return (f"<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE' type='{field_type}'>"
            f"{form_type}</field><field var='x'><value>{value}</value></field></x>")


def sha1(s: str) -> str:
    """XEP-0115 §5.1 step 7-8, computed here from the literal string S."""
    return base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()


ONE_VALUE = "<value>urn:example:f</value>"
#: disco#info answers that XEP-0115 §5.4 calls ill-formed (steps 3.3 to 3.5), each with the
#: string S a client computes over it as it is (§5.1), so that 'ver' matches the answer.
ILL_FORMED = {
    "identity twice": (ID + ID + FEATURES, "client/pc//T<" + S_BASE),
    "feature twice": (ID + FEATURES + "<feature var='urn:example:a'/>",
                      S_BASE + "urn:example:a<"),
    "two forms with one FORM_TYPE": (ID + FEATURES + form(ONE_VALUE) + form(ONE_VALUE, value="2"),
                                     S_BASE + "urn:example:f<x<1<urn:example:f<x<2<"),
    "FORM_TYPE with two values": (
        ID + FEATURES + form(ONE_VALUE + "<value>urn:example:g</value>"),
        S_BASE + "urn:example:f<x<1<"),
    # §5.4 step 3.6: a form whose FORM_TYPE is not hidden is ignored, so S has no form: a
    # 'ver' computed with it does not verify.
    "FORM_TYPE not hidden, hashed": (ID + FEATURES + form(ONE_VALUE, "text-single", "3"),
                                     S_BASE + "urn:example:f<x<3<"),
    # §5.4 step 6: a hash that does not match the answer.
    "hash of another answer": (ID + FEATURES, S_BASE + "urn:example:b<"),
}


async def test_ill_formed_caps_answers_are_not_cached(server: Server) -> None:
    """XEP-0115 §5.4: the server asks a client's disco#info for a hash it does not know; an
    answer with a duplicate identity or feature, two forms of one FORM_TYPE or a FORM_TYPE of
    several values is ill-formed and, like one that does not verify, is neither cached for
    that hash nor used for the session. A raw client over TLS, since no library sends these."""
    await accounts(server, "alice")
    raw = await raw_session(server, "alice", "alice-pw", "r")
    caps: ModCaps = server.modules["mod_caps"]  # type: ignore[assignment]
    full = JID.parse("alice@localhost/r")

    async def announce(ver: str, children: str) -> None:
        await raw.send(f"<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
                       f"node='{CLIENT_NODE}' ver='{ver}'/></presence>")
        query = await raw.expect(rf"<iq(?=[^>]*type=.get.)[^>]*>\s*<query xmlns=.{DISCO_INFO}."
                                 rf"[^>]*node=.{CLIENT_NODE}#{re.escape(ver)}..*?</iq>")
        iq_id = re.search(r"id=.([^'\"]+).", query).group(1)  # type: ignore[union-attr]
        await raw.send(f"<iq type='result' id='{iq_id}' to='localhost'><query "
                       f"xmlns='{DISCO_INFO}' node='{CLIENT_NODE}#{ver}'>{children}</query></iq>")

    refused = {}
    for case, (children, s) in ILL_FORMED.items():
        refused[case] = sha1(s)
        await announce(refused[case], children)
    # §5.4 step 3.6 the other way: the form with a FORM_TYPE that is not hidden left out of S,
    # the answer verifies and is cached.
    kept = sha1(S_BASE)
    await announce(kept, ID + FEATURES + form(ONE_VALUE, "text-single"))
    # A plain answer last: answers are handled in order, so once the session has its
    # features, every earlier answer was seen.
    await announce(sha1(S_BASE + "urn:example:last<"),
                   ID + FEATURES + "<feature var='urn:example:last'/>")
    await eventually(lambda: "urn:example:last" in session_features(
        server.sessions.lookup(full)))
    cached = [case for case, ver in refused.items()
              if caps.cached((CLIENT_NODE, ver, "sha-1")) is not None]
    assert cached == []
    assert caps.cached((CLIENT_NODE, kept, "sha-1")) is not None
    await raw.close()


async def test_a_shared_query_that_fails_or_is_unverified_does_not_speak_for_others(
        server: Server) -> None:
    """Two clients announce the same caps while the server asks the first. XEP-0115 §5.4
    step 3.9: when the first answer does not verify, the server SHOULD ask another entity
    announcing that value, so the second client is asked rather than left without features.
    Step 2: with a hash the server does not support, the answer is associated "only with
    the JabberID of the generating entity", so the second client is asked for its own."""
    await accounts(server, "alice", "bob")
    alice = await raw_session(server, "alice", "alice-pw", "r")
    bob = await raw_session(server, "bob", "bob-pw", "r")

    async def presence(raw: RawClient, ver: str, algo: str) -> None:
        await raw.send(f"<presence><c xmlns='http://jabber.org/protocol/caps' hash='{algo}' "
                       f"node='{CLIENT_NODE}' ver='{ver}'/></presence>")

    async def asked(raw: RawClient, ver: str) -> str:
        """The id of the server's disco#info query for ``ver`` (§6.2)."""
        query = await raw.expect(rf"<iq(?=[^>]*type=.get.)[^>]*>\s*<query xmlns=.{DISCO_INFO}."
                                 rf"[^>]*node=.{CLIENT_NODE}#{re.escape(ver)}..*?</iq>")
        return re.search(r"id=.([^'\"]+).", query).group(1)  # type: ignore[union-attr]

    async def reply(raw: RawClient, ver: str, iq_id: str, children: str) -> None:
        await raw.send(f"<iq type='result' id='{iq_id}' to='localhost'><query "
                       f"xmlns='{DISCO_INFO}' node='{CLIENT_NODE}#{ver}'>{children}</query></iq>")

    def features(user: str) -> frozenset[str]:
        return session_features(server.sessions.lookup(JID.parse(f"{user}@localhost/r")))

    # Step 3.9: alice's answer does not match the hash; bob, who announced it while alice
    # was being asked, is asked in turn and his answer is the one that verifies.
    ver = sha1(S_BASE)
    await presence(alice, ver, "sha-1")
    alice_query = await asked(alice, ver)
    await presence(bob, ver, "sha-1")
    await reply(alice, ver, alice_query, ID + "<feature var='urn:example:other'/>")
    await reply(bob, ver, await asked(bob, ver), ID + FEATURES)
    await eventually(lambda: features("bob") == {"http://jabber.org/protocol/caps",
                                                 "urn:example:a"})
    assert features("alice") == frozenset()  # hers did not verify: not used
    # Step 2: a hash the server does not support; each client's answer is its own.
    await presence(alice, "v1", "x-unknown")
    alice_query = await asked(alice, "v1")
    await presence(bob, "v1", "x-unknown")
    await reply(alice, "v1", alice_query, ID + "<feature var='urn:example:alice'/>")
    await reply(bob, "v1", await asked(bob, "v1"), ID + "<feature var='urn:example:bob'/>")
    await eventually(lambda: features("bob") == {"urn:example:bob"})
    await eventually(lambda: features("alice") == {"urn:example:alice"})
    await alice.close()
    await bob.close()
