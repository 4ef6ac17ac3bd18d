"""XEP-0115 §5 verification strings, with the examples of the specification."""

from __future__ import annotations

import re

from suricate.core.server import Server
from suricate.modules.mod_caps import caps_hash
from suricate.xml.parser import parse_fragment
from tests.e2e.test_roster_presence import raw_session
from tests.pubsub.conftest import accounts

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
